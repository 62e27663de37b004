using System.Security.Cryptography;
using MinBft.Crypto;
using MinBft.Messages;
using MinBft.Protocol;

namespace MinBft.Tests.Crypto;

/// <summary>
/// The proxy's and the SDK's reply check remembers the nodes of verified paths, so a batch's
/// replies cost one signature check and about two hashes each. What it remembers must never let
/// a reply through that the signed tree does not contain.
/// </summary>
public sealed class ReplyAuthenticatorTests
{
    /// <summary>Each replica "signs" with a keyed hash of signature size, and checks are counted.</summary>
    private sealed class CountingKeys : IReplicaSignatureVerifier
    {
        public int Checks { get; private set; }

        public IReplicaSigner For(int replica) => new Signer(replica);

        public bool Verify(int replicaId, ReadOnlySpan<byte> message, ReadOnlySpan<byte> signature)
        {
            Checks++;
            return signature.SequenceEqual(Signer.Sign(replicaId, message));
        }

        private sealed class Signer(int replica) : IReplicaSigner
        {
            public byte[] Sign(ReadOnlySpan<byte> message) => Sign(replica, message);

            public static byte[] Sign(int replica, ReadOnlySpan<byte> message) => HMACSHA512.HashData([(byte)replica], message);
        }
    }

    private readonly CountingKeys _keys = new();

    private Reply[] Batch(int replica, int count, string tag = "r") =>
        ReplyBatchSigner.Sign(_keys.For(replica), replica, Enumerable.Range(0, count)
            .Select(i => new ReplyContent(0, Convert.ToHexStringLower(SHA256.HashData([(byte)i, 1])), (ulong)i + 1, SHA256.HashData([(byte)i]), System.Text.Encoding.UTF8.GetBytes($"{tag}{i}")))
            .ToArray());

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(64)]
    [InlineData(100)]
    public void Every_reply_of_a_batch_verifies_with_one_signature_check(int count)
    {
        var authenticator = new ReplyAuthenticator(_keys);
        var batch = Batch(0, count);
        // Any order: the proxy gets replies in whatever order their deliveries arrive.
        foreach (var reply in batch.Reverse()) Assert.Null(authenticator.Explain(reply));
        foreach (var reply in batch) Assert.Null(authenticator.Explain(reply));
        Assert.Equal(1, _keys.Checks);
    }

    [Fact]
    public void A_tampered_reply_fails_after_its_batch_was_remembered()
    {
        var authenticator = new ReplyAuthenticator(_keys);
        var batch = Batch(0, 16);
        foreach (var reply in batch) Assert.Null(authenticator.Explain(reply));

        // Another result, another position, another batch size, or another replica's name: none
        // reaches a remembered node, so each needs a signature that does not verify.
        Assert.NotNull(authenticator.Explain(batch[5] with { Result = [9, 9] }));
        Assert.NotNull(authenticator.Explain(batch[5] with { Proof = batch[5].Proof with { Index = 4 } }));
        Assert.NotNull(authenticator.Explain(batch[5] with { Proof = batch[6].Proof }));
        Assert.NotNull(authenticator.Explain(batch[5] with { ReplicaId = 1 }));
        Assert.NotNull(authenticator.Explain(batch[15] with { Proof = batch[15].Proof with { Count = 17, Index = 15 } }));
    }

    [Fact]
    public void A_reply_from_another_replica_s_identical_batch_needs_that_replica_s_signature()
    {
        var authenticator = new ReplyAuthenticator(_keys);
        foreach (var reply in Batch(0, 8)) Assert.Null(authenticator.Explain(reply));
        var checks = _keys.Checks;

        // Replica 1 replied the same: its tree has the same nodes, but they are proven for replica 0 only.
        var other = Batch(1, 8);
        Assert.Null(authenticator.Explain(other[3]));
        Assert.Equal(checks + 1, _keys.Checks);
        // A forger reusing replica 0's proof under replica 1's name fails.
        Assert.Contains("bad signature", authenticator.Explain(Batch(0, 8, "x")[2] with { ReplicaId = 1 }));
    }

    [Fact]
    public void A_proof_of_the_wrong_shape_is_refused_before_anything_is_remembered()
    {
        var authenticator = new ReplyAuthenticator(_keys);
        var reply = Batch(0, 6)[4];
        Assert.Equal("reply proof does not fit its batch size", authenticator.Explain(reply with { Proof = reply.Proof with { Count = 5 } }));
        Assert.Equal("reply proof does not fit its batch size", authenticator.Explain(reply with { Proof = reply.Proof with { Path = [.. reply.Proof.Path, new byte[32]] } }));
        Assert.Equal(0, _keys.Checks);
        Assert.Equal(0, authenticator.RememberedNodes);
    }

    [Fact]
    public void A_small_memory_forgets_and_checks_again_but_stays_correct()
    {
        var authenticator = new ReplyAuthenticator(_keys, rememberedNodes: 8);
        var first = Batch(0, 32, "a");
        var second = Batch(0, 32, "b");
        foreach (var reply in first.Concat(second).Concat(first)) Assert.Null(authenticator.Explain(reply));
        Assert.True(authenticator.RememberedNodes <= 8);
        Assert.True(_keys.Checks > 2, "forgetting costs signature checks again");
        Assert.NotNull(authenticator.Explain(first[0] with { Result = [0] }));
    }
}
