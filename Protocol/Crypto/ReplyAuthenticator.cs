using System.Collections.Concurrent;
using MinBft.Encoding;
using MinBft.Messages;
using MinBft.Protocol;

namespace MinBft.Crypto;

/// <summary>
/// Checks that a REPLY was signed by the replica it names: its leaf and proof lead to a root,
/// and the replica signed that root. The nodes of verified paths are remembered (bounded), so
/// the replies of one batch cost one signature check together, not one each, and each reply
/// hashes only up to the first node a reply of its batch already proved (about two hashes, not
/// the path's log2 of the batch size). Thread-safe: one instance serves every client proxy of a
/// silo, or every client of an SDK process.
/// </summary>
/// <remarks>A node is remembered by replica, batch size, level, position and hash, and only once
/// its path reached a root whose signature verified. A forged reply must reach such a node at
/// the same position, which needs a second preimage of SHA-256.</remarks>
public sealed class ReplyAuthenticator(IReplicaSignatureVerifier keys, int rememberedNodes = 64 * 1024)
{
    private readonly ConcurrentDictionary<(int Replica, int Count, int Level, int Position, Sha256Digest Node), byte> _verified = new();

    // Approximately _verified.Count: ConcurrentDictionary.Count takes every lock, too dear per reply.
    private int _remembered;

    /// <summary>Nodes remembered as proven (for tests).</summary>
    internal int RememberedNodes => _verified.Count;

    /// <summary>Null when <paramref name="reply"/> is well formed and signed by its replica, else why not.</summary>
    public string? Explain(Reply? reply)
    {
        if (MessageLimits.CheckReply(reply) is { } malformed) return malformed;
        var r = reply!;
        if (ReplyTree.Walk(ReplyTree.Leaf(r), r.Proof.Index, r.Proof.Count, r.Proof.Path) is not { } walk) return "reply proof does not fit its batch size";
        var path = new List<(int, int, int, int, Sha256Digest)>(r.Proof.Path.Length + 1);
        byte[]? root = null;
        foreach (var (level, position, node) in walk)
        {
            var key = (r.ReplicaId, r.Proof.Count, level, position, Sha256Digest.From(node));
            if (_verified.ContainsKey(key))
            {
                // Proven from here up: what led here is proven too (it helps this leaf's siblings).
                Remember(path);
                return null;
            }
            path.Add(key);
            root = node;
        }
        if (!keys.Verify(r.ReplicaId, MessageEncoding.ReplyBatch(r.ReplicaId, r.Proof.Count, root!), r.Proof.RootSignature))
            return $"bad signature for replica {r.ReplicaId}";
        Remember(path);
        return null;
    }

    public bool Verify(Reply? reply) => Explain(reply) is null;

    private void Remember(List<(int, int, int, int, Sha256Digest)> nodes)
    {
        // Bounded: forgetting everything now and then costs one signature check per batch again.
        if (nodes.Count == 0) return;
        if (Volatile.Read(ref _remembered) + nodes.Count > rememberedNodes)
        {
            _verified.Clear();
            Volatile.Write(ref _remembered, 0);
        }
        foreach (var node in nodes)
            if (_verified.TryAdd(node, 0)) Interlocked.Increment(ref _remembered);
    }
}
