using MinBft.Encoding;
using MinBft.Messages;
using MinBft.Protocol;

namespace MinBft.Crypto;

/// <summary>What one REPLY of a batch says, before the batch is signed.</summary>
public readonly record struct ReplyContent(long View, string ClientId, ulong Seq, byte[] RequestDigest, byte[] Result,
    ReplyStatus Status = ReplyStatus.Executed, ulong Position = 0);

/// <summary>Signs a batch of replies with one signature over their Merkle root (<see cref="ReplyTree"/>).</summary>
public static class ReplyBatchSigner
{
    public static Reply[] Sign(IReplicaSigner signer, int replicaId, IReadOnlyList<ReplyContent> contents)
    {
        ArgumentNullException.ThrowIfNull(signer);
        ArgumentNullException.ThrowIfNull(contents);
        if (contents.Count == 0) return [];
        var placeholder = new ReplyProof(0, 1, [], []);
        var replies = new Reply[contents.Count];
        var leaves = new byte[contents.Count][];
        for (var i = 0; i < replies.Length; i++)
        {
            var c = contents[i];
            replies[i] = new Reply(c.View, replicaId, c.ClientId, c.Seq, c.RequestDigest, c.Result, placeholder, c.Status, c.Position);
            leaves[i] = ReplyTree.Leaf(replies[i]);
        }
        var (root, paths) = ReplyTree.Build(leaves);
        var signature = signer.Sign(MessageEncoding.ReplyBatch(replicaId, replies.Length, root));
        for (var i = 0; i < replies.Length; i++)
            replies[i] = replies[i] with { Proof = new ReplyProof(i, replies.Length, paths[i], signature) };
        return replies;
    }
}
