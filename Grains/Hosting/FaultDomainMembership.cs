using Orleans.Runtime;
using Orleans.Runtime.MembershipService.SiloMetadata;

namespace MinBft.Hosting;

/// <summary>
/// Whether a fault domain has an active silo, as this silo's membership view and the silos'
/// metadata say (the same facts the placement director decides on). A silo that stopped leaves
/// the view at once; a crashed one once failure detection declares it dead.
/// </summary>
internal sealed class FaultDomainMembership(IClusterMembershipService membership, ISiloMetadataCache metadata)
{
    /// <summary>The membership of this silo, or null where MinBFT's placement is not set up.</summary>
    public static FaultDomainMembership? TryCreate(IServiceProvider services) =>
        services.GetService(typeof(IClusterMembershipService)) is IClusterMembershipService membership
        && services.GetService(typeof(ISiloMetadataCache)) is ISiloMetadataCache metadata
            ? new FaultDomainMembership(membership, metadata)
            : null;

    public bool HasActiveSilo(int faultDomain)
    {
        foreach (var member in membership.CurrentSnapshot.Members.Values)
            if (member.Status == SiloStatus.Active
                && FaultDomainPlacementDirector.GetFaultDomain(metadata.GetSiloMetadata(member.SiloAddress)) == faultDomain)
                return true;
        return false;
    }
}
