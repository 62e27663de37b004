namespace MinBft.Usig;

/// <summary>
/// The secret half of a USIG certificate scheme: certifies <see cref="UsigCertificateInput"/>
/// bytes. Part of the trusted computing base; only the owning USIG holds one.
/// </summary>
public interface IUsigCertifier
{
    /// <summary>Length of every certificate this scheme produces.</summary>
    int CertificateLength { get; }

    byte[] Certify(ReadOnlySpan<byte> input);
}

/// <summary>
/// The checking half of a certificate scheme for one USIG. Must return false, never throw,
/// for any certificate bytes: certificates arrive from the network.
/// </summary>
public interface IUsigCertificateVerifier
{
    int CertificateLength { get; }

    bool Verify(ReadOnlySpan<byte> input, ReadOnlySpan<byte> certificate);
}
