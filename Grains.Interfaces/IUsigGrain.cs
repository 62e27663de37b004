using MinBft.Messages;

namespace MinBft;

/// <summary>
/// The trusted USIG of replica i (key = i), placed only in fault domain i. Its private key
/// never leaves it; its counter is durable before any UI is returned.
/// </summary>
public interface IUsigGrain : IGrainWithIntegerKey
{
    /// <summary>Certify the digest with the next counter (or return the same UI if the digest
    /// equals the last one certified: a retried call must not burn a counter).</summary>
    Task<UniqueIdentifier> CreateUi(byte[] certifiedDigest);

    /// <summary>The UI of one of the last few counters again, only for the digest it was issued
    /// for (null otherwise): a replica that logged a message before asking for its UI and
    /// crashed before logging the UI recovers it instead of leaving a gap. Issues nothing new.</summary>
    Task<UniqueIdentifier?> ReissueUi(ulong counter, byte[] certifiedDigest);

    /// <summary>The USIG's public identity: epoch and verification key.</summary>
    Task<UsigIdentity> GetIdentity();
}

[GenerateSerializer, Immutable, Alias("minbft.UsigIdentity")]
public sealed record UsigIdentity(
    [property: Id(0)] int ReplicaId,
    [property: Id(1)] ulong Epoch,
    [property: Id(2)] byte[] PublicKey,
    [property: Id(3)] ulong LastCounter);
