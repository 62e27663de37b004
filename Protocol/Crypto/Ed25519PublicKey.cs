using Org.BouncyCastle.Crypto.Parameters;
using Rfc8032 = Org.BouncyCastle.Math.EC.Rfc8032.Ed25519;

namespace MinBft.Crypto;

/// <summary>
/// An Ed25519 public key decoded once. Keys known in advance (replica keys, USIG keys) are held
/// in this form so each verification skips point decompression.
/// </summary>
public sealed class Ed25519PublicKey
{
    private readonly Ed25519PublicKeyParameters _key;
    private readonly byte[] _encoded;

    private Ed25519PublicKey(Ed25519PublicKeyParameters key, byte[] encoded)
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
            // BouncyCastle decodes and validates the point here and throws on a non-point.
            key = new Ed25519PublicKey(new Ed25519PublicKeyParameters(publicKey), publicKey.ToArray());
            return true;
        }
        catch (ArgumentException)
        {
            return false;
        }
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
            return _key.Verify(Rfc8032.Algorithm.Ed25519, null, message, signature);
        }
        catch (ArgumentException)
        {
            // Defensive: lengths are checked above, but verification sits on the network path.
            return false;
        }
    }
}
