using NSec.Cryptography;
using Org.BouncyCastle.Crypto.Parameters;

namespace MinBft.Crypto;

/// <summary>
/// An Ed25519 public key, checked once. Verification runs in libsodium (through NSec), which
/// rejects what RFC 8032 requires (S &gt;= L, non-canonical encodings) and also small-order keys
/// and R values; keys from configuration are also decoded as curve points at creation, so a bad
/// manifest fails at start, not at the first verification.
/// </summary>
public sealed class Ed25519PublicKey
{
    private static readonly SignatureAlgorithm Algorithm = SignatureAlgorithm.Ed25519;

    private readonly PublicKey _key;
    private readonly byte[] _encoded;

    private Ed25519PublicKey(PublicKey key, byte[] encoded)
    {
        _key = key;
        _encoded = encoded;
    }

    /// <summary>A copy of the 32-byte encoding.</summary>
    public byte[] Encoded => (byte[])_encoded.Clone();

    /// <summary>False (never throws) when <paramref name="publicKey"/> is not a valid 32-byte Ed25519 public key.</summary>
    public static bool TryCreate(ReadOnlySpan<byte> publicKey, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out Ed25519PublicKey? key)
    {
        key = null;
        if (publicKey.Length != Ed25519KeyPair.PublicKeyLength) return false;
        try
        {
            // BouncyCastle decodes the point and throws on a non-point; libsodium would only
            // refuse it when verifying.
            _ = new Ed25519PublicKeyParameters(publicKey);
            return TryImport(publicKey, out key);
        }
        catch (ArgumentException)
        {
            return false;
        }
    }

    /// <summary>
    /// Without decoding the point first: for keys that arrive in messages (a client's key in its
    /// request), where libsodium's verification rejects a bad key anyway and decoding would cost
    /// a field square root per message.
    /// </summary>
    internal static bool TryImport(ReadOnlySpan<byte> publicKey, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out Ed25519PublicKey? key)
    {
        key = null;
        if (publicKey.Length != Ed25519KeyPair.PublicKeyLength) return false;
        if (!PublicKey.TryImport(Algorithm, publicKey, KeyBlobFormat.RawPublicKey, out var imported) || imported is null) return false;
        key = new Ed25519PublicKey(imported, publicKey.ToArray());
        return true;
    }

    /// <summary>For configuration (a manifest's keys): throws <see cref="ArgumentException"/> on an invalid key.</summary>
    public static Ed25519PublicKey Create(ReadOnlySpan<byte> publicKey) =>
        TryCreate(publicKey, out var key)
            ? key
            : throw new ArgumentException($"not a valid Ed25519 public key ({publicKey.Length} bytes)", nameof(publicKey));

    /// <summary>True iff <paramref name="signature"/> is valid for <paramref name="message"/>; false, never an exception, otherwise.</summary>
    public bool Verify(ReadOnlySpan<byte> message, ReadOnlySpan<byte> signature)
    {
        if (signature.Length != Ed25519KeyPair.SignatureLength) return false;
        try
        {
            return Algorithm.Verify(_key, message, signature);
        }
        catch (ArgumentException)
        {
            // Defensive: lengths are checked above, but verification sits on the network path.
            return false;
        }
    }
}
