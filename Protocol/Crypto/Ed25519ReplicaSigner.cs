using MinBft.Protocol;

namespace MinBft.Crypto;

/// <summary>This replica's signer: Ed25519 with its own private key.</summary>
public sealed class Ed25519ReplicaSigner : IReplicaSigner
{
    private readonly Ed25519KeyPair _keys;

    public Ed25519ReplicaSigner(Ed25519KeyPair keys) => _keys = keys ?? throw new ArgumentNullException(nameof(keys));

    /// <summary>A copy of the public key peers verify with.</summary>
    public byte[] PublicKey => _keys.PublicKey;

    public byte[] Sign(ReadOnlySpan<byte> message) => _keys.Sign(message);
}
