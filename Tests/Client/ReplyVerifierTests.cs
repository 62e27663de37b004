using MinBft.Client;
using MinBft.Crypto;
using MinBft.Encoding;
using MinBft.Messages;
using Org.BouncyCastle.Security;

namespace MinBft.Tests.Client;

/// <summary>
/// The client's acceptance rule (PROTOCOL.md 4.6): f+1 validly signed replies from distinct
/// replicas, for this client and seq, with one status, position and result. Everything else is
/// rejected, whatever the untrusted proxy hands over.
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
        var forged = Reply(1, A) with { Proof = Reply(1, B).Proof };

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
        var impostor = FakeReplicas.SignAs(_replicas.Keys[0], 1, _request, A);

        Rejects(Reply(0, A), impostor);
    }

    [Fact]
    public void SignatureByUnknownKey_Rejected()
    {
        var stranger = Ed25519KeyPair.Generate(new SecureRandom());
        Rejects(Reply(0, A), FakeReplicas.SignAs(stranger, 1, _request, A));
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
    public void ReplyToAnotherOperationUnderTheSameSeq_Rejected()
    {
        // A client whose seq went back (a clock step) sent another operation under an executed
        // seq: the replies for the old operation must not pass for the new one's result.
        var client = FakeReplicas.NewClient();
        var executed = client.CreateRequest(9, [0x02, 0, 1, (byte)'a']);
        var reused = client.CreateRequest(9, [0x02, 0, 1, (byte)'b']);
        var old = Enumerable.Range(0, 3).Select(i => _replicas.Reply(i, executed, A)).ToArray();
        Assert.Equal(A, _replicas.Verifier.Verify(executed, old).Result);
        var e = Assert.Throws<MinBftReplyVerificationException>(() => _replicas.Verifier.Verify(reused, old));
        Assert.Contains(e.Problems, p => p.Contains("another request with this seq", StringComparison.Ordinal));
    }

    [Fact]
    public void RepliesOfOneSignedBatch_EachProveOnlyTheirOwnRequest()
    {
        // Replica 1 executed three clients' requests in one batch and signed their root once.
        var requests = Enumerable.Range(0, 3).Select(_ => FakeReplicas.NewClient().CreateRequest(1, [0x02, 0, 1, (byte)'k'])).ToArray();
        var batch = ReplyBatchSigner.Sign(new Ed25519ReplicaSigner(_replicas.Keys[1]), 1,
            requests.Select((r, i) => new ReplyContent(0, r.ClientId, r.Seq, MessageEncoding.RequestDigest(r), i == 1 ? B : A)).ToList());
        for (var i = 0; i < requests.Length; i++)
        {
            var result = i == 1 ? B : A;
            var verified = _replicas.Verifier.Verify(requests[i], [batch[i], _replicas.Reply(2, requests[i], result)]);
            Assert.Equal(result, verified.Result);
        }
        // Leaf 1's result under leaf 0's proof, or leaf 0 moved to position 1, proves nothing.
        void Refused(Request request, Reply valid, Reply tampered)
        {
            var e = Assert.Throws<MinBftReplyVerificationException>(() => _replicas.Verifier.Verify(request, [valid, tampered]));
            Assert.Contains(e.Problems, p => p.Contains("reply #1", StringComparison.Ordinal));
        }
        Refused(requests[0], _replicas.Reply(0, requests[0], B), batch[0] with { Result = B });
        Refused(_request, Reply(0, A), batch[0] with { ClientId = _request.ClientId, Seq = _request.Seq, RequestDigest = MessageEncoding.RequestDigest(_request), Result = A });
        Refused(requests[0], _replicas.Reply(0, requests[0], A), batch[0] with { Proof = batch[0].Proof with { Index = 1 } });
    }

    [Fact]
    public void RepliesAgreeingOnTheResultButNotOnStatusOrPosition_ProveNothing()
    {
        // The status and the position are signed, and a client acts on both (an Expired request
        // throws; the position becomes its next incarnation): f+1 replicas must vouch for them too.
        Reply R(int replica, byte[] result, ReplyStatus status, ulong position) =>
            _replicas.Reply(replica, _request, result, status: status, position: position);

        // An empty result either way: executed (as a probe's is), or expired.
        var status = Rejects(R(0, [], ReplyStatus.Executed, 5), R(1, [], ReplyStatus.Expired, 5));
        Assert.Contains(status.Problems, p => p.Contains("disagree", StringComparison.Ordinal));
        var position = Rejects(R(0, A, ReplyStatus.Executed, 5), R(1, A, ReplyStatus.Executed, 6));
        Assert.Contains(position.Problems, p => p.Contains("disagree", StringComparison.Ordinal));

        // f+1 that agree on all three prove them, beside one that does not.
        var executed = _replicas.Verifier.Verify(_request, [R(0, A, ReplyStatus.Executed, 5), R(1, A, ReplyStatus.Executed, 6), R(2, A, ReplyStatus.Executed, 6)]);
        Assert.Equal((ReplyStatus.Executed, 6UL, A), (executed.Status, executed.Position, executed.Result));
        Assert.Equal([1, 2], executed.Replies.Select(r => r.ReplicaId));
        var expired = _replicas.Verifier.Verify(_request, [R(2, [], ReplyStatus.Expired, 9), R(0, [], ReplyStatus.Executed, 9), R(1, [], ReplyStatus.Expired, 9)]);
        Assert.Equal((ReplyStatus.Expired, 9UL), (expired.Status, expired.Position));
        Assert.Equal([1, 2], expired.Replies.Select(r => r.ReplicaId));
    }

    [Fact]
    public void ReplicaSigningTwoPositionsOrStatuses_CountsForNeither()
    {
        // Replica 1 signs the same result at two positions (or with two statuses): it is faulty,
        // and replica 0 alone is no quorum.
        Rejects(Reply(0, A), Reply(1, A), _replicas.Reply(1, _request, A, position: 3));
        Rejects(_replicas.Reply(0, _request, []), _replicas.Reply(1, _request, []), _replicas.Reply(1, _request, [], status: ReplyStatus.Expired));
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
        Rejects(Reply(0, A), FakeReplicas.SignAs(outsider, 3, _request, A));
        Rejects(Reply(0, A), FakeReplicas.SignAs(outsider, -1, _request, A));
    }

    [Fact]
    public void MalformedReplies_RejectedWithoutThrowingAnythingElse()
    {
        var good = Reply(0, A);
        Rejects(
            good,
            null,
            good with { ReplicaId = 1, Proof = null! },
            good with { ReplicaId = 1, Proof = good.Proof with { RootSignature = null! } },
            good with { ReplicaId = 1, Proof = good.Proof with { RootSignature = new byte[3] } },
            good with { ReplicaId = 1, Proof = good.Proof with { Path = [new byte[31]] } },
            good with { ReplicaId = 1, Proof = good.Proof with { Index = 1 } },
            good with { ReplicaId = 1, RequestDigest = null! },
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
