using MinBft.Encoding;
using MinBft.Messages;

namespace MinBft;

/// <summary>
/// The trusted USIG of replica i (key = i), placed only in fault domain i. Its private key
/// never leaves it; its counter is durable before any UI is returned.
/// </summary>
public interface IUsigGrain : IGrainWithIntegerKey
{
    /// <summary>Certify the digests, in order, at counters from <paramref name="firstCounter"/> (the
    /// next ones), with one durable write. For counters already issued for exactly these digests,
    /// the same UIs again (a retried call must not burn counters, and changes nothing kept);
    /// anything else is refused. At most <see cref="UsigIdentity.MaxBatch"/> digests.
    /// <paramref name="keptMessages"/>: null (keep nothing), or one opaque message per digest, at
    /// most <see cref="UsigIdentity.MaxKeptBytes"/> in all, that the USIG keeps in the same durable
    /// write as the counter, in place of what the last batch kept, and hands back in
    /// <see cref="UsigIdentity.KeptMessages"/>: a replica may then certify a message before its own
    /// log holds it (Protocol/Core/USIG-KEPT-MESSAGES-DESIGN.md). A wrong shape (a null message,
    /// another count, over the limit) is refused with ArgumentException, nothing issued.</summary>
    Task<UniqueIdentifier[]> CreateUis(ulong firstCounter, byte[][] certifiedDigests, byte[][]? keptMessages);

    /// <summary>The UI of one of the last few counters again, only for the digest it was issued
    /// for (null otherwise): a replica that logged a message before asking for its UI and
    /// crashed before logging the UI recovers it instead of leaving a gap. Issues nothing new.</summary>
    Task<UniqueIdentifier?> ReissueUi(ulong counter, byte[] certifiedDigest);

    /// <summary>The USIG's public identity (epoch, verification key), its last counter and limits.</summary>
    Task<UsigIdentity> GetIdentity();

    /// <summary>HMAC scheme: whether each claim's certificate is valid for its replica, epoch, counter
    /// and digest (verifying needs the shared secret, so it happens inside the USIG). Issues nothing.</summary>
    [Orleans.Concurrency.AlwaysInterleave]
    Task<bool[]> VerifyUis(UiClaim[] claims);
}

/// <summary>What a USIG says of itself: whose it is, under which identity, and its limits.</summary>
/// <param name="ReplicaId">The replica this USIG certifies for.</param>
/// <param name="Epoch">The USIG's epoch (a new one after a lost state: counters restart under a new identity).</param>
/// <param name="PublicKey">The key its UIs verify under (Ed25519), or empty (HMAC).</param>
/// <param name="LastCounter">The counter of the last UI it issued (0: none yet).</param>
/// <param name="ReissueWindow">How many of its last UIs the USIG can re-issue (a replica keeps at
/// most this many issued UIs not yet durable in its log).</param>
/// <param name="MaxBatch">Most digests one CreateUis certifies.</param>
/// <param name="MaxKeptBytes">Most bytes of messages one CreateUis may ask the USIG to keep, their
/// lengths summed (0: it keeps nothing).</param>
/// <param name="KeptMessages">The messages the last batch kept, oldest first, the last one
/// certified at <see cref="LastCounter"/> (null or empty: it kept none). What a replica restores
/// after a crash that lost them from its own log.</param>
[GenerateSerializer, Immutable, Alias("minbft.UsigIdentity")]
public sealed record UsigIdentity(
    [property: Id(0)] int ReplicaId,
    [property: Id(1)] ulong Epoch,
    [property: Id(2)] byte[] PublicKey,
    [property: Id(3)] ulong LastCounter,
    [property: Id(4)] int ReissueWindow,
    [property: Id(5)] int MaxBatch,
    [property: Id(6)] int MaxKeptBytes = 0,
    [property: Id(7)] byte[][]? KeptMessages = null);
