using System.Globalization;
using Microsoft.Extensions.Logging;
using Orleans.Runtime;
using Orleans.Runtime.MembershipService.SiloMetadata;
using Orleans.Runtime.Placement;

namespace MinBft.Hosting;

/// <summary>
/// Chooses, for a grain with integer key i, a compatible silo whose fault domain metadata is i.
/// If there is none it throws <see cref="FaultDomainUnavailableException"/>: a replica whose
/// domain is down must stay down rather than be revived in another domain.
/// </summary>
/// <remarks>
/// Placement runs on the silo that routes the first call (a gateway for client calls), so the
/// decision uses that silo's view of membership and of the other silos' metadata. Right after
/// a silo joins, its metadata may not be cached yet; the call then fails and the caller retries.
/// </remarks>
public sealed partial class FaultDomainPlacementDirector(
    ISiloMetadataCache metadataCache,
    ILogger<FaultDomainPlacementDirector> logger) : IPlacementDirector
{
    /// <summary>The silo metadata key under which a silo announces its fault domain.</summary>
    public const string MetadataKey = "minbft.fault-domain";

    /// <inheritdoc/>
    public Task<SiloAddress> OnAddActivation(PlacementStrategy strategy, PlacementTarget target, IPlacementContext context)
    {
        var grainId = target.GrainIdentity;
        if (!grainId.TryGetIntegerKey(out var key, out var keyExtension) || keyExtension is not null
            || key < 0 || key > int.MaxValue)
        {
            throw new ArgumentException(
                $"Grain {grainId} uses fault-domain placement but its key is not a plain non-negative integer (the fault domain).",
                nameof(target));
        }

        var faultDomain = (int)key;
        var candidates = new List<SiloAddress>();
        foreach (var silo in context.GetCompatibleSilos(target))
        {
            if (GetFaultDomain(metadataCache.GetSiloMetadata(silo)) == faultDomain)
            {
                candidates.Add(silo);
            }
        }

        if (candidates.Count == 0)
        {
            LogFaultDomainDown(logger, grainId, faultDomain);
            throw new FaultDomainUnavailableException(
                faultDomain,
                $"Fault domain {faultDomain} is down: no active silo of fault domain {faultDomain} can host {grainId}. "
                + "It is not placed in another fault domain.");
        }

        // Several silos may serve one domain (e.g. a standby): prefer the local one to save a hop,
        // otherwise spread activations.
        var chosen = candidates.Contains(context.LocalSilo)
            ? context.LocalSilo
            : candidates[Random.Shared.Next(candidates.Count)];
        return Task.FromResult(chosen);
    }

    /// <summary>Reads the fault domain a silo announced, or null if it announced none.</summary>
    public static int? GetFaultDomain(SiloMetadata metadata)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        return metadata.Metadata.TryGetValue(MetadataKey, out var text)
            && int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var domain)
                ? domain
                : null;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Cannot place {GrainId}: no active silo of fault domain {FaultDomain}.")]
    private static partial void LogFaultDomainDown(ILogger logger, GrainId grainId, int faultDomain);
}
