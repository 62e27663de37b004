using Orleans.Runtime;

namespace MinBft.Hosting;

/// <summary>
/// Thrown when a fault-domain-placed grain must be activated but no active silo of its fault
/// domain is known. The grain is down; it is deliberately not activated anywhere else, where
/// it would find another domain's storage and keys.
/// </summary>
[GenerateSerializer, Alias("minbft.fault-domain-unavailable")]
public sealed class FaultDomainUnavailableException : OrleansException
{
    public FaultDomainUnavailableException(int faultDomain, string message)
        : base(message)
    {
        FaultDomain = faultDomain;
    }

    public FaultDomainUnavailableException(int faultDomain, string message, Exception innerException)
        : base(message, innerException)
    {
        FaultDomain = faultDomain;
    }

    /// <summary>The fault domain that has no active silo.</summary>
    [Id(0)]
    public int FaultDomain { get; }
}
