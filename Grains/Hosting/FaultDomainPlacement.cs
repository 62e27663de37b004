using System.Globalization;
using Orleans.Metadata;
using Orleans.Placement;
using Orleans.Runtime;

namespace MinBft.Hosting;

/// <summary>
/// Places a grain whose integer key is i only on a silo of fault domain i, and nowhere else.
/// The strategy carries no data: the fault domain comes from the grain key, so one instance
/// serves every grain type that uses it.
/// </summary>
[GenerateSerializer, Immutable, Alias("minbft.placement.fault-domain")]
public sealed class FaultDomainPlacement : PlacementStrategy
{
    /// <summary>The shared instance used by <see cref="FaultDomainPlacementAttribute"/>.</summary>
    public static FaultDomainPlacement Instance { get; } = new();
}

/// <summary>
/// Marks a grain class (with an integer key) as belonging to the fault domain equal to its key.
/// The grain is also made immovable: activation rebalancing or repartitioning must never move a
/// replica or USIG to another silo on its own initiative.
/// </summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false)]
public sealed class FaultDomainPlacementAttribute : PlacementAttribute
{
    public FaultDomainPlacementAttribute()
        : base(FaultDomainPlacement.Instance)
    {
    }

    /// <inheritdoc/>
    public override void Populate(IServiceProvider services, Type grainClass, GrainType grainType, Dictionary<string, string> properties)
    {
        base.Populate(services, grainClass, grainType, properties);

        // Same property [Immovable(ImmovableKind.Any)] writes; a class cannot carry both
        // attributes' intent reliably if the user forgets one, so this attribute sets it.
        properties[WellKnownGrainTypeProperties.Immovable] =
            ((byte)ImmovableKind.Any).ToString(CultureInfo.InvariantCulture);
    }
}
