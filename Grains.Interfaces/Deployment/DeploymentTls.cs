using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace MinBft.Hosting;

/// <summary>Who may be on the other end of a TLS connection of the deployment.</summary>
public enum TlsPeer
{
    /// <summary>A silo: a certificate of the deployment's CA with both TLS server and client
    /// authentication usages (what <c>keygen</c> issues to fault domains and gateway silos).
    /// Silo-to-silo connections accept nothing else, so a client certificate cannot join the cluster.</summary>
    Silo,

    /// <summary>A silo or a client: a certificate of the deployment's CA with the TLS client
    /// authentication usage. What a gateway accepts from whoever connects to it.</summary>
    SiloOrClient,
}

/// <summary>
/// The deployment's TLS certificates, checked the same way by silos and clients. Trust comes from
/// the manifest alone (<see cref="ClusterManifest.TlsCertificateAuthorities"/>): a peer is accepted
/// only if its certificate chains to one of those CAs, is valid now and carries the usage its role
/// needs. Host names are not checked: silos advertise IP addresses that change, and what a silo may
/// do is decided by the CA that issued its certificate, not by where it runs.
/// </summary>
/// <remarks>
/// Files (PEM): <c>tls.crt</c> (the certificate) and <c>tls.key</c> (its PKCS#8 private key, mode
/// 600) in <c>domain-i/tls/</c>, <c>gateway/tls/</c>, <c>clients/NAME/</c>; the CA's own key stays
/// in <c>ca/</c>, which no silo or client needs.
/// </remarks>
public static class DeploymentTls
{
    public const string DirectoryName = "tls";
    public const string CertificateFileName = "tls.crt";
    public const string KeyFileName = "tls.key";

    /// <summary>Extended key usage: TLS server authentication (RFC 5280).</summary>
    public const string ServerAuthenticationOid = "1.3.6.1.5.5.7.3.1";

    /// <summary>Extended key usage: TLS client authentication (RFC 5280).</summary>
    public const string ClientAuthenticationOid = "1.3.6.1.5.5.7.3.2";

    /// <summary>A PEM file of a certificate or key is a few kilobytes; anything much larger is not one.</summary>
    private const int MaxPemBytes = 64 * 1024;

    /// <summary>The private key next to <paramref name="certificatePath"/> (<c>tls.key</c> in the same directory) when none is named.</summary>
    public static string DefaultKeyPath(string certificatePath)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(certificatePath);
        return Path.Combine(Path.GetDirectoryName(Path.GetFullPath(certificatePath)) ?? ".", KeyFileName);
    }

    /// <summary>
    /// A certificate and its private key from PEM files. Throws <see cref="FileNotFoundException"/>
    /// or <see cref="InvalidDataException"/> naming the file.
    /// </summary>
    public static X509Certificate2 LoadCertificateWithKey(string certificatePath, string? keyPath = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(certificatePath);
        keyPath ??= DefaultKeyPath(certificatePath);
        CheckPemFile(certificatePath, "TLS certificate");
        CheckPemFile(keyPath, "TLS private key");
        X509Certificate2 loaded;
        try
        {
            loaded = X509Certificate2.CreateFromPemFile(certificatePath, keyPath);
        }
        catch (CryptographicException e)
        {
            throw new InvalidDataException($"{certificatePath} with {keyPath}: not a PEM certificate and its private key ({e.Message})", e);
        }
        if (!OperatingSystem.IsWindows()) return loaded;
        // Windows' TLS stack needs a key it can find again (a PEM-loaded key is ephemeral there).
        using (loaded)
            return X509CertificateLoader.LoadPkcs12(loaded.Export(X509ContentType.Pkcs12), null);
    }

    /// <summary>A certificate without key (a CA's) from a PEM file.</summary>
    public static X509Certificate2 LoadCertificate(string certificatePath)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(certificatePath);
        CheckPemFile(certificatePath, "certificate");
        try
        {
            return X509Certificate2.CreateFromPem(File.ReadAllText(certificatePath));
        }
        catch (CryptographicException e)
        {
            throw new InvalidDataException($"{certificatePath}: not a PEM certificate ({e.Message})", e);
        }
    }

    /// <summary>
    /// Whether <paramref name="certificate"/> may be a <paramref name="peer"/> of this deployment:
    /// it chains to one of <paramref name="authorities"/> (nothing else is trusted, not even the
    /// machine's root store), is valid now, is not a CA, and has the usages of its role. Otherwise
    /// false, with the reason.
    /// </summary>
    public static bool IsAccepted(IReadOnlyList<X509Certificate2> authorities, X509Certificate2 certificate, TlsPeer peer, out string reason)
    {
        ArgumentNullException.ThrowIfNull(authorities);
        ArgumentNullException.ThrowIfNull(certificate);
        if (authorities.Count == 0)
        {
            reason = "no CA to trust";
            return false;
        }
        if (certificate.Extensions.OfType<X509BasicConstraintsExtension>().Any(b => b.CertificateAuthority))
        {
            reason = "a CA certificate, not a silo's or client's";
            return false;
        }
        using var chain = new X509Chain();
        var policy = chain.ChainPolicy;
        policy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        foreach (var authority in authorities) policy.CustomTrustStore.Add(authority);
        // keygen's CA issues no revocation lists: a certificate is withdrawn by rolling the CA (HOSTING.md).
        policy.RevocationMode = X509RevocationMode.NoCheck;
        policy.DisableCertificateDownloads = true;
        policy.ApplicationPolicy.Add(new Oid(ClientAuthenticationOid));
        if (peer == TlsPeer.Silo) policy.ApplicationPolicy.Add(new Oid(ServerAuthenticationOid));
        if (!chain.Build(certificate))
        {
            var problems = chain.ChainStatus.Select(s => s.Status).Where(s => s != X509ChainStatusFlags.NoError).Distinct().ToList();
            reason = problems.Contains(X509ChainStatusFlags.NotValidForUsage)
                ? (peer == TlsPeer.Silo ? "not a silo certificate (it lacks the server and client authentication usages)" : "not valid for TLS client authentication")
                : problems.Contains(X509ChainStatusFlags.UntrustedRoot) || problems.Contains(X509ChainStatusFlags.PartialChain)
                    ? "not issued by this deployment's CA"
                    : "rejected: " + string.Join(", ", problems);
            return false;
        }
        // CustomRootTrust already ends the chain at a listed CA; compare anyway, it costs nothing.
        var root = chain.ChainElements[^1].Certificate;
        if (!authorities.Any(a => a.RawDataMemory.Span.SequenceEqual(root.RawDataMemory.Span)))
        {
            reason = "not issued by this deployment's CA";
            return false;
        }
        reason = "";
        return true;
    }

    /// <summary>
    /// Checks this party's own certificate before it is used: it must be one this deployment's
    /// peers accept as <paramref name="role"/>. Throws <see cref="InvalidDataException"/> saying
    /// why, so a silo with the wrong files stops at start instead of failing every connection.
    /// </summary>
    public static void CheckOwnCertificate(ClusterManifest manifest, X509Certificate2 certificate, TlsPeer role, string source)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        ArgumentNullException.ThrowIfNull(certificate);
        if (!certificate.HasPrivateKey) throw new InvalidDataException($"{source}: the certificate has no private key");
        var authorities = manifest.LoadTlsCertificateAuthorities();
        try
        {
            if (!IsAccepted(authorities, certificate, role, out var reason))
            {
                var expiry = certificate.NotAfter < DateTime.Now ? $" (it expired {certificate.NotAfter:u})" : "";
                throw new InvalidDataException($"{source}: {certificate.Subject} is {reason}{expiry}; the deployment's peers would refuse it");
            }
        }
        finally
        {
            foreach (var authority in authorities) authority.Dispose();
        }
    }

    private static void CheckPemFile(string path, string what)
    {
        var info = new FileInfo(path);
        if (!info.Exists) throw new FileNotFoundException($"{what} not found: {path}", path);
        if (info.Length > MaxPemBytes) throw new InvalidDataException($"{path}: too large to be a {what} ({info.Length} bytes)");
    }
}
