using System.Diagnostics.CodeAnalysis;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Orleans;
using Orleans.GrainDirectory;
using Orleans.Metadata;
using Orleans.Runtime;
using Orleans.Runtime.GrainDirectory;
using Orleans.Runtime.MembershipService.SiloMetadata;

namespace MinBft.Hosting;

/// <summary>
/// The grain directory of fault-domain grains (replicas, USIGs), with mutual TLS: Orleans'
/// strongly consistent directory, checked where messages leave for a silo. Any member can write a
/// directory entry, so a silo whose code was changed could register replica i on itself without
/// any placement and receive replica i's messages. Here a lookup answers only with a silo whose
/// certificate proved domain i on this silo's own TLS connection to it; anything else reads as "not
/// active", so the call is placed again by <see cref="FaultDomainPlacementDirector"/>, and the new
/// activation's registration replaces an entry on a silo proven to be of another domain, or on a
/// silo not yet connected to that does not even claim the domain in its metadata. (A silo that
/// also lies in its metadata gets at most the message forwarded to it before that connection
/// exists: the connection's handshake proves its domain, and the next registration replaces it.)
/// </summary>
internal sealed partial class FaultDomainGrainDirectory(
    IGrainDirectory inner, SiloCertificateDomains certificates, Func<SiloAddress, int?> declaredDomain, ILocalSiloDetails local, int? localDomain,
    MinBftMetrics metrics, ILogger<FaultDomainGrainDirectory> logger) : IGrainDirectory
{
    public Task<GrainAddress?> Lookup(GrainId grainId) => Lookup(grainId, CancellationToken.None);

    public async Task<GrainAddress?> Lookup(GrainId grainId, CancellationToken cancellationToken)
    {
        var entry = await inner.Lookup(grainId, cancellationToken).ConfigureAwait(false);
        if (entry is null) return null;
        var check = Check(entry);
        if (check == SiloDomainCheck.Refused) Refuse(entry, "lookup", "its certificate names " + Proven(entry) + ", not the grain's");
        return check == SiloDomainCheck.Verified ? entry : null;
    }

    public Task<GrainAddress?> Register(GrainAddress address) => Register(address, null, CancellationToken.None);

    public Task<GrainAddress?> Register(GrainAddress address, CancellationToken cancellationToken) => Register(address, null, cancellationToken);

    public Task<GrainAddress?> Register(GrainAddress address, GrainAddress? previousAddress) => Register(address, previousAddress, CancellationToken.None);

    public async Task<GrainAddress?> Register(GrainAddress address, GrainAddress? previousAddress, CancellationToken cancellationToken)
    {
        var result = await inner.Register(address, previousAddress, cancellationToken).ConfigureAwait(false);
        if (result is not null && !result.Matches(address) && Misplaced(result) is { } why)
        {
            // Another silo's entry, on a silo not of this grain's domain: replace it, only if unchanged.
            Refuse(result, "registration", why);
            result = await inner.Register(address, result, cancellationToken).ConfigureAwait(false);
        }
        return result;
    }

    public Task Unregister(GrainAddress address) => inner.Unregister(address);

    public Task Unregister(GrainAddress address, CancellationToken cancellationToken) => inner.Unregister(address, cancellationToken);

    public Task UnregisterSilos(List<SiloAddress> siloAddresses) => inner.UnregisterSilos(siloAddresses);

    public Task UnregisterSilos(List<SiloAddress> siloAddresses, CancellationToken cancellationToken) => inner.UnregisterSilos(siloAddresses, cancellationToken);

    private SiloDomainCheck Check(GrainAddress entry)
    {
        if (FaultDomainPlacementDirector.FaultDomainOf(entry.GrainId) is not { } domain) return SiloDomainCheck.Refused;
        if (entry.SiloAddress is not { } silo) return SiloDomainCheck.Refused;
        // This silo's own certificate was checked against its domain at start (MinBftSiloTls.CheckFaultDomain).
        if (silo.Equals(local.SiloAddress)) return localDomain == domain ? SiloDomainCheck.Verified : SiloDomainCheck.Refused;
        return certificates.Check(silo.Endpoint, domain);
    }

    // Why an entry another silo registered may not stand, or null if it may.
    private string? Misplaced(GrainAddress entry) => Check(entry) switch
    {
        SiloDomainCheck.Refused => "its certificate names " + Proven(entry) + ", not the grain's",
        // No connection to that silo yet: keep the entry only if the silo at least claims the
        // domain (a standby of it); a silo that does not even claim it never hosts it.
        SiloDomainCheck.Unknown when declaredDomain(entry.SiloAddress!) != FaultDomainPlacementDirector.FaultDomainOf(entry.GrainId) => "it has not shown its certificate here and does not declare the grain's fault domain",
        _ => null,
    };

    private string Proven(GrainAddress entry) =>
        entry.SiloAddress is { } silo ? "fault domain '" + certificates.Describe(silo.Endpoint) + "'" : "no silo";

    private void Refuse(GrainAddress entry, string where, string why)
    {
        metrics.DirectoryEntryRefused();
        LogRefused(logger, entry.GrainId, entry.SiloAddress, where, why);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Refused the directory entry of {GrainId} on silo {Silo} ({Where}): {Why}")]
    private static partial void LogRefused(ILogger logger, GrainId grainId, SiloAddress? silo, string where, string why);
}

/// <summary>Gives every grain type placed by fault domain the <see cref="FaultDomainGrainDirectory"/> (registered with mutual TLS only).</summary>
internal sealed class FaultDomainGrainDirectoryResolver(IServiceProvider services) : IGrainDirectoryResolver
{
    private FaultDomainGrainDirectory? _directory;

    public bool TryResolveGrainDirectory(GrainType grainType, GrainProperties? properties, [NotNullWhen(true)] out IGrainDirectory? grainDirectory)
    {
        if (properties is not null
            && properties.Properties.TryGetValue(WellKnownGrainTypeProperties.PlacementStrategy, out var strategy)
            && strategy == nameof(FaultDomainPlacement))
        {
            // Created on first use: Orleans builds its directories after the resolvers.
            grainDirectory = _directory ??= new FaultDomainGrainDirectory(
                services.GetRequiredKeyedService<IGrainDirectory>(GrainDirectoryAttribute.DEFAULT_GRAIN_DIRECTORY),
                services.GetRequiredService<SiloCertificateDomains>(),
                DeclaredDomain(services.GetRequiredService<ISiloMetadataCache>()),
                services.GetRequiredService<ILocalSiloDetails>(),
                services.GetRequiredService<MinBftOptions>().FaultDomain,
                services.GetRequiredService<MinBftMetrics>(),
                services.GetRequiredService<ILogger<FaultDomainGrainDirectory>>());
            return true;
        }
        grainDirectory = null;
        return false;
    }

    // The fault domain a silo declares in its metadata: its own claim, used only where no certificate was seen.
    private static Func<SiloAddress, int?> DeclaredDomain(ISiloMetadataCache metadata) =>
        silo => FaultDomainPlacementDirector.GetFaultDomain(metadata.GetSiloMetadata(silo));
}
