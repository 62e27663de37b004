using MinBft.Crypto;

namespace MinBft.Usig;

/// <summary>Verifies one USIG's Ed25519 certificates with its public key.</summary>
public sealed class Ed25519UsigCertificateVerifier : IUsigCertificateVerifier
{
    private readonly Ed25519PublicKey _key;

    /// <summary>Throws <see cref="ArgumentException"/> for an invalid key (a configuration error).</summary>
    public Ed25519UsigCertificateVerifier(ReadOnlySpan<byte> publicKey) => _key = Ed25519PublicKey.Create(publicKey);

    public int CertificateLength => Ed25519KeyPair.SignatureLength;

    public bool Verify(ReadOnlySpan<byte> input, ReadOnlySpan<byte> certificate) => _key.Verify(input, certificate);
}
