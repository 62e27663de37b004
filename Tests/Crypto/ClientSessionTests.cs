using MinBft.Crypto;
using MinBft.Encoding;
using MinBft.Messages;
using Org.BouncyCastle.Security;

namespace MinBft.Tests.Crypto;

/// <summary>
/// Client MAC sessions: a replica takes a request on its MAC only when the client's session with
/// that replica vouches for it, and checks the signature in every other case, so a session can
/// make a request cheaper to check but never makes a bad one pass.
/// </summary>
public sealed class ClientSessionTests : IDisposable
{
    private const int N = 3;
    private static readonly SecureRandom Random = new();
    private readonly Ed25519KeyPair[] _replicaKeys = Enumerable.Range(0, N).Select(_ => Ed25519KeyPair.Generate(Random)).ToArray();
    private readonly ReplicaKeyRing _ring;
    private readonly ReplicaClientSessions[] _replicas;
    private readonly ClientSigner _client = new(Ed25519KeyPair.Generate(Random));

    public ClientSessionTests()
    {
        _ring = new ReplicaKeyRing(_replicaKeys.Select(k => k.PublicKey).ToArray());
        _replicas = Enumerable.Range(0, N).Select(i => new ReplicaClientSessions(i, new Ed25519ReplicaSigner(_replicaKeys[i]), capacity: 2)).ToArray();
    }

    public void Dispose()
    {
        foreach (var r in _replicas) r.Dispose();
    }

    private ClientSession Open(ClientSigner client, long epoch = 1)
    {
        var session = new ClientSession(client, N, epoch);
        foreach (var replica in _replicas) Assert.True(session.TryAccept(replica.Open(session.Offer), _ring));
        Assert.Equal(N, session.Established);
        return session;
    }

    [Fact]
    public void A_request_with_its_session_MACs_passes_every_replica_without_a_signature_check()
    {
        using var session = Open(_client);
        var request = session.Authenticate(_client.CreateRequest(1, [1, 2, 3]));
        foreach (var replica in _replicas) Assert.True(replica.Verify(request));
        Assert.All(_replicas, r => Assert.Equal((1L, 0L), (r.AuthenticatedByMac, r.SignaturesChecked)));
    }

    [Fact]
    public void Without_a_valid_MAC_the_signature_decides()
    {
        using var session = Open(_client);
        var good = session.Authenticate(_client.CreateRequest(1, [1]));
        var replica = _replicas[1];
        // No MAC, a damaged MAC, or another replica's MAC copied into this slot: the valid signature still passes.
        Assert.True(replica.Verify(good with { Authenticator = null }));
        var damaged = (byte[])good.Authenticator!.Clone();
        damaged[MessageLimits.RequestMacLength] ^= 1;
        Assert.True(replica.Verify(good with { Authenticator = damaged }));
        var copied = (byte[])good.Authenticator!.Clone();
        good.Authenticator.AsSpan(0, MessageLimits.RequestMacLength).CopyTo(copied.AsSpan(MessageLimits.RequestMacLength));
        Assert.True(replica.Verify(good with { Authenticator = copied }));
        Assert.Equal((0L, 3L), (replica.AuthenticatedByMac, replica.SignaturesChecked));

        // A forged request (another operation, an unsigned one) is refused, whatever MAC it carries.
        Assert.False(replica.Verify(good with { Operation = [2] }));
        Assert.False(replica.Verify(good with { Signature = new byte[64] } with { Authenticator = damaged }));
        Assert.False(replica.Verify(good with { Signature = new byte[64], Authenticator = copied }));
        // A MAC made for one request does not carry over to another of the same client.
        var other = _client.CreateRequest(2, [9]);
        Assert.False(replica.Verify(other with { Signature = new byte[64], Authenticator = good.Authenticator }));
    }

    [Fact]
    public void A_MAC_for_another_client_s_request_or_under_another_client_id_does_not_pass()
    {
        using var session = Open(_client);
        var victim = new ClientSigner(Ed25519KeyPair.Generate(Random));
        var request = session.Authenticate(_client.CreateRequest(1, [1]));
        // The session's client claiming the victim's id (with its own key): refused at once.
        Assert.False(_replicas[0].Verify(request with { ClientId = victim.ClientId }));
        // The victim's id and key, the attacker's MACs: the victim has no session, the signature is bad.
        Assert.False(_replicas[0].Verify(request with { ClientId = victim.ClientId, ClientPublicKey = victim.PublicKey }));
    }

    [Fact]
    public void Offers_must_be_signed_by_their_client_and_newer_than_its_session()
    {
        var session = new ClientSession(_client, N, epoch: 5);
        var replica = _replicas[0];
        var offer = session.Offer;
        Assert.Null(replica.Open(offer with { Signature = new byte[64] }));
        Assert.Null(replica.Open(offer with { AgreementKey = new byte[32] }));
        var stranger = new ClientSigner(Ed25519KeyPair.Generate(Random));
        Assert.Null(replica.Open(offer with { ClientId = stranger.ClientId }));
        Assert.Null(replica.Open(null));
        Assert.NotNull(replica.Open(offer));
        // A replay (same or older epoch) never replaces the session.
        Assert.Null(replica.Open(offer));
        using var older = new ClientSession(_client, N, epoch: 4);
        Assert.Null(replica.Open(older.Offer));
        using var newer = new ClientSession(_client, N, epoch: 6);
        Assert.NotNull(replica.Open(newer.Offer));
        session.Dispose();
    }

    [Fact]
    public void The_client_takes_only_accepts_its_replica_signed_for_its_own_offer()
    {
        using var session = new ClientSession(_client, N, epoch: 1);
        var accept = _replicas[1].Open(session.Offer)!;
        var other = _replicas[2].Open(new ClientSession(_client, N, epoch: 2).Offer)!;
        // A proxy swapping in its own agreement key, or claiming another replica, or another offer's accept.
        Assert.False(session.TryAccept(accept with { ReplicaAgreementKey = other.ReplicaAgreementKey }, _ring));
        Assert.False(session.TryAccept(accept with { ReplicaId = 2 }, _ring));
        Assert.False(session.TryAccept(other, _ring));
        Assert.False(session.TryAccept(accept with { Signature = new byte[64] }, _ring));
        Assert.Equal(0, session.Established);
        Assert.True(session.TryAccept(accept, _ring));
        Assert.Equal(1, session.Established);
        // Only replica 1 gets a MAC; the others' slots stay empty.
        var request = session.Authenticate(_client.CreateRequest(1, [1]));
        Assert.True(_replicas[1].Verify(request));
        Assert.Equal(1L, _replicas[1].AuthenticatedByMac);
        Assert.All(request.Authenticator!.AsSpan(0, MessageLimits.RequestMacLength).ToArray(), b => Assert.Equal(0, b));
    }

    [Fact]
    public void Sessions_are_bounded_and_an_evicted_client_falls_back_to_signatures()
    {
        var clients = Enumerable.Range(0, 3).Select(_ => new ClientSigner(Ed25519KeyPair.Generate(Random))).ToArray();
        var sessions = clients.Select(c => Open(c)).ToArray();
        Assert.All(_replicas, r => Assert.Equal(2, r.Count));
        // The first was evicted (capacity 2): its request is checked by its signature.
        Assert.True(_replicas[0].Verify(sessions[0].Authenticate(clients[0].CreateRequest(1, [1]))));
        Assert.True(_replicas[0].Verify(sessions[2].Authenticate(clients[2].CreateRequest(1, [1]))));
        Assert.Equal((1L, 1L), (_replicas[0].AuthenticatedByMac, _replicas[0].SignaturesChecked));
        foreach (var s in sessions) s.Dispose();
    }

    /// <summary>Replica <paramref name="replica"/>'s signed reply to <paramref name="request"/> with <paramref name="result"/>.</summary>
    private Reply SignedReply(int replica, Request request, byte[] result) =>
        ReplyBatchSigner.Sign(new Ed25519ReplicaSigner(_replicaKeys[replica]), replica,
            [new ReplyContent(0, request.ClientId, request.Seq, MessageEncoding.RequestDigest(request), result, ReplyStatus.Executed, 5)])[0];

    [Fact]
    public void A_reply_with_its_session_MAC_proves_itself_to_that_client_and_no_other_reply_does()
    {
        using var session = Open(_client);
        var request = _client.CreateRequest(1, [1]);
        var reply = _replicas[1].AuthenticateReply(SignedReply(1, request, [7]));
        Assert.NotNull(reply.Mac);
        Assert.Equal(1L, _replicas[1].RepliesAuthenticated);
        Assert.True(session.ProvesReply(reply));

        // Anything the MAC does not vouch for: another result, status, position, view, seq, or
        // replica id, a damaged MAC, no MAC, or another replica's MAC on this reply.
        Assert.False(session.ProvesReply(reply with { Result = [8] }));
        Assert.False(session.ProvesReply(reply with { Status = ReplyStatus.Expired }));
        Assert.False(session.ProvesReply(reply with { Position = 6 }));
        Assert.False(session.ProvesReply(reply with { View = 1 }));
        Assert.False(session.ProvesReply(reply with { Seq = 2 }));
        Assert.False(session.ProvesReply(reply with { ReplicaId = 2 }));
        var damaged = (byte[])reply.Mac!.Clone();
        damaged[0] ^= 1;
        Assert.False(session.ProvesReply(reply with { Mac = damaged }));
        Assert.False(session.ProvesReply(reply with { Mac = null }));
        var fromReplica2 = _replicas[2].AuthenticateReply(SignedReply(2, request, [7]));
        Assert.False(session.ProvesReply(reply with { Mac = fromReplica2.Mac }));
        // A request MAC under the same session key never passes for a reply MAC (its own tag).
        var requestMac = session.Authenticate(request).Authenticator!.AsSpan(MessageLimits.RequestMacLength, MessageLimits.RequestMacLength).ToArray();
        Assert.False(session.ProvesReply(reply with { Mac = requestMac }));

        // Another client's session proves nothing about this client's reply, nor about a copy renamed to it.
        var other = new ClientSigner(Ed25519KeyPair.Generate(Random));
        using var otherSession = Open(other);
        Assert.False(otherSession.ProvesReply(reply));
        Assert.False(otherSession.ProvesReply(reply with { ClientId = other.ClientId }));
    }

    [Fact]
    public void A_reply_to_a_client_without_a_session_or_from_a_large_batch_leaves_without_a_MAC()
    {
        var request = _client.CreateRequest(1, [1]);
        var reply = _replicas[0].AuthenticateReply(SignedReply(0, request, [7]));
        Assert.Null(reply.Mac);
        Assert.Equal(0L, _replicas[0].RepliesAuthenticated);

        // With a session: replies of batches up to MaxMacBatch get one, larger batches share their signature.
        using var session = Open(_client);
        var content = new ReplyContent(0, request.ClientId, request.Seq, MessageEncoding.RequestDigest(request), [7], ReplyStatus.Executed, 5);
        var signer = new Ed25519ReplicaSigner(_replicaKeys[0]);
        var small = ReplyBatchSigner.Sign(signer, 0, Enumerable.Repeat(content, ReplicaClientSessions.MaxMacBatch).ToList());
        var large = ReplyBatchSigner.Sign(signer, 0, Enumerable.Repeat(content, ReplicaClientSessions.MaxMacBatch + 1).ToList());
        Assert.True(session.ProvesReply(_replicas[0].AuthenticateReply(small[^1])));
        Assert.Null(_replicas[0].AuthenticateReply(large[0]).Mac);
        Assert.Equal(1L, _replicas[0].RepliesAuthenticated);
    }

    [Fact]
    public void The_client_takes_replies_on_their_MACs_and_checks_the_signature_of_any_other()
    {
        using var session = Open(_client);
        var verifier = new MinBft.Client.ReplyVerifier(N, 1, _ring);
        var request = _client.CreateRequest(1, [1]);
        var replies = Enumerable.Range(0, N).Select(i => _replicas[i].AuthenticateReply(SignedReply(i, request, [7]))).ToArray();

        // Valid MACs: no signature is checked, so even a broken signature does not matter to this client.
        var unsigned = replies.Select(r => r with { Proof = r.Proof with { RootSignature = new byte[64] } }).ToArray();
        Assert.Equal([7], verifier.Verify(request, [unsigned[0], unsigned[2]], session).Result);
        Assert.Equal((2L, 0L), (verifier.ProvenByMac, verifier.SignaturesChecked));

        // Without the session, or with a damaged MAC, the signature decides: broken fails, valid
        // passes. (Broken first: a verifier remembers what a valid signature proved.)
        Assert.Throws<MinBft.Client.MinBftReplyVerificationException>(() => verifier.Verify(request, [unsigned[0], unsigned[1]]));
        var damaged = unsigned[1] with { Mac = new byte[MessageLimits.ReplyMacLength] };
        Assert.Throws<MinBft.Client.MinBftReplyVerificationException>(() => verifier.Verify(request, [damaged, unsigned[2] with { Mac = null }], session));
        // A MAC'd reply whose result was changed in transit fails its MAC, then its signature.
        var tampered = replies[1] with { Result = [8] };
        Assert.Throws<MinBft.Client.MinBftReplyVerificationException>(() => verifier.Verify(request, [tampered, unsigned[2] with { Result = [8] }], session));
        Assert.Equal((2L, 6L), (verifier.ProvenByMac, verifier.SignaturesChecked));
        Assert.Equal([7], verifier.Verify(request, [replies[0], replies[1]]).Result);
        Assert.Equal((2L, 8L), (verifier.ProvenByMac, verifier.SignaturesChecked));
    }
}
