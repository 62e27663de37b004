namespace MinBft.Usig;

/// <summary>
/// The checking half of a certificate scheme for one USIG (the certifying half is in the USIG
/// library, Usig/Core). Must return false, never throw, for any certificate bytes: certificates
/// arrive from the network.
/// </summary>
public interface IUsigCertificateVerifier
{
    int CertificateLength { get; }

    bool Verify(ReadOnlySpan<byte> input, ReadOnlySpan<byte> certificate);
}
