using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace MinBft.Hosting;

/// <summary>
/// The deployment's own certificate authority and the certificates it issues (what <c>keygen</c>
/// writes), made with .NET's <see cref="CertificateRequest"/>: ECDSA P-256 keys, PEM files.
/// <code>
/// ca/ca.crt, ca/ca.key          the CA (self-signed); its key signs certificates and stays off every silo and client
/// domain-i/tls/tls.crt, tls.key fault domain i's silo certificate (TLS server and client authentication)
/// gateway/tls/tls.crt, tls.key  the gateway/membership silo's certificate (the same usages)
/// clients/NAME/tls.crt, tls.key a client's certificate (TLS client authentication only)
/// </code>
/// The CA certificate is also in the manifest (<see cref="ClusterManifest.TlsCertificateAuthorities"/>),
/// which is what silos and clients trust; <c>ca/ca.crt</c> is for the operator.
/// </summary>
public static class DeploymentCertificates
{
    public const string AuthorityDirectoryName = "ca";
    public const string AuthorityCertificateFileName = "ca.crt";
    public const string AuthorityKeyFileName = "ca.key";
    public const string GatewayDirectoryName = "gateway";
    public const string ClientsDirectoryName = "clients";

    /// <summary>The client certificate <c>keygen --f</c> issues with a new deployment.</summary>
    public const string DefaultClientName = "client";

    /// <summary>How long the CA is valid: a CA roll-over is a cluster-wide change, so it should be rare.</summary>
    public static readonly TimeSpan AuthorityLifetime = TimeSpan.FromDays(3650);

    /// <summary>How long a silo's or client's certificate is valid; renew with <c>keygen --silo-cert / --client-cert</c> before then.</summary>
    public static readonly TimeSpan DefaultCertificateLifetime = TimeSpan.FromDays(397);

    /// <summary>Clocks of different machines disagree a little: certificates are valid from a few minutes before they are made.</summary>
    private static readonly TimeSpan ClockSkew = TimeSpan.FromMinutes(5);

    /// <summary>A fresh self-signed CA (with its private key) named after the deployment.</summary>
    public static X509Certificate2 CreateAuthority(string name, DateTimeOffset now)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(new X500DistinguishedName("CN=" + name + ", O=MinBFT deployment CA"), key, HashAlgorithmName.SHA256);
        // May issue leaf certificates only (path length 0), nothing else.
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(certificateAuthority: true, hasPathLengthConstraint: true, pathLengthConstraint: 0, critical: true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, critical: true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, critical: false));
        return request.CreateSelfSigned(now - ClockSkew, now + AuthorityLifetime);
    }

    /// <summary>
    /// A certificate for a silo (<see cref="TlsPeer.Silo"/>: server and client authentication) or
    /// a client (<see cref="TlsPeer.SiloOrClient"/>: client authentication only), signed by
    /// <paramref name="authority"/>, with its private key. Never valid beyond the CA.
    /// </summary>
    public static X509Certificate2 Issue(X509Certificate2 authority, string name, TlsPeer role, DateTimeOffset now, TimeSpan lifetime)
    {
        ArgumentNullException.ThrowIfNull(authority);
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        if (!authority.HasPrivateKey) throw new ArgumentException("the CA's private key is needed to issue a certificate", nameof(authority));
        if (lifetime <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(lifetime), "must be positive");
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var kind = role == TlsPeer.Silo ? "silo" : "client";
        var request = new CertificateRequest(new X500DistinguishedName($"CN={name}, OU={kind}, O=MinBFT deployment"), key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(certificateAuthority: false, hasPathLengthConstraint: false, pathLengthConstraint: 0, critical: true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, critical: true));
        var usages = new OidCollection { new Oid(DeploymentTls.ClientAuthenticationOid) };
        // Only silos accept connections, so only they may authenticate as TLS servers; peers tell a silo from a client by this.
        if (role == TlsPeer.Silo) usages.Add(new Oid(DeploymentTls.ServerAuthenticationOid));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(usages, critical: false));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, critical: false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(authority, includeKeyIdentifier: true, includeIssuerAndSerial: false));
        // Within the CA's own validity: an issuer cannot vouch for a time it does not cover.
        var notBefore = now - ClockSkew;
        if (notBefore < authority.NotBefore) notBefore = authority.NotBefore;
        var notAfter = now + lifetime;
        if (notAfter > authority.NotAfter) notAfter = authority.NotAfter;
        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7F; // a positive serial number
        using var issued = request.Create(authority, notBefore, notAfter, serial);
        return issued.CopyWithPrivateKey(key);
    }

    /// <summary>
    /// Writes <paramref name="certificate"/> to <paramref name="certificatePath"/> (PEM, mode 644)
    /// and its private key next to it (PKCS#8 PEM, mode 600 from the first byte). With
    /// <paramref name="replace"/> both files are written aside and renamed over the old ones, so a
    /// silo reading them sees the old pair or the new one; otherwise existing files are refused.
    /// </summary>
    public static void Save(X509Certificate2 certificate, string certificatePath, string keyPath, bool replace)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        using var key = certificate.GetECDsaPrivateKey() ?? throw new ArgumentException("the certificate has no ECDSA private key", nameof(certificate));
        if (!replace)
        {
            if (File.Exists(certificatePath)) throw new IOException($"{certificatePath} already exists; refusing to replace a certificate");
            if (File.Exists(keyPath)) throw new IOException($"{keyPath} already exists; refusing to replace a private key");
        }
        var keySide = keyPath + ".new";
        var certificateSide = certificatePath + ".new";
        Write(keySide, key.ExportPkcs8PrivateKeyPem(), secret: true);
        Write(certificateSide, certificate.ExportCertificatePem(), secret: false);
        File.Move(keySide, keyPath, overwrite: replace);
        File.Move(certificateSide, certificatePath, overwrite: replace);
    }

    /// <summary>The CA of a deployment directory, with its private key (<c>ca/</c>).</summary>
    public static X509Certificate2 LoadAuthority(string deploymentDirectory)
    {
        var directory = Path.Combine(deploymentDirectory, AuthorityDirectoryName);
        var certificatePath = Path.Combine(directory, AuthorityCertificateFileName);
        if (!File.Exists(certificatePath))
            throw new FileNotFoundException($"{certificatePath} not found: this deployment has no TLS CA (keygen --f issues one with a new deployment)", certificatePath);
        return DeploymentTls.LoadCertificateWithKey(certificatePath, Path.Combine(directory, AuthorityKeyFileName));
    }

    /// <summary>Where a silo's certificate lives: <c>NAME/tls/tls.crt</c> (NAME is <c>domain-i</c> or <c>gateway</c>).</summary>
    public static string SiloCertificatePath(string deploymentDirectory, string name) =>
        Path.Combine(deploymentDirectory, CheckName(name), DeploymentTls.DirectoryName, DeploymentTls.CertificateFileName);

    /// <summary>Where a client's certificate lives: <c>clients/NAME/tls.crt</c>.</summary>
    public static string ClientCertificatePath(string deploymentDirectory, string name) =>
        Path.Combine(deploymentDirectory, ClientsDirectoryName, CheckName(name), DeploymentTls.CertificateFileName);

    /// <summary>A certificate name is a path segment and a subject: letters, digits, '-', '_' and '.', not starting with '.'.</summary>
    public static string CheckName(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (name.Length is 0 or > 64 || name[0] == '.' || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'))
            throw new ArgumentException($"'{name}' is not a certificate name: 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'", nameof(name));
        return name;
    }

    /// <summary>The name of fault domain i's silo certificate and directory.</summary>
    public static string DomainName(int faultDomain) => string.Create(CultureInfo.InvariantCulture, $"domain-{faultDomain}");

    /// <summary>The common name keygen gives silo <paramref name="name"/>'s certificate (<c>domain-i</c>, <c>gateway</c>).</summary>
    public static string SiloCommonName(string name) => "minbft-silo-" + name;

    /// <summary>The fault domain a silo certificate names (<c>CN=minbft-silo-domain-i</c>), or null
    /// for any other name (the gateway's, a client's).</summary>
    public static int? FaultDomainOf(X509Certificate2 certificate)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        var prefix = SiloCommonName(DomainName(0))[..^1];
        var name = certificate.GetNameInfo(X509NameType.SimpleName, forIssuer: false);
        return name.StartsWith(prefix, StringComparison.Ordinal)
            && int.TryParse(name.AsSpan(prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out var domain)
            && SiloCommonName(DomainName(domain)) == name // one spelling per domain ("01" is not domain 1)
                ? domain
                : null;
    }

    private static void Write(string path, string text, bool secret)
    {
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write, Share = FileShare.None };
        if (secret && !OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using var stream = new FileStream(path, options);
        if (secret && !OperatingSystem.IsWindows()) File.SetUnixFileMode(stream.SafeFileHandle, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        stream.Write(new UTF8Encoding(encoderShouldEmitUTF8Identifier: false).GetBytes(text));
        stream.Flush(flushToDisk: true);
    }
}
