using System.Globalization;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Configuration;
using Orleans.Hosting;
using Orleans.Runtime.MembershipService.SiloMetadata;

namespace MinBft.Hosting;

/// <summary>Fault-domain hosting for MinBFT silos.</summary>
public static class FaultDomainSiloBuilderExtensions
{
    /// <summary>
    /// Declares this silo's fault domain (as silo metadata, so every silo's placement director
    /// can see it) and registers <see cref="FaultDomainPlacement"/> with its director.
    /// </summary>
    /// <remarks>
    /// This calls Orleans' <c>UseSiloMetadata(dictionary)</c>. Orleans merges the metadata of
    /// several such calls but registers its metadata services on each one; combining this with
    /// another <c>UseSiloMetadata</c> call on the same silo is untested.
    /// </remarks>
    public static ISiloBuilder AddMinBftFaultDomain(this ISiloBuilder builder, int faultDomain)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentOutOfRangeException.ThrowIfNegative(faultDomain);

        builder.UseSiloMetadata(new Dictionary<string, string>
        {
            [FaultDomainPlacementDirector.MetadataKey] = faultDomain.ToString(CultureInfo.InvariantCulture),
        });
        builder.AddPlacementDirector<FaultDomainPlacement, FaultDomainPlacementDirector>();
        builder.Services.Configure<FaultDomainOptions>(options => options.FaultDomain = faultDomain);
        builder.Services.ConfigureFormatter<FaultDomainOptions>();
        return builder;
    }
}
