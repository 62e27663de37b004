using MinBft.Encoding;
using MinBft.Messages;

namespace MinBft.Crypto;

/// <summary>
/// A client's signing identity: produces REQUESTs that any replica can verify with
/// <see cref="RequestVerifier"/> and nothing else (the client id is the hash of the key).
/// </summary>
public sealed class ClientSigner
{
    private readonly Ed25519KeyPair _keys;

    public ClientSigner(Ed25519KeyPair keys)
    {
        _keys = keys ?? throw new ArgumentNullException(nameof(keys));
        ClientId = ClientIdentity.FromPublicKey(keys.PublicKeySpan);
    }

    public string ClientId { get; }

    /// <summary>A copy of the client's public key.</summary>
    public byte[] PublicKey => _keys.PublicKey;

    /// <summary>
    /// A signed REQUEST for operation number <paramref name="seq"/>. The signature covers
    /// <see cref="MessageEncoding.Request(string, ReadOnlySpan{byte}, ulong, ReadOnlySpan{byte}, ulong)"/>.
    /// Throws for an operation over <see cref="MessageLimits.MaxOperationLength"/>: replicas
    /// would drop it unread, so failing here is kinder than a request that never completes.
    /// </summary>
    /// <param name="seq">The client's sequence number for this operation (increasing).</param>
    /// <param name="operation">The operation's bytes, copied.</param>
    /// <param name="incarnation">The client's incarnation (<see cref="Request.Incarnation"/>): the
    /// highest position f+1 replies proved to it, 0 before any.</param>
    public Request CreateRequest(ulong seq, byte[] operation, ulong incarnation = 0)
    {
        ArgumentNullException.ThrowIfNull(operation);
        if (operation.Length > MessageLimits.MaxOperationLength)
            throw new ArgumentException($"operation is {operation.Length} bytes, the limit is {MessageLimits.MaxOperationLength}", nameof(operation));
        // Copy so a caller mutating its buffer later cannot change a signed request.
        var op = (byte[])operation.Clone();
        var publicKey = _keys.PublicKey;
        var signature = _keys.Sign(MessageEncoding.Request(ClientId, publicKey, seq, op, incarnation));
        return new Request(ClientId, publicKey, seq, op, signature, Incarnation: incarnation);
    }

    /// <summary>An offer of a MAC session to the replicas (<see cref="ClientSession"/>), signed by this identity.</summary>
    public ClientSessionOffer CreateSessionOffer(long epoch, byte[] agreementKey)
    {
        var publicKey = _keys.PublicKey;
        return new ClientSessionOffer(ClientId, publicKey, epoch, agreementKey,
            _keys.Sign(MessageEncoding.ClientSessionOffer(ClientId, publicKey, epoch, agreementKey)));
    }
}
