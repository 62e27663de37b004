using System.Collections.Concurrent;
using MinBft.Encoding;
using MinBft.Messages;
using MinBft.Protocol;

namespace MinBft.Crypto;

/// <summary>
/// Checks that a REPLY was signed by the replica it names: its leaf and proof lead to a root,
/// and the replica signed that root. Roots already verified are remembered (bounded), so the
/// replies of one batch cost one signature check together, not one each. Thread-safe: one
/// instance serves every client proxy of a silo, or every client of an SDK process.
/// </summary>
/// <remarks>Only roots whose signature verified are remembered, keyed by replica, size and root:
/// a forged reply must lead to such a root, which needs a second preimage of SHA-256.</remarks>
public sealed class ReplyAuthenticator(IReplicaSignatureVerifier keys, int rememberedRoots = 4096)
{
    private readonly ConcurrentDictionary<(int Replica, int Count, Sha256Digest Root), byte> _verified = new();

    /// <summary>Null when <paramref name="reply"/> is well formed and signed by its replica, else why not.</summary>
    public string? Explain(Reply? reply)
    {
        if (MessageLimits.CheckReply(reply) is { } malformed) return malformed;
        var r = reply!;
        if (ReplyTree.RootOf(ReplyTree.Leaf(r), r.Proof.Index, r.Proof.Count, r.Proof.Path) is not { } root) return "reply proof does not fit its batch size";
        var key = (r.ReplicaId, r.Proof.Count, Sha256Digest.From(root));
        if (_verified.ContainsKey(key)) return null;
        if (!keys.Verify(r.ReplicaId, MessageEncoding.ReplyBatch(r.ReplicaId, r.Proof.Count, root), r.Proof.RootSignature))
            return $"bad signature for replica {r.ReplicaId}";
        // Bounded: forgetting everything now and then costs one signature check per batch again.
        if (_verified.Count >= rememberedRoots) _verified.Clear();
        _verified.TryAdd(key, 0);
        return null;
    }

    public bool Verify(Reply? reply) => Explain(reply) is null;
}
