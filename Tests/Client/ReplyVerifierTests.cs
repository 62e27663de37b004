using MinBft.Client;
using MinBft.Crypto;
using MinBft.Encoding;
using MinBft.Messages;
using Org.BouncyCastle.Security;

namespace MinBft.Tests.Client;

/// <summary>
/// The client's acceptance rule (PROTOCOL.md 4.6): f+1 validly signed replies from distinct
/// replicas, for this client and seq, with one result. Everything else is rejected, whatever
/// the untrusted proxy hands over.
/// </summary>
public sealed class ReplyVerifierTests
{
    private static readonly byte[] A = [1, 0];
    private static readonly byte[] B = [2, 0];

    private readonly FakeReplicas _replicas = new(f: 1);
    private readonly Request _request = FakeReplicas.NewClient().CreateRequest(7, [0x02, 0, 1, (byte)'k']);

    private Reply Reply(int replica, byte[] result) => _replicas.Reply(replica, _request, result);

    private MinBftReplyVerificationException Rejects(params Reply?[] replies) =>
        Assert.Throws<MinBftReplyVerificationException>(() => _replicas.Verifier.Verify(_request, replies));

    [Fact]
    public void FPlusOneValidMatchingReplies_Accepted()
    {
        var verified = _replicas.Verifier.Verify(_request, [Reply(2, A), Reply(0, A)]);

        Assert.Equal(A, verified.Result);
        Assert.Equal(_request.Seq, verified.Seq);
        Assert.Equal(_request.ClientId, verified.ClientId);
        Assert.Equal([0, 2], verified.Replies.Select(r => r.ReplicaId));
    }

    [Fact]
    public void AllReplicasMatching_Accepted_ViewsMayDiffer()
    {
        var verified = _replicas.Verifier.Verify(_request,
            [_replicas.Reply(0, _request, A, view: 0), _replicas.Reply(1, _request, A, view: 1), _replicas.Reply(2, _request, A, view: 1)]);

        Assert.Equal(A, verified.Result);
        Assert.Equal(1, verified.View);
    }

    [Fact]
    public void ForgedSignature_Rejected()
    {
        var forged = Reply(1, A) with { Signature = Reply(1, B).Signature };

        var e = Rejects(Reply(0, A), forged);
        Assert.Contains(e.Problems, p => p.Contains("bad signature", StringComparison.Ordinal));
    }

    [Fact]
    public void TamperedResult_Rejected()
    {
        Rejects(Reply(0, A), Reply(1, A) with { Result = B });
    }

    [Fact]
    public void ReplySignedByAnotherReplicasKey_Rejected()
    {
        // Replica 0 (or the proxy holding its reply) pretends to be replica 1 as well.
        var impostor = FakeReplicas.SignAs(_replicas.Keys[0], 1, _request.ClientId, _request.Seq, A);

        Rejects(Reply(0, A), impostor);
    }

    [Fact]
    public void SignatureByUnknownKey_Rejected()
    {
        var stranger = Ed25519KeyPair.Generate(new SecureRandom());
        Rejects(Reply(0, A), FakeReplicas.SignAs(stranger, 1, _request.ClientId, _request.Seq, A));
    }

    [Fact]
    public void SameReplicaTwice_CountsOnce_Rejected()
    {
        var e = Rejects(Reply(0, A), Reply(0, A));
        Assert.Contains(e.Problems, p => p.Contains("counted once", StringComparison.Ordinal));
    }

    [Fact]
    public void OnlyFMatchingReplies_Rejected()
    {
        var e = Rejects(Reply(1, A));
        Assert.Equal(2, e.Required);
    }

    [Fact]
    public void NoReplies_Rejected()
    {
        Rejects();
        Assert.Throws<MinBftReplyVerificationException>(() => _replicas.Verifier.Verify(_request, null));
    }

    [Fact]
    public void MismatchingResults_Rejected()
    {
        var e = Rejects(Reply(0, A), Reply(1, B));
        Assert.Contains(e.Problems, p => p.Contains("disagree", StringComparison.Ordinal));
    }

    [Fact]
    public void ReplyForAnotherSeq_Rejected()
    {
        Rejects(Reply(0, A), _replicas.Reply(1, _request.ClientId, _request.Seq - 1, A));
        Rejects(Reply(0, A), _replicas.Reply(1, _request.ClientId, _request.Seq + 1, A));
    }

    [Fact]
    public void ReplyForAnotherClient_Rejected()
    {
        var other = FakeReplicas.NewClient();
        var e = Rejects(Reply(0, A), _replicas.Reply(1, other.ClientId, _request.Seq, A));
        Assert.Contains(e.Problems, p => p.Contains("another client", StringComparison.Ordinal));
    }

    [Fact]
    public void ReplicaIdOutsideCluster_Rejected()
    {
        var outsider = Ed25519KeyPair.Generate(new SecureRandom());
        Rejects(Reply(0, A), FakeReplicas.SignAs(outsider, 3, _request.ClientId, _request.Seq, A));
        Rejects(Reply(0, A), FakeReplicas.SignAs(outsider, -1, _request.ClientId, _request.Seq, A));
    }

    [Fact]
    public void MalformedReplies_RejectedWithoutThrowingAnythingElse()
    {
        var good = Reply(0, A);
        Rejects(
            good,
            null,
            good with { ReplicaId = 1, Signature = null! },
            good with { ReplicaId = 1, Signature = new byte[3] },
            good with { ReplicaId = 1, Result = null! },
            good with { ReplicaId = 1, ClientId = null! },
            good with { ReplicaId = 1, Result = new byte[MessageLimits.MaxResultLength + 1] });
    }

    [Fact]
    public void InvalidRepliesBesideAValidQuorum_DoNotVetoIt()
    {
        // A faulty replica or proxy adds junk; f+1 valid matching replies still prove A.
        var forged = Reply(2, B) with { Result = A };
        var verified = _replicas.Verifier.Verify(_request, [forged, Reply(0, A), null, Reply(1, A)]);
        Assert.Equal(A, verified.Result);
    }

    [Fact]
    public void ReplicaSigningTwoResults_CountsForNeither()
    {
        // Replica 1 equivocates; with only replica 0 left for A there is no quorum.
        Rejects(Reply(0, A), Reply(1, A), Reply(1, B));
    }

    [Fact]
    public void LargerCluster_ByzantineMinorityCannotWin()
    {
        var replicas = new FakeReplicas(f: 2);
        var request = FakeReplicas.NewClient().CreateRequest(1, [1]);
        Reply R(int i, byte[] result) => replicas.Reply(i, request, result);

        // f = 2 faulty replicas agree on B: not enough (f+1 = 3 needed).
        Assert.Throws<MinBftReplyVerificationException>(() => replicas.Verifier.Verify(request, [R(3, B), R(4, B), R(0, A), R(1, A)]));
        // Three correct replicas prove A despite them.
        var verified = replicas.Verifier.Verify(request, [R(3, B), R(4, B), R(0, A), R(1, A), R(2, A)]);
        Assert.Equal(A, verified.Result);
    }

    [Fact]
    public void Constructor_RequiresNEquals2FPlus1AndEveryKey()
    {
        Assert.Throws<ArgumentException>(() => new ReplyVerifier(4, 1, _replicas.KeyRing));
        var partial = new ReplicaKeyRing(new Dictionary<int, byte[]> { [0] = _replicas.Keys[0].PublicKey });
        Assert.Throws<ArgumentException>(() => new ReplyVerifier(3, 1, partial));
    }
}
