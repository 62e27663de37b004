namespace MinBft.Messages;

/// <summary>
/// REPLY: a replica's result for one client request. It covers the request's digest, so a
/// result can never be taken for the answer to another operation under the same seq. A replica
/// signs one Merkle root per executed batch instead of one signature per request; the
/// <see cref="Proof"/> links this reply to that root. <see cref="Status"/> and
/// <see cref="Position"/> are signed too: the position in the executed history the request was
/// decided at, which a client uses as its next <see cref="Request.Incarnation"/> (an Expired
/// reply, for a client whose record was evicted, says only that and the position).
/// <see cref="Mac"/> is a shortcut for the client alone: a MAC under the client's session key with
/// this replica (<c>ClientSession</c>), so the client can skip the signature check. It is outside
/// the signed leaf, and the proxy and anyone else still check the signature.
/// </summary>
[GenerateSerializer, Immutable, Alias("minbft.Reply")]
public sealed record Reply(
    [Id(0)] long View,
    [Id(1)] int ReplicaId,
    [Id(2)] string ClientId,
    [Id(3)] ulong Seq,
    [Id(4)] byte[] RequestDigest,
    [Id(5)] byte[] Result,
    [Id(6)] ReplyProof Proof,
    [Id(7)] ReplyStatus Status = ReplyStatus.Executed,
    [Id(8)] ulong Position = 0,
    [Id(9)] byte[]? Mac = null);

/// <summary>What a REPLY reports.</summary>
public enum ReplyStatus : byte
{
    /// <summary>The request executed; the result is the application's.</summary>
    Executed = 0,

    /// <summary>The request did not execute and never will: its client has no record and the
    /// request's incarnation is below the expiry horizon (or beyond the position: no reply can have
    /// named it yet). The result is empty.</summary>
    Expired = 1,
}

/// <summary>
/// Where a REPLY sits in the batch of replies its replica signed at once: leaf
/// <see cref="Index"/> of <see cref="Count"/>, the sibling hashes from the leaf up to the root,
/// and the replica's signature over the root (the same for every reply of the batch).
/// </summary>
[GenerateSerializer, Immutable, Alias("minbft.ReplyProof")]
public sealed record ReplyProof(
    [Id(0)] int Index,
    [Id(1)] int Count,
    [Id(2)] byte[][] Path,
    [Id(3)] byte[] RootSignature);
