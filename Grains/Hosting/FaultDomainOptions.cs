namespace MinBft.Hosting;

/// <summary>
/// Which fault domain this silo belongs to. Replica i and USIG i may only run on silos of
/// fault domain i, and each fault domain keeps its own storage.
/// </summary>
public sealed class FaultDomainOptions
{
    /// <summary>The value of <see cref="FaultDomain"/> until a silo is given one.</summary>
    public const int Unset = -1;

    /// <summary>
    /// The silo's fault domain, 0 to n-1. Defaults to <see cref="Unset"/> rather than 0 so that
    /// a silo nobody configured cannot silently pose as domain 0 and open domain 0's store.
    /// </summary>
    public int FaultDomain { get; set; } = Unset;
}
