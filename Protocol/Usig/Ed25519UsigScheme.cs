using MinBft.Crypto;

namespace MinBft.Usig;

/// <summary>
/// Signature scheme (the default): the USIG signs with its private key; anyone holding the
/// USIG's public key can verify, so verification needs no trusted component.
/// </summary>
public sealed class Ed25519UsigCertifier : IUsigCertifier
{
    private readonly Ed25519KeyPair _keys;

    public Ed25519UsigCertifier(Ed25519KeyPair keys) => _keys = keys ?? throw new ArgumentNullException(nameof(keys));

    /// <summary>A copy of the public key peers verify this USIG's UIs with.</summary>
    public byte[] PublicKey => _keys.PublicKey;

    public int CertificateLength => Ed25519KeyPair.SignatureLength;

    public byte[] Certify(ReadOnlySpan<byte> input) => _keys.Sign(input);
}

/// <summary>Verifies one USIG's Ed25519 certificates with its public key.</summary>
public sealed class Ed25519UsigCertificateVerifier : IUsigCertificateVerifier
{
    private readonly Ed25519PublicKey _key;

    /// <summary>Throws <see cref="ArgumentException"/> for an invalid key (a configuration error).</summary>
    public Ed25519UsigCertificateVerifier(ReadOnlySpan<byte> publicKey) => _key = Ed25519PublicKey.Create(publicKey);

    public int CertificateLength => Ed25519KeyPair.SignatureLength;

    public bool Verify(ReadOnlySpan<byte> input, ReadOnlySpan<byte> certificate) => _key.Verify(input, certificate);
}
