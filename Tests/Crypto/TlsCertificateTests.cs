using System.Security.Cryptography.X509Certificates;
using System.Text;
using Microsoft.Extensions.Hosting;
using MinBft.Client;
using MinBft.Client.Cli;
using MinBft.Hosting;

namespace MinBft.Tests.Crypto;

/// <summary>
/// The deployment's TLS certificates as keygen writes them, and the checks silos and clients make
/// with them (issue 11, item 3). The cluster-level attacks are in <c>Tests/Integration/TlsTests</c>.
/// </summary>
public sealed class TlsCertificateTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("minbft-tls-certs-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private string Deployment => Path.Combine(_directory, "deploy");

    private async Task<(int Exit, string Output, string Error)> CliAsync(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var exit = await new ClientCli(new CliConsole(output, error, ErrorIsTerminal: false)).InvokeAsync(args, CancellationToken.None);
        return (exit, output.ToString(), error.ToString());
    }

    [Fact]
    public async Task Keygen_issues_a_ca_and_one_silo_certificate_per_fault_domain_with_server_and_client_usages()
    {
        Assert.Equal(ExitCodes.Ok, (await CliAsync("keygen", "--f", "1", "--out", Deployment)).Exit);
        var manifest = ClusterManifest.Load(Path.Combine(Deployment, DeploymentKeys.ManifestFileName));
        using var ca = DeploymentTls.LoadCertificate(Path.Combine(Deployment, "ca", "ca.crt"));

        // The manifest carries the CA certificate itself, the same one as ca/ca.crt.
        Assert.Equal(ca.RawData, Assert.Single(manifest.TlsCertificateAuthorities));
        Assert.Equal(ca.Subject, ca.Issuer);
        Assert.True(ca.Extensions.OfType<X509BasicConstraintsExtension>().Single().CertificateAuthority);
        Assert.Equal(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, ca.Extensions.OfType<X509KeyUsageExtension>().Single().KeyUsages);

        var authorities = manifest.LoadTlsCertificateAuthorities();
        var thumbprints = new HashSet<string>();
        foreach (var name in new[] { "domain-0", "domain-1", "domain-2", "gateway" })
        {
            using var silo = DeploymentTls.LoadCertificateWithKey(Path.Combine(Deployment, name, "tls", "tls.crt"));
            Assert.Equal(ca.Subject, silo.Issuer);
            Assert.Contains("CN=minbft-silo-" + name, silo.Subject, StringComparison.Ordinal);
            Assert.False(silo.Extensions.OfType<X509BasicConstraintsExtension>().Single().CertificateAuthority);
            Assert.Equal(X509KeyUsageFlags.DigitalSignature, silo.Extensions.OfType<X509KeyUsageExtension>().Single().KeyUsages);
            var usages = silo.Extensions.OfType<X509EnhancedKeyUsageExtension>().Single().EnhancedKeyUsages.Cast<System.Security.Cryptography.Oid>().Select(o => o.Value).Order().ToArray();
            Assert.Equal(new[] { DeploymentTls.ServerAuthenticationOid, DeploymentTls.ClientAuthenticationOid }.Order().ToArray(), usages);
            Assert.True(DeploymentTls.IsAccepted(authorities, silo, TlsPeer.Silo, out var reason), reason);
            Assert.True(thumbprints.Add(silo.Thumbprint), $"{name} shares a certificate");
            Assert.True(silo.NotAfter <= ca.NotAfter);
        }
        // One per fault domain (and the gateway's), nothing more.
        Assert.Equal(manifest.N, Directory.GetDirectories(Deployment, "domain-*").Count(d => File.Exists(Path.Combine(d, "tls", "tls.crt"))));

        using var client = DeploymentTls.LoadCertificateWithKey(Path.Combine(Deployment, "clients", "client", "tls.crt"));
        Assert.Equal(ca.Subject, client.Issuer);
        Assert.Equal(new string?[] { DeploymentTls.ClientAuthenticationOid },
            client.Extensions.OfType<X509EnhancedKeyUsageExtension>().Single().EnhancedKeyUsages.Cast<System.Security.Cryptography.Oid>().Select(o => o.Value).ToArray());
        Assert.True(DeploymentTls.IsAccepted(authorities, client, TlsPeer.SiloOrClient, out var clientReason), clientReason);
        Assert.False(DeploymentTls.IsAccepted(authorities, client, TlsPeer.Silo, out var notSilo));
        Assert.Contains("not a silo certificate", notSilo, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Keygen_keeps_private_keys_out_of_the_manifest_and_the_ca_key_out_of_the_domain_directories()
    {
        Assert.Equal(ExitCodes.Ok, (await CliAsync("keygen", "--f", "1", "--out", Deployment)).Exit);
        var manifestText = File.ReadAllText(Path.Combine(Deployment, DeploymentKeys.ManifestFileName));
        var keyFiles = Directory.GetFiles(Deployment, "*.key", SearchOption.AllDirectories);
        Assert.Equal(3 + 3 + 5 + 1, keyFiles.Length); // signing and USIG keys per domain, 4 silo TLS keys and a client's, the CA's
        Assert.DoesNotContain("PRIVATE KEY", manifestText, StringComparison.Ordinal);
        foreach (var file in keyFiles.Where(f => File.ReadAllText(f).Contains("-----BEGIN PRIVATE KEY-----", StringComparison.Ordinal)))
        {
            var pem = File.ReadAllText(file);
            var der = Convert.FromBase64String(string.Concat(pem.Split('\n').Where(l => l.Length > 0 && !l.StartsWith("-----", StringComparison.Ordinal))));
            Assert.DoesNotContain(Convert.ToBase64String(der), manifestText, StringComparison.Ordinal);
            if (!OperatingSystem.IsWindows()) Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(file));
        }
        // The CA's key is in ca/ only: copying domain-i/ or gateway/ to a machine gives it no way to issue certificates.
        Assert.Equal([Path.Combine(Deployment, "ca", "ca.key")], keyFiles.Where(f => Path.GetFileName(f) == "ca.key").ToArray());
        if (!OperatingSystem.IsWindows())
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(Path.Combine(Deployment, "ca")));
    }

    [Fact]
    public async Task Keygen_issues_client_certificates_and_renews_a_silo_certificate_from_the_same_ca()
    {
        Assert.Equal(ExitCodes.Ok, (await CliAsync("keygen", "--f", "0", "--out", Deployment)).Exit);
        var authorities = ClusterManifest.Load(Path.Combine(Deployment, DeploymentKeys.ManifestFileName)).LoadTlsCertificateAuthorities();

        Assert.Equal(ExitCodes.Ok, (await CliAsync("keygen", "--client-cert", "alice", "--out", Deployment)).Exit);
        using var alice = DeploymentTls.LoadCertificateWithKey(Path.Combine(Deployment, "clients", "alice", "tls.crt"));
        Assert.True(DeploymentTls.IsAccepted(authorities, alice, TlsPeer.SiloOrClient, out var reason), reason);
        var again = await CliAsync("keygen", "--client-cert", "alice", "--out", Deployment);
        Assert.Equal(ExitCodes.Usage, again.Exit);
        Assert.Contains("already exists", again.Error, StringComparison.Ordinal);

        // Renewal: a new key and certificate; the old one stays acceptable until it expires, so silos roll one at a time.
        using var old = DeploymentTls.LoadCertificateWithKey(Path.Combine(Deployment, "domain-0", "tls", "tls.crt"));
        Assert.Equal(ExitCodes.Ok, (await CliAsync("keygen", "--silo-cert", "domain-0", "--out", Deployment)).Exit);
        using var renewed = DeploymentTls.LoadCertificateWithKey(Path.Combine(Deployment, "domain-0", "tls", "tls.crt"));
        Assert.NotEqual(old.Thumbprint, renewed.Thumbprint);
        Assert.NotEqual(old.PublicKey.EncodedKeyValue.RawData, renewed.PublicKey.EncodedKeyValue.RawData);
        Assert.True(DeploymentTls.IsAccepted(authorities, renewed, TlsPeer.Silo, out reason), reason);
        Assert.True(DeploymentTls.IsAccepted(authorities, old, TlsPeer.Silo, out reason), reason);
        Assert.Empty(Directory.GetFiles(Deployment, "*.new", SearchOption.AllDirectories));

        // A deployment without a CA (made before TLS) has nothing to issue from.
        DeploymentKeys.Generate(0, Path.Combine(_directory, "plain"));
        var plain = await CliAsync("keygen", "--client-cert", "bob", "--out", Path.Combine(_directory, "plain"));
        Assert.Equal(ExitCodes.Usage, plain.Exit);
        Assert.Contains("no TLS CA", plain.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Certificates_of_another_ca_expired_ones_and_ca_certificates_are_refused()
    {
        var manifest = DeploymentKeys.Generate(0, Deployment, UsigScheme.Ed25519, 64, 64, tls: true);
        DeploymentKeys.Generate(0, Path.Combine(_directory, "other"), UsigScheme.Ed25519, 64, 64, tls: true);
        var authorities = manifest.LoadTlsCertificateAuthorities();

        using var foreign = DeploymentTls.LoadCertificateWithKey(DeploymentCertificates.SiloCertificatePath(Path.Combine(_directory, "other"), "domain-0"));
        Assert.False(DeploymentTls.IsAccepted(authorities, foreign, TlsPeer.Silo, out var reason));
        Assert.Equal("not issued by this deployment's CA", reason);

        using var ca = DeploymentCertificates.LoadAuthority(Deployment);
        Assert.False(DeploymentTls.IsAccepted(authorities, ca, TlsPeer.Silo, out reason));
        Assert.Contains("CA certificate", reason, StringComparison.Ordinal);

        // A CA made a week ago, and a certificate of it that was valid for one day, three days ago.
        var weekAgo = DateTimeOffset.UtcNow - TimeSpan.FromDays(7);
        using var oldCa = DeploymentCertificates.CreateAuthority("old-ca", weekAgo);
        using var expired = DeploymentCertificates.Issue(oldCa, "old", TlsPeer.Silo, weekAgo + TimeSpan.FromDays(4), TimeSpan.FromDays(1));
        Assert.True(expired.NotAfter < DateTime.Now);
        Assert.False(DeploymentTls.IsAccepted([oldCa], expired, TlsPeer.Silo, out reason));
        Assert.Contains("NotTimeValid", reason, StringComparison.Ordinal);

        // Its own expired certificate stops a silo at start, saying so.
        var oldManifest = manifest.WithTlsCertificateAuthorities([oldCa.RawData]);
        var error = Assert.Throws<InvalidDataException>(() => DeploymentTls.CheckOwnCertificate(oldManifest, expired, TlsPeer.Silo, "old.crt"));
        Assert.Contains("expired", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Manifest_carries_its_tls_cas_through_json_and_a_usig_rotation_and_refuses_a_leaf_certificate_as_ca()
    {
        var manifest = DeploymentKeys.Generate(1, Deployment, UsigScheme.Ed25519, 64, 64, tls: true);
        Assert.Equal(manifest.TlsCertificateAuthorities, ClusterManifest.Parse(manifest.ToJson()).TlsCertificateAuthorities);
        var rotated = DeploymentKeys.RotateUsig(Deployment, 1, firstView: 3, firstCheckpoint: 64);
        Assert.Equal(manifest.TlsCertificateAuthorities, rotated.TlsCertificateAuthorities);

        // A manifest made without TLS has no such member at all (older readers see the same JSON).
        Assert.DoesNotContain("tlsCertificateAuthorities", DeploymentKeys.Generate(1, Path.Combine(_directory, "plain")).ToJson(), StringComparison.Ordinal);

        using var leaf = DeploymentTls.LoadCertificate(DeploymentCertificates.SiloCertificatePath(Deployment, "domain-0"));
        var document = System.Text.Json.Nodes.JsonNode.Parse(manifest.ToJson())!;
        document["tlsCertificateAuthorities"] = new System.Text.Json.Nodes.JsonArray(Convert.ToBase64String(leaf.RawData));
        var refused = Assert.Throws<InvalidDataException>(() => ClusterManifest.Parse(document.ToJsonString()));
        Assert.Contains("is not a CA certificate", refused.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => manifest.WithTlsCertificateAuthorities([leaf.RawData]));
    }

    [Fact]
    public async Task Silo_host_refuses_to_run_plaintext_on_a_manifest_without_tls_ca_unless_told_no_tls()
    {
        DeploymentKeys.Generate(0, Deployment);
        var manifest = Path.Combine(Deployment, DeploymentKeys.ManifestFileName);
        var error = new StringWriter();
        var saved = Console.Error;
        Console.SetError(error);
        try
        {
            Assert.Equal(2, await MinBft.Silo.Program.Main(["--fault-domain", "0", "--manifest", manifest, "--data", Path.Combine(_directory, "data")]));
            Assert.Equal(2, await MinBft.Silo.Program.Main(["--manifest", manifest]));
        }
        finally
        {
            Console.SetError(saved);
        }
        Assert.Contains("TLS is required but the cluster manifest names no TLS CA", error.ToString(), StringComparison.Ordinal);
        Assert.NotEmpty(MinBft.Silo.Program.BuildRootCommand().Parse(["--manifest", manifest, "--no-tls", "--tls-cert", "x.crt"]).Errors);
    }

    [Fact]
    public void A_silo_with_a_certificate_of_another_ca_does_not_start()
    {
        DeploymentKeys.Generate(0, Deployment, UsigScheme.Ed25519, 64, 64, tls: true);
        DeploymentKeys.Generate(0, Path.Combine(_directory, "other"), UsigScheme.Ed25519, 64, 64, tls: true);
        var builder = new HostApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        var error = Assert.Throws<InvalidDataException>(() => builder.UseOrleans(silo => silo.AddMinBft(o =>
        {
            o.ManifestPath = Path.Combine(Deployment, DeploymentKeys.ManifestFileName);
            o.Tls.CertificatePath = DeploymentCertificates.SiloCertificatePath(Path.Combine(_directory, "other"), "gateway");
        })));
        Assert.Contains("not issued by this deployment's CA", error.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// A silo that declares fault domain 1 (so placement puts replica and USIG 1 on it) with the
    /// deployment's valid certificate of domain 0, or of the gateway, does not start: it would stand
    /// in for domain 1 with another domain's credentials.
    /// </summary>
    [Fact]
    public void Attack_silo_declaring_a_fault_domain_with_another_domains_certificate_does_not_start()
    {
        DeploymentKeys.Generate(1, Deployment, UsigScheme.Ed25519, 64, 64, tls: true);
        var domain0 = DeploymentCertificates.SiloCertificatePath(Deployment, DeploymentCertificates.DomainName(0));
        var gateway = DeploymentCertificates.SiloCertificatePath(Deployment, DeploymentCertificates.GatewayDirectoryName);
        foreach (var (path, name) in new[] { (domain0, "minbft-silo-domain-0"), (gateway, "minbft-silo-gateway") })
        {
            var builder = new HostApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
            var error = Assert.Throws<InvalidDataException>(() => builder.UseOrleans(silo => silo.AddMinBft(o =>
            {
                o.ManifestPath = Path.Combine(Deployment, DeploymentKeys.ManifestFileName);
                o.FaultDomain = 1;
                o.Tls.CertificatePath = path;
            })));
            Assert.Contains($"this silo is fault domain 1 but its certificate is issued to '{name}', not 'minbft-silo-domain-1'", error.Message, StringComparison.Ordinal);
        }

        // Each domain's own certificate passes, and a gateway silo (no fault domain, no replica) is not checked.
        using var own = DeploymentTls.LoadCertificate(DeploymentCertificates.SiloCertificatePath(Deployment, DeploymentCertificates.DomainName(1)));
        MinBftSiloTls.CheckFaultDomain(own, 1, "domain-1");
        using var gatewayCertificate = DeploymentTls.LoadCertificate(gateway);
        MinBftSiloTls.CheckFaultDomain(gatewayCertificate, null, "gateway");
    }

    [Fact]
    public void Sdk_requires_a_client_certificate_when_the_manifest_names_a_tls_ca()
    {
        DeploymentKeys.Generate(0, Deployment, UsigScheme.Ed25519, 64, 64, tls: true);
        var manifest = Path.Combine(Deployment, DeploymentKeys.ManifestFileName);

        var missing = Assert.Throws<ArgumentException>(() => new HostApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true })
            .UseOrleansClient(c => c.AddMinBftClient(o => o.ManifestPath = manifest)));
        Assert.Contains("the deployment uses TLS", missing.Message, StringComparison.Ordinal);

        // A named certificate that is not there stops the client's start, naming the file.
        var absent = Assert.Throws<FileNotFoundException>(() => new HostApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true })
            .UseOrleansClient(c => c.AddMinBftClient(o =>
            {
                o.ManifestPath = manifest;
                o.Tls.CertificatePath = Path.Combine(_directory, "missing.crt");
            })));
        Assert.Contains("missing.crt", absent.Message, StringComparison.Ordinal);

        // Both ends told: plaintext for silos run with --no-tls.
        new HostApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true })
            .UseOrleansClient(c => c.AddMinBftClient(o =>
            {
                o.ManifestPath = manifest;
                o.Tls.Enabled = false;
            }));
    }
}
