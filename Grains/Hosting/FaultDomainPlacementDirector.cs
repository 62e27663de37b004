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
/// With mutual TLS, a silo whose certificate (seen on this silo's connection to it) names another
/// domain is never chosen, whatever its metadata says.
/// </remarks>
public sealed partial class FaultDomainPlacementDirector(
    ISiloMetadataCache metadataCache,
    ILogger<FaultDomainPlacementDirector> logger,
    SiloCertificateDomains? certificates = null,
    TimeProvider? clock = null) : IPlacementDirector
{
    private readonly FaultDomainDownLog _downLog = new(clock ?? TimeProvider.System, FaultDomainDownLog.DefaultInterval);

    /// <summary>The silo metadata key under which a silo announces its fault domain.</summary>
    public const string MetadataKey = "minbft.fault-domain";

    /// <inheritdoc/>
    public Task<SiloAddress> OnAddActivation(PlacementStrategy strategy, PlacementTarget target, IPlacementContext context)
    {
        var grainId = target.GrainIdentity;
        var faultDomain = FaultDomainOf(grainId) ?? throw new ArgumentException(
            $"Grain {grainId} uses fault-domain placement but its key is not a plain non-negative integer (the fault domain).",
            nameof(target));
        var candidates = new List<SiloAddress>();
        foreach (var silo in context.GetCompatibleSilos(target))
        {
            if (GetFaultDomain(metadataCache.GetSiloMetadata(silo)) != faultDomain) continue;
            if (!silo.Equals(context.LocalSilo) && certificates?.Check(silo.Endpoint, faultDomain) == SiloDomainCheck.Refused)
            {
                LogCertificateDisagrees(logger, silo, faultDomain, certificates.Describe(silo.Endpoint));
                continue;
            }
            candidates.Add(silo);
        }

        if (candidates.Count == 0)
        {
            switch (_downLog.Refused(faultDomain))
            {
                case 0:
                    LogFaultDomainDown(logger, grainId, faultDomain);
                    break;
                case { } refused:
                    LogFaultDomainStillDown(logger, faultDomain, refused);
                    break;
            }
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
        if (_downLog.Placed(faultDomain) is { } refusedWhileDown)
            LogFaultDomainBack(logger, grainId, faultDomain, chosen, refusedWhileDown);
        return Task.FromResult(chosen);
    }

    /// <summary>The fault domain of a grain placed by fault domain: its integer key, or null if the key is not a plain non-negative integer.</summary>
    public static int? FaultDomainOf(GrainId grainId) =>
        grainId.TryGetIntegerKey(out var key, out var keyExtension) && keyExtension is null && key >= 0 && key <= int.MaxValue
            ? (int)key
            : null;

    /// <summary>Reads the fault domain a silo announced, or null if it announced none.</summary>
    public static int? GetFaultDomain(SiloMetadata metadata)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        return metadata.Metadata.TryGetValue(MetadataKey, out var text)
            && int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var domain)
                ? domain
                : null;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Silo {Silo} declares fault domain {FaultDomain} but its certificate names '{Proven}': not a candidate")]
    private static partial void LogCertificateDisagrees(ILogger logger, SiloAddress silo, int faultDomain, string proven);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Cannot place {GrainId}: no active silo of fault domain {FaultDomain}. It stays down rather than move to another domain; further refusals are counted, not logged one by one.")]
    private static partial void LogFaultDomainDown(ILogger logger, GrainId grainId, int faultDomain);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Fault domain {FaultDomain} is still down: {Refused} placements refused since it was last reported.")]
    private static partial void LogFaultDomainStillDown(ILogger logger, int faultDomain, long refused);

    [LoggerMessage(Level = LogLevel.Information, Message = "Fault domain {FaultDomain} has an active silo again: {GrainId} placed on {Silo} ({Refused} placements were refused while it was down).")]
    private static partial void LogFaultDomainBack(ILogger logger, GrainId grainId, int faultDomain, SiloAddress silo, long refused);
}
