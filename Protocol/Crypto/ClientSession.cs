using System.Security.Cryptography;
using MinBft.Encoding;
using MinBft.Messages;
using MinBft.Protocol;
using NSec.Cryptography;

namespace MinBft.Crypto;

/// <summary>
/// The client side of its MAC sessions with the replicas. The client signs an offer once; each
/// replica that accepts answers with its own signed X25519 key, and from then on the client adds
/// one MAC per such replica to each request (<see cref="Authenticate"/>). A replica with a valid
/// MAC skips the Ed25519 check, the dominant per-request cost; every request stays signed, so a
/// missing or damaged MAC only costs that check. Replies come back the same way: a replica adds a
/// MAC under the session to the replies of small batches (<see cref="ReplicaClientSessions.MaxMacBatch"/>),
/// and <see cref="ProvesReply"/> takes it instead of the reply's signature. Thread-safe.
/// </summary>
public sealed class ClientSession : IDisposable
{
    private readonly ClientSigner _signer;
    private readonly int _n;
    private readonly Key _key;
    private readonly byte[]?[] _macKeys;

    /// <param name="signer">The client identity that signs the session offer.</param>
    /// <param name="n">Number of replicas: one MAC key slot each.</param>
    /// <param name="epoch">Larger than any earlier session's of this identity (replicas keep the newest).</param>
    public ClientSession(ClientSigner signer, int n, long epoch)
    {
        ArgumentNullException.ThrowIfNull(signer);
        ArgumentOutOfRangeException.ThrowIfLessThan(n, 1);
        if (n * MessageLimits.RequestMacLength > MessageLimits.MaxAuthenticatorLength) throw new ArgumentOutOfRangeException(nameof(n));
        _signer = signer;
        _n = n;
        (_key, var publicKey) = SessionKeys.Create();
        _macKeys = new byte[n][];
        Offer = signer.CreateSessionOffer(epoch, publicKey);
    }

    public ClientSessionOffer Offer { get; }

    /// <summary>Replicas whose accept was valid.</summary>
    public int Established => _macKeys.Count(k => Volatile.Read(ref k) is not null);

    /// <summary>
    /// Takes a replica's accept if it answers this offer and carries that replica's signature
    /// (<paramref name="replicaKeys"/>, from the manifest); the proxy that relays it is not trusted.
    /// </summary>
    public bool TryAccept(ClientSessionAccept? accept, IReplicaSignatureVerifier replicaKeys)
    {
        ArgumentNullException.ThrowIfNull(replicaKeys);
        if (MessageLimits.CheckSessionAccept(accept) is not null) return false;
        var a = accept!;
        if (a.ReplicaId < 0 || a.ReplicaId >= _n || a.ClientId != Offer.ClientId || a.Epoch != Offer.Epoch
            || !a.ClientAgreementKey.AsSpan().SequenceEqual(Offer.AgreementKey)) return false;
        var signed = MessageEncoding.ClientSessionAccept(a.ReplicaId, a.ClientId, a.Epoch, a.ClientAgreementKey, a.ReplicaAgreementKey);
        if (!replicaKeys.Verify(a.ReplicaId, signed, a.Signature)) return false;
        if (SessionKeys.Derive(_key, a.ReplicaAgreementKey, a) is not { } macKey) return false;
        Volatile.Write(ref _macKeys[a.ReplicaId], macKey);
        return true;
    }

    /// <summary><paramref name="request"/> (signed by this identity) with a MAC for every replica
    /// this session reaches; zeros for the others, which check the signature.</summary>
    public Request Authenticate(Request request)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.ClientId != Offer.ClientId) throw new ArgumentException("the request is not this session's client's", nameof(request));
        var digest = MessageEncoding.RequestDigest(request);
        var authenticator = new byte[_n * MessageLimits.RequestMacLength];
        for (var i = 0; i < _n; i++)
        {
            if (Volatile.Read(ref _macKeys[i]) is { } key)
                SessionKeys.Mac(key, i, digest, authenticator.AsSpan(i * MessageLimits.RequestMacLength, MessageLimits.RequestMacLength));
        }
        return request with { Authenticator = authenticator };
    }

    /// <summary>
    /// True when <paramref name="reply"/> carries a valid MAC from the replica it names under this
    /// session: only that replica and this client hold the key, so the reply is that replica's,
    /// exactly as its signature would show. False otherwise (no session with that replica, no or
    /// a damaged MAC, another client's reply): the caller then checks the signature.
    /// </summary>
    public bool ProvesReply(Reply reply)
    {
        ArgumentNullException.ThrowIfNull(reply);
        if (reply.Mac is not { Length: MessageLimits.ReplyMacLength } mac || reply.ClientId != Offer.ClientId
            || reply.ReplicaId < 0 || reply.ReplicaId >= _n || Volatile.Read(ref _macKeys[reply.ReplicaId]) is not { } key) return false;
        return CryptographicOperations.FixedTimeEquals(SessionKeys.ReplyMac(key, reply), mac);
    }

    public void Dispose() => _key.Dispose();
}
