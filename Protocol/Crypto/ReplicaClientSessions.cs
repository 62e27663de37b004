using System.Security.Cryptography;
using MinBft.Encoding;
using MinBft.Messages;
using MinBft.Protocol;
using NSec.Cryptography;

namespace MinBft.Crypto;

/// <summary>
/// One replica's MAC sessions with clients, and its request check: a request whose MAC for this
/// replica verifies under the client's session key is authentic without its Ed25519 signature
/// being checked; any other request is checked by its signature (<see cref="RequestVerifier"/>).
/// The session key only ever replaces a check the request can always pass on its own, so losing
/// sessions (a restart, eviction) costs speed, never correctness, and nothing here is replicated
/// state. Keys live in memory only; at most <c>capacity</c> sessions, the least recently opened
/// evicted first. Not thread-safe: one replica's grain owns it.
/// </summary>
public sealed class ReplicaClientSessions : IRequestVerifier, IDisposable
{
    private readonly int _replicaId;
    private readonly IReplicaSigner _signer;
    private readonly int _capacity;
    private readonly Key _key;
    private readonly byte[] _publicKey;
    private readonly Dictionary<string, (long Epoch, byte[] MacKey, byte[] ClientPublicKey)> _sessions = new(StringComparer.Ordinal);
    private readonly Queue<(string ClientId, long Epoch)> _opened = new();

    public ReplicaClientSessions(int replicaId, IReplicaSigner signer, int capacity = 100_000)
    {
        ArgumentNullException.ThrowIfNull(signer);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        _replicaId = replicaId;
        _signer = signer;
        _capacity = capacity;
        (_key, _publicKey) = SessionKeys.Create();
    }

    public int Count => _sessions.Count;

    /// <summary>Requests accepted on their MAC alone.</summary>
    public long AuthenticatedByMac { get; private set; }

    /// <summary>Requests whose Ed25519 signature was checked (valid or not).</summary>
    public long SignaturesChecked { get; private set; }

    /// <summary>Replies that left with a MAC for their client (<see cref="AuthenticateReply"/>).</summary>
    public long RepliesAuthenticated { get; private set; }

    /// <summary>
    /// Opens (or renews) the session <paramref name="offer"/> proposes and returns this replica's
    /// signed accept; null for an offer that is malformed, not signed by the client it names, or
    /// not newer than that client's current session (a replay).
    /// </summary>
    public ClientSessionAccept? Open(ClientSessionOffer? offer)
    {
        if (MessageLimits.CheckSessionOffer(offer) is not null) return null;
        var o = offer!;
        if (_sessions.TryGetValue(o.ClientId, out var current) && o.Epoch <= current.Epoch) return null;
        if (!ClientIdentity.Matches(o.ClientId, o.ClientPublicKey)) return null;
        if (!Ed25519.Verify(o.ClientPublicKey, MessageEncoding.ClientSessionOffer(o.ClientId, o.ClientPublicKey, o.Epoch, o.AgreementKey), o.Signature)) return null;
        var signed = MessageEncoding.ClientSessionAccept(_replicaId, o.ClientId, o.Epoch, o.AgreementKey, _publicKey);
        var accept = new ClientSessionAccept(_replicaId, o.ClientId, o.Epoch, o.AgreementKey, _publicKey, _signer.Sign(signed));
        if (SessionKeys.Derive(_key, o.AgreementKey, accept) is not { } macKey) return null;
        _sessions[o.ClientId] = (o.Epoch, macKey, o.ClientPublicKey);
        _opened.Enqueue((o.ClientId, o.Epoch));
        while (_sessions.Count > _capacity && _opened.TryDequeue(out var oldest))
        {
            // Only if that entry is still the session it recorded (a renewal queued a newer one).
            if (_sessions.TryGetValue(oldest.ClientId, out var s) && s.Epoch == oldest.Epoch) _sessions.Remove(oldest.ClientId);
        }
        // Renewals leave stale queue entries behind; keep the queue within a small factor of the table.
        if (_opened.Count > 2 * _capacity) Compact();
        return accept;
    }

    public bool Verify(Request request) => Verify(request, MessageEncoding.RequestDigest(request));

    public bool Verify(Request request, ReadOnlySpan<byte> digest)
    {
        if (HasValidMac(request, digest))
        {
            AuthenticatedByMac++;
            return true;
        }
        SignaturesChecked++;
        return RequestVerifier.Explain(request) is null;
    }

    /// <summary>
    /// Largest batch whose replies get a MAC. A client checks a batch's signature once for all its
    /// replies, so per reply it pays a signature check divided by the batch size; a MAC costs the
    /// replica about a twentieth of a check (ReplyCheckBenchmarks) per reply. Up to 8 replies per
    /// signature the MAC saves the client more than it costs the replica; beyond, it would only
    /// add replica CPU.
    /// </summary>
    public const int MaxMacBatch = 8;

    /// <summary>
    /// <paramref name="reply"/> with a MAC under its client's current session key (<see cref="Reply.Mac"/>),
    /// so the client can take it without checking the signature; unchanged when the client has no
    /// session here or the reply's batch is larger than <see cref="MaxMacBatch"/> (the client then
    /// checks the signature, as it always may).
    /// </summary>
    public Reply AuthenticateReply(Reply reply)
    {
        ArgumentNullException.ThrowIfNull(reply);
        if (reply.Proof is not { Count: <= MaxMacBatch } || reply.ClientId is null || !_sessions.TryGetValue(reply.ClientId, out var session)) return reply;
        RepliesAuthenticated++;
        return reply with { Mac = SessionKeys.ReplyMac(session.MacKey, reply) };
    }

    private bool HasValidMac(Request request, ReadOnlySpan<byte> digest)
    {
        if (request.Authenticator is not { } authenticator || !_sessions.TryGetValue(request.ClientId, out var session)) return false;
        var at = _replicaId * MessageLimits.RequestMacLength;
        if (authenticator.Length < at + MessageLimits.RequestMacLength) return false;
        // The id-key binding holds without the signature: the session was opened by the owner of
        // the key its id hashes to, and the request must name that same key.
        if (MessageLimits.CheckRequest(request) is not null || !request.ClientPublicKey.AsSpan().SequenceEqual(session.ClientPublicKey)) return false;
        Span<byte> expected = stackalloc byte[MessageLimits.RequestMacLength];
        SessionKeys.Mac(session.MacKey, _replicaId, digest, expected);
        return CryptographicOperations.FixedTimeEquals(expected, authenticator.AsSpan(at, MessageLimits.RequestMacLength));
    }

    private void Compact()
    {
        var live = _opened.Where(e => _sessions.TryGetValue(e.ClientId, out var s) && s.Epoch == e.Epoch).ToList();
        _opened.Clear();
        foreach (var e in live) _opened.Enqueue(e);
    }

    public void Dispose() => _key.Dispose();
}
