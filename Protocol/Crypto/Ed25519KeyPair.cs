using Org.BouncyCastle.Crypto.Parameters;
using Org.BouncyCastle.Security;
using Rfc8032 = Org.BouncyCastle.Math.EC.Rfc8032.Ed25519;

namespace MinBft.Crypto;

/// <summary>
/// An Ed25519 (RFC 8032, pure mode) key pair: clients sign REQUESTs with one, replicas sign
/// REPLY / REQ-VIEW-CHANGE with one, and the signature-scheme USIG certifies UIs with one.
/// Immutable and safe to share between threads: signing is a pure function of the key and the
/// message. The public key is derived once, at construction (BouncyCastle caches it in the
/// private key parameters): deriving it is a scalar multiplication, which would more than
/// double the cost of every signature.
/// </summary>
public sealed class Ed25519KeyPair
{
    public const int PrivateKeyLength = 32;
    public const int PublicKeyLength = 32;
    public const int SignatureLength = 64;

    private readonly Ed25519PrivateKeyParameters _private;
    private readonly byte[] _publicKey;

    private Ed25519KeyPair(Ed25519PrivateKeyParameters privateKey)
    {
        _private = privateKey;
        _publicKey = privateKey.GeneratePublicKey().GetEncoded();
    }

    /// <summary>A fresh key pair. Pass a <see cref="SecureRandom"/> in production; tests may pass a seeded one.</summary>
    public static Ed25519KeyPair Generate(SecureRandom random)
    {
        ArgumentNullException.ThrowIfNull(random);
        return new Ed25519KeyPair(new Ed25519PrivateKeyParameters(random));
    }

    /// <summary>The key pair whose RFC 8032 private key (the 32-byte seed) is <paramref name="privateKey"/>.</summary>
    public static Ed25519KeyPair FromPrivateKey(ReadOnlySpan<byte> privateKey)
    {
        if (privateKey.Length != PrivateKeyLength)
            throw new ArgumentException($"an Ed25519 private key is {PrivateKeyLength} bytes, got {privateKey.Length}", nameof(privateKey));
        return new Ed25519KeyPair(new Ed25519PrivateKeyParameters(privateKey));
    }

    /// <summary>A copy of the 32-byte private key (seed). Handle with care: whoever has it can sign.</summary>
    public byte[] PrivateKey => _private.GetEncoded();

    /// <summary>A copy of the 32-byte public key.</summary>
    public byte[] PublicKey => (byte[])_publicKey.Clone();

    /// <summary>The public key without a copy, for callers in this assembly that never mutate it.</summary>
    internal ReadOnlySpan<byte> PublicKeySpan => _publicKey;

    /// <summary>A 64-byte Ed25519 signature over <paramref name="message"/>.</summary>
    public byte[] Sign(ReadOnlySpan<byte> message)
    {
        var signature = new byte[SignatureLength];
        Sign(message, signature);
        return signature;
    }

    /// <summary>Writes the 64-byte signature over <paramref name="message"/> into <paramref name="signature"/>.</summary>
    public void Sign(ReadOnlySpan<byte> message, Span<byte> signature)
    {
        if (signature.Length < SignatureLength)
            throw new ArgumentException($"signature buffer must hold {SignatureLength} bytes", nameof(signature));
        // Pure Ed25519 (no context, no pre-hash): what every other Ed25519 library verifies.
        _private.Sign(Rfc8032.Algorithm.Ed25519, null, message, signature[..SignatureLength]);
    }
}
