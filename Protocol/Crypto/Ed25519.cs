
namespace MinBft.Crypto;

/// <summary>
/// Ed25519 verification for bytes that come from the network. Every entry point returns false
/// on malformed input (wrong lengths, a public key that is not a curve point, a non-canonical
/// signature) and never throws: a Byzantine sender must not be able to crash a verifier.
/// </summary>
public static class Ed25519
{
    /// <summary>True iff <paramref name="signature"/> is a valid signature of <paramref name="message"/> under <paramref name="publicKey"/>.</summary>
    public static bool Verify(ReadOnlySpan<byte> publicKey, ReadOnlySpan<byte> message, ReadOnlySpan<byte> signature) =>
        Ed25519PublicKey.TryImport(publicKey, out var key) && key.Verify(message, signature);
}
