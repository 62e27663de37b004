using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using MinBft.Application;
using MinBft.Client;
using MinBft.Hosting;
using Orleans.Configuration;
using Orleans.Connections.Security;
using Orleans.GrainDirectory;
using Orleans.Hosting;
using Orleans.Runtime;
using Xunit.Abstractions;

namespace MinBft.Tests.Integration;

/// <summary>
/// Mutual TLS on a real cluster (issue 11, item 3: transport and membership were unauthenticated).
/// The fixture runs a deployment made by keygen (with its CA) as the silo host would: fault domain
/// 0's silo (f = 0, the primary silo of development clustering) and a gateway silo, in this
/// process, on loopback TCP ports, with <c>AddMinBft</c>'s default TLS. Each attack test brings its
/// own intruder: a silo or client that reaches the ports but lacks a certificate the deployment's
/// CA issued for its role. It must be refused, and the refusal must show in the silos' log.
/// </summary>
[Collection(nameof(IntruderSiloCollection))]
public sealed class TlsTests(TlsClusterFixture cluster, ITestOutputHelper output) : IClassFixture<TlsClusterFixture>
{
    /// <summary>How long an intruding client is given to get in (a refused client keeps retrying until then); the
    /// refusal itself is asserted from the silos' log, so this bounds the test's time, not what it proves.</summary>
    private static readonly TimeSpan AttemptDeadline = TimeSpan.FromSeconds(15);

    [Fact]
    public async Task Client_and_silos_with_the_deployments_certificates_complete_a_request_through_the_sdk()
    {
        using var client = cluster.BuildClient(c => c.AddMinBftClient(o =>
        {
            o.ManifestPath = cluster.ManifestPath;
            o.Tls.CertificatePath = DeploymentCertificates.ClientCertificatePath(cluster.Keys, DeploymentCertificates.DefaultClientName);
        }));
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        await client.StartAsync(deadline.Token);
        var kv = client.Services.GetRequiredService<KeyValueClient>();
        var value = "over mutual TLS"u8.ToArray();
        await kv.PutAsync("tls-key", value, deadline.Token);
        Assert.Equal(value, await kv.GetAsync("tls-key", deadline.Token));

        // Both silos are members: the gateway silo reached the primary silo over silo-to-silo TLS.
        var hosts = await client.Services.GetRequiredService<IClusterClient>().GetGrain<IManagementGrain>(0).GetHosts(onlyActive: true);
        Assert.Equal(2, hosts.Count);
        Assert.Contains(cluster.Log.Lines, l => l.Message.Contains("transport=mtls", StringComparison.Ordinal));
        await client.StopAsync(CancellationToken.None);
    }

    [Fact]
    public async Task Attack_plaintext_client_without_certificate_cannot_call_a_grain()
    {
        var mark = cluster.Log.Count;
        using var intruder = cluster.BuildClient(_ => { });
        var failure = await TryCallAsync(intruder);
        Assert.NotNull(failure);
        // The gateway's TLS layer threw the plaintext hello away.
        await cluster.Log.WaitForAsync(mark, l => l.FromCluster && l.Category.EndsWith("TlsServerConnectionMiddleware", StringComparison.Ordinal), "the gateway refusing a plaintext connection");
    }

    [Fact]
    public async Task Attack_client_trusting_any_silo_without_a_certificate_of_its_own_cannot_call_a_grain()
    {
        var mark = cluster.Log.Count;
        using var intruder = cluster.BuildClient(c => c.UseTls(tls =>
        {
            tls.ClientCertificateMode = RemoteCertificateMode.NoCertificate;
            tls.AllowAnyRemoteCertificate();
        }));
        var failure = await TryCallAsync(intruder);
        Assert.NotNull(failure);
        await cluster.Log.WaitForAsync(mark, l => l.FromCluster && l.Category.EndsWith("TlsServerConnectionMiddleware", StringComparison.Ordinal), "the gateway refusing a client without certificate");
    }

    [Fact]
    public async Task Attack_client_with_a_certificate_of_another_ca_cannot_call_a_grain()
    {
        var mark = cluster.Log.Count;
        using var foreign = DeploymentTls.LoadCertificateWithKey(DeploymentCertificates.ClientCertificatePath(cluster.Foreign, DeploymentCertificates.DefaultClientName));
        using var intruder = cluster.BuildClient(c => c.UseTls(foreign, tls => tls.AllowAnyRemoteCertificate()));
        var failure = await TryCallAsync(intruder);
        Assert.NotNull(failure);
        await cluster.Log.WaitForAsync(mark, l => l.FromCluster && l.Message.Contains("refused a gateway connection", StringComparison.Ordinal)
            && l.Message.Contains(foreign.Thumbprint, StringComparison.Ordinal) && l.Message.Contains("not issued by this deployment's CA", StringComparison.Ordinal),
            "the gateway refusing the foreign CA's client certificate");
    }

    [Fact]
    public async Task Attack_plaintext_silo_without_certificate_cannot_join_the_cluster()
    {
        var mark = cluster.Log.Count;
        var failure = await cluster.TryJoinAsync("plaintext", o =>
        {
            o.Tls.Enabled = false;
            o.Tls.PlaintextReason = "the intruder";
        }, configure: null, output);
        Assert.NotNull(failure);
        await cluster.Log.WaitForAsync(mark, l => l.FromCluster && l.Category.EndsWith("TlsServerConnectionMiddleware", StringComparison.Ordinal), "the primary silo refusing a plaintext silo");
        await cluster.AssertMembersAsync(2);
    }

    /// <summary>
    /// The intruder knows the public manifest and adds its own CA to its copy, so it trusts the real
    /// silos and its own certificate passes its own checks: only the cluster's check can stop it.
    /// </summary>
    [Fact]
    public async Task Attack_silo_with_a_certificate_of_another_ca_cannot_join_the_cluster()
    {
        var mark = cluster.Log.Count;
        var foreignPath = DeploymentCertificates.SiloCertificatePath(cluster.Foreign, DeploymentCertificates.GatewayDirectoryName);
        using var foreign = DeploymentTls.LoadCertificate(foreignPath);
        var bothCas = cluster.Manifest.WithTlsCertificateAuthorities(
            [.. cluster.Manifest.TlsCertificateAuthorities, .. ClusterManifest.Load(Path.Combine(cluster.Foreign, DeploymentKeys.ManifestFileName)).TlsCertificateAuthorities]);
        var failure = await cluster.TryJoinAsync("foreign-ca", o =>
        {
            o.Manifest = bothCas;
            o.Tls.CertificatePath = foreignPath;
        }, configure: null, output);
        Assert.NotNull(failure);
        await cluster.Log.WaitForAsync(mark, l => l.FromCluster && l.Message.Contains("refused a silo-to-silo (inbound) connection", StringComparison.Ordinal)
            && l.Message.Contains(foreign.Thumbprint, StringComparison.Ordinal) && l.Message.Contains("not issued by this deployment's CA", StringComparison.Ordinal),
            "the primary silo refusing the foreign CA's silo certificate");
        await cluster.AssertMembersAsync(2);
    }

    /// <summary>
    /// A client's certificate is the deployment's, but not a silo's: whoever holds one may use a
    /// gateway, never join the cluster. The intruder shows it on its silo-to-silo connections (its
    /// own listener needs a server certificate, so it makes one up).
    /// </summary>
    [Fact]
    public async Task Attack_silo_showing_a_client_certificate_of_the_deployment_cannot_join_the_cluster()
    {
        var mark = cluster.Log.Count;
        using var clientCertificate = DeploymentTls.LoadCertificateWithKey(DeploymentCertificates.ClientCertificatePath(cluster.Keys, DeploymentCertificates.DefaultClientName));
        using var madeUp = DeploymentTls.LoadCertificateWithKey(DeploymentCertificates.SiloCertificatePath(cluster.Foreign, DeploymentCertificates.GatewayDirectoryName));
        var failure = await cluster.TryJoinAsync("client-cert", o =>
        {
            o.Tls.Enabled = false;
            o.Tls.PlaintextReason = "the intruder sets up TLS itself";
        }, silo => silo.UseTls(tls =>
        {
            tls.LocalCertificate = clientCertificate;
            tls.LocalServerCertificateSelector = (_, _) => madeUp;
            tls.ClientCertificateMode = RemoteCertificateMode.RequireCertificate;
            tls.AllowAnyRemoteCertificate();
        }), output);
        Assert.NotNull(failure);
        await cluster.Log.WaitForAsync(mark, l => l.FromCluster && l.Message.Contains("refused a silo-to-silo (inbound) connection", StringComparison.Ordinal)
            && l.Message.Contains(clientCertificate.Thumbprint, StringComparison.Ordinal) && l.Message.Contains("not a silo certificate", StringComparison.Ordinal),
            "the primary silo refusing a client certificate on a silo-to-silo connection");
        await cluster.AssertMembersAsync(2);
    }

    /// <summary>
    /// A member with a valid silo certificate (the gateway's: it names no fault domain) runs changed
    /// code: it writes a directory entry that puts fault domain 0's grain on itself, replacing any
    /// entry there, as if it had placed and activated it. The gateway silo, where the client's call
    /// leaves for a silo, finds the entry, sees that the silo's certificate (from its own TLS
    /// connection to it) does not name domain 0, and places the call again: it runs in domain 0,
    /// whose activation's registration replaces the forged entry.
    /// </summary>
    [Fact]
    public async Task Attack_member_registering_another_domains_grain_on_itself_in_the_directory_gets_none_of_its_calls()
    {
        var mark = cluster.Log.Count;
        using var rogue = await cluster.JoinAsync("directory-forger", o => o.Tls.Required = true);
        var rogueSilo = rogue.Services.GetRequiredService<ILocalSiloDetails>().SiloAddress;
        var grainId = rogue.Services.GetRequiredService<IGrainFactory>().GetGrain<IDurableKeyValueGrain>(0).GetGrainId();
        // Orleans' directory itself, under the checks: what changed code would write to.
        var directory = rogue.Services.GetRequiredKeyedService<IGrainDirectory>(GrainDirectoryAttribute.DEFAULT_GRAIN_DIRECTORY);
        var forged = new GrainAddress { GrainId = grainId, SiloAddress = rogueSilo, ActivationId = ActivationId.NewId() };
        var registered = await directory.Register(forged, await directory.Lookup(grainId));
        Assert.True(forged.Matches(registered), $"the forged entry did not take: {registered}");

        using var client = cluster.BuildClient(c => c.UseMinBftTls(cluster.Manifest, DeploymentCertificates.ClientCertificatePath(cluster.Keys, DeploymentCertificates.DefaultClientName)));
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await client.StartAsync(deadline.Token);
        var grain = client.Services.GetRequiredService<IClusterClient>().GetGrain<IDurableKeyValueGrain>(0);
        await grain.Execute(KeyValueOperation.EncodePut("forged-directory", [7])).WaitAsync(deadline.Token);
        Assert.True(KeyValueResult.TryDecode(await grain.Execute(KeyValueOperation.EncodeGet("forged-directory")).WaitAsync(deadline.Token), out var read));
        Assert.Equal([7], read.Value);

        var entry = await directory.Lookup(grainId);
        Assert.Equal(cluster.DomainSilo, entry?.SiloAddress);
        // The gateway silo had no connection to the forger yet, so its lookup read the entry as not
        // active (it logs only entries proven wrong); domain 0's silo replaced it.
        await cluster.Log.WaitForAsync(mark, l => l.FromCluster && l.Message.Contains($"Refused the directory entry of {grainId} on silo {rogueSilo}", StringComparison.Ordinal),
            "a silo of the cluster refusing the forged directory entry");
        await client.StopAsync(CancellationToken.None);
        await TlsTests.StopQuietlyAsync(rogue);
    }

    /// <summary>
    /// Orleans sends a silo's messages over any inbound connection that claims that silo's address
    /// in its preamble, and the claim is not part of TLS. Changed code with a valid silo certificate
    /// (the gateway's: no fault domain) connects to the gateway silo and claims to be fault domain
    /// 0's silo, so as to receive domain 0's messages. The gateway silo's own connection to domain
    /// 0's silo proved domain 0, so it refuses the claim and closes the connection.
    /// </summary>
    [Fact]
    public async Task Attack_connection_claiming_another_domains_silo_address_is_refused()
    {
        var mark = cluster.Log.Count;
        var victim = cluster.DomainSilo;
        var proofs = cluster.GatewaySilo.Services.GetRequiredService<SiloCertificateDomains>();
        await MinBft.Tests.Client.Conditions.WaitUntilAsync(
            () => Task.FromResult((proofs.Check(victim.Endpoint, 0) == SiloDomainCheck.Verified, proofs.Describe(victim.Endpoint))),
            TimeSpan.FromSeconds(30), "the gateway silo's own connection to domain 0's silo");

        await ClaimAndExpectRefusalAsync(victim, mark,
            $"refused a silo-to-silo (inbound) connection: a connection claims to be the silo at {victim.Endpoint} with a certificate of no fault domain");
        await cluster.AssertMembersAsync(2);
    }

    /// <summary>
    /// The same claim for an address the gateway silo never connected to: it dials that address
    /// to learn its certificate before admitting the claim (never trusting one claim against
    /// another). Nothing answers there, so the claim is refused.
    /// </summary>
    [Fact]
    public async Task Attack_connection_claiming_an_address_where_no_silo_answers_is_refused()
    {
        var mark = cluster.Log.Count;
        var nobody = SiloAddress.New(new IPEndPoint(IPAddress.Loopback, FreePorts.Next()), 1);
        await ClaimAndExpectRefusalAsync(nobody, mark,
            $"refused a silo-to-silo (inbound) connection: it claims to be the silo at {nobody.Endpoint}, whose certificate could not be fetched");
    }

    /// <summary>
    /// A silo that restarts at the same address with another fault domain's certificate is not
    /// refused for good: a claim that contradicts the address's older proof has the address dialed
    /// again (at most once an interval), and the new proof admits it. Stand-ins for the silo at
    /// that address: two TLS listeners on one port, one after the other, with domain 0's and then
    /// the gateway's certificate (the one a silo of no fault domain shows).
    /// </summary>
    [Fact]
    public async Task A_silo_restarted_at_the_same_address_with_another_certificate_is_admitted_after_the_address_is_dialed_again()
    {
        var proofs = cluster.GatewaySilo.Services.GetRequiredService<SiloCertificateDomains>();
        var address = SiloAddress.New(new IPEndPoint(IPAddress.Loopback, FreePorts.Next()), 1);
        var domain0 = DeploymentCertificates.SiloCertificatePath(cluster.Keys, DeploymentCertificates.DomainName(0));
        var gateway = DeploymentCertificates.SiloCertificatePath(cluster.Keys, DeploymentCertificates.GatewayDirectoryName);
        Task Proves(string expected) => MinBft.Tests.Client.Conditions.WaitUntilAsync(
            () => Task.FromResult((proofs.Describe(address.Endpoint) == expected, proofs.Describe(address.Endpoint))),
            TimeSpan.FromSeconds(30), $"the gateway silo's proof of {address.Endpoint} naming {expected}");

        await using (var first = SiloStandIn.Listen(address.Endpoint, domain0))
        {
            using var claim = await ClaimAsync(address, domain0);
            await Proves(DeploymentCertificates.DomainName(0));
        }
        var mark = cluster.Log.Count;
        await using (var restarted = SiloStandIn.Listen(address.Endpoint, gateway))
        {
            using var claim = await ClaimAsync(address, gateway);
            await Proves("none");
            Assert.DoesNotContain(cluster.Log.Lines.Skip(mark), l => l.Message.Contains($"the silo at {address.Endpoint}", StringComparison.Ordinal));
            // Within the interval, a contradicting claim is checked against the new proof only.
            await ClaimAndExpectRefusalAsync(address, cluster.Log.Count,
                $"refused a silo-to-silo (inbound) connection: a connection claims to be the silo at {address.Endpoint} with a certificate of fault domain domain-0",
                domain0);
        }
    }

    // Connects to the gateway silo's silo port with the given certificate (the gateway's by default),
    // claims to be `claimed`, and expects the gateway silo to log `refusal` and close the connection.
    private async Task ClaimAndExpectRefusalAsync(SiloAddress claimed, int mark, string refusal, string? certificatePath = null)
    {
        using var claim = await ClaimAsync(claimed, certificatePath ?? DeploymentCertificates.SiloCertificatePath(cluster.Keys, DeploymentCertificates.GatewayDirectoryName));
        var tls = claim.Stream;
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await cluster.Log.WaitForAsync(mark, l => l.Silo == "gateway" && l.Message.Contains(refusal, StringComparison.Ordinal), "the gateway silo refusing the claim");
        // Closed: the read ends (0 bytes, or a reset) instead of Orleans' own preamble and messages.
        var buffer = new byte[4096];
        int read;
        try
        {
            read = await tls.ReadAsync(buffer, deadline.Token);
        }
        catch (IOException)
        {
            read = 0;
        }
        Assert.Equal(0, read);
    }

    // A raw TLS connection to the gateway silo's silo port that sends Orleans' preamble claiming `claimed`.
    private async Task<Claim> ClaimAsync(SiloAddress claimed, string certificatePath)
    {
        var certificate = DeploymentTls.LoadCertificateWithKey(certificatePath);
        var tcp = new TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, cluster.GatewaySiloPort);
        var tls = new SslStream(tcp.GetStream());
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
        {
            TargetHost = "minbft-silo",
            ClientCertificates = [certificate],
            RemoteCertificateValidationCallback = (_, _, _, _) => true,
        }, deadline.Token);
        await tls.WriteAsync(ForgedPreamble(cluster.GatewaySilo.Services, claimed, cluster.ClusterId), deadline.Token);
        await tls.FlushAsync(deadline.Token);
        return new Claim(certificate, tcp, tls);
    }

    private sealed record Claim(X509Certificate2 Certificate, TcpClient Tcp, SslStream Stream) : IDisposable
    {
        public void Dispose()
        {
            Stream.Dispose();
            Tcp.Dispose();
            Certificate.Dispose();
        }
    }

    /// <summary>Answers TLS handshakes at an address with one silo certificate, as a silo there would
    /// answer the gateway silo's probe; nothing after the handshake.</summary>
    private sealed class SiloStandIn : IAsyncDisposable
    {
        private readonly TcpListener _listener;
        private readonly X509Certificate2 _certificate;
        private readonly Task _accepting;
        private readonly CancellationTokenSource _stop = new();

        private SiloStandIn(IPEndPoint endpoint, string certificatePath)
        {
            _certificate = DeploymentTls.LoadCertificateWithKey(certificatePath);
            _listener = new TcpListener(endpoint);
            _listener.Start();
            _accepting = AcceptAsync();
        }

        public static SiloStandIn Listen(IPEndPoint endpoint, string certificatePath) => new(endpoint, certificatePath);

        private async Task AcceptAsync()
        {
            while (!_stop.IsCancellationRequested)
            {
                TcpClient peer;
                try
                {
                    peer = await _listener.AcceptTcpClientAsync(_stop.Token);
                }
                catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
                {
                    return;
                }
                using (peer)
                await using (var tls = new SslStream(peer.GetStream()))
                {
                    try
                    {
                        await tls.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
                        {
                            ServerCertificate = _certificate,
                            ClientCertificateRequired = true,
                            RemoteCertificateValidationCallback = (_, _, _, _) => true,
                        }, _stop.Token);
                    }
                    catch (Exception e) when (e is IOException or AuthenticationException or OperationCanceledException)
                    {
                        // The probe closes right after the handshake; nothing more is expected.
                    }
                }
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            _listener.Stop();
            await _accepting;
            _stop.Dispose();
            _certificate.Dispose();
        }
    }

    // Orleans' connection preamble (internal type, so built by name) claiming to be `claimed`.
    private static byte[] ForgedPreamble(IServiceProvider services, SiloAddress claimed, string clusterId)
    {
        var type = Type.GetType(SiloConnectionPreamble.PreambleTypeName, throwOnError: true)!;
        var preamble = Activator.CreateInstance(type, nonPublic: true)!;
        var siloConnection = Type.GetType("Orleans.Runtime.Constants, Orleans.Core", throwOnError: true)!.GetField("SiloDirectConnectionId")!.GetValue(null);
        type.GetProperty("NodeIdentity")!.SetValue(preamble, siloConnection);
        type.GetProperty("SiloAddress")!.SetValue(preamble, claimed);
        type.GetProperty("ClusterId")!.SetValue(preamble, clusterId);
        var serializer = services.GetRequiredService(typeof(Orleans.Serialization.Serializer<>).MakeGenericType(type));
        var body = (byte[])serializer.GetType().GetMethod("SerializeToArray", [type])!.Invoke(serializer, [preamble])!;
        var framed = new byte[sizeof(int) + body.Length];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(framed, body.Length);
        body.CopyTo(framed, sizeof(int));
        return framed;
    }

    /// <summary>Starts the client and calls a grain through it; the exception that stopped it, or null if it got through.</summary>
    private async Task<Exception?> TryCallAsync(IHost intruder)
    {
        using var deadline = new CancellationTokenSource(AttemptDeadline);
        var clock = Stopwatch.StartNew();
        try
        {
            await intruder.StartAsync(deadline.Token);
            var client = intruder.Services.GetRequiredService<IClusterClient>();
            await client.GetGrain<IManagementGrain>(0).GetHosts(onlyActive: true).WaitAsync(deadline.Token);
            return null;
        }
        catch (Exception e)
        {
            output.WriteLine($"refused after {clock.Elapsed.TotalSeconds:F1} s: {e.GetType().Name}: {e.Message}");
            return e;
        }
        finally
        {
            await StopQuietlyAsync(intruder);
        }
    }

    internal static async Task StopQuietlyAsync(IHost host)
    {
        try
        {
            using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await host.StopAsync(stop.Token);
        }
        catch (Exception e) when (e is OperationCanceledException or OrleansException or ObjectDisposedException or InvalidOperationException or AggregateException)
        {
            // It never got in; there is nothing to leave.
        }
    }
}

/// <summary>The TLS deployment of <see cref="TlsTests"/>: keys with a CA, fault domain 0's silo and a gateway silo; and another deployment's keys for intruders.</summary>
public sealed class TlsClusterFixture : IAsyncLifetime
{
    private readonly string _directory = Directory.CreateTempSubdirectory("minbft-tls-").FullName;
    private readonly List<IHost> _silos = [];
    private readonly string _clusterId = "tls-" + Guid.NewGuid().ToString("N")[..8];
    private readonly int _primarySiloPort = FreePorts.Next();
    private int _gatewayPort;

    public string Keys => Path.Combine(_directory, "keys");

    /// <summary>Another deployment (its own CA and certificates): what an outsider can make.</summary>
    public string Foreign => Path.Combine(_directory, "foreign");

    public string ManifestPath => Path.Combine(Keys, DeploymentKeys.ManifestFileName);

    public ClusterManifest Manifest { get; private set; } = null!;

    public CapturedLog Log { get; } = new();

    public async Task InitializeAsync()
    {
        Manifest = DeploymentKeys.Generate(0, Keys, UsigScheme.Ed25519, ClusterManifest.DefaultCheckpointInterval, ClusterManifest.DefaultWatermark, tls: true);
        DeploymentKeys.Generate(0, Foreign, UsigScheme.Ed25519, ClusterManifest.DefaultCheckpointInterval, ClusterManifest.DefaultWatermark, tls: true);
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        var domain = BuildSilo("domain-0", _primarySiloPort, FreePorts.Next(), o =>
        {
            o.FaultDomain = 0;
            o.Usig.InitializeEpoch = Manifest.Replica(0).UsigEpoch;
            o.DataDirectory = Path.Combine(_directory, "data-0");
            // As the silo host: plaintext is refused, not warned about.
            o.Tls.Required = true;
        }, configure: null);
        _silos.Add(domain);
        await domain.StartAsync(deadline.Token);
        _gatewayPort = FreePorts.Next();
        // A silo without fault domain: its certificate is gateway/tls/ next to the manifest (the default path).
        GatewaySiloPort = FreePorts.Next();
        var gateway = BuildSilo("gateway", GatewaySiloPort, _gatewayPort, o => o.Tls.Required = true, configure: null);
        _silos.Add(gateway);
        await gateway.StartAsync(deadline.Token);
    }

    public async Task DisposeAsync()
    {
        foreach (var silo in Enumerable.Reverse(_silos))
        {
            await TlsTests.StopQuietlyAsync(silo);
            silo.Dispose();
        }
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
            // A file still held open; the temp directory is cleaned some day.
        }
    }

    /// <summary>A client of the gateway silo; <paramref name="configure"/> decides its TLS.</summary>
    public IHost BuildClient(Action<IClientBuilder> configure)
    {
        var builder = new HostApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Logging.ClearProviders();
        builder.UseOrleansClient(client =>
        {
            client.UseStaticClustering(new IPEndPoint(IPAddress.Loopback, _gatewayPort));
            client.Configure<ClusterOptions>(o =>
            {
                o.ClusterId = _clusterId;
                o.ServiceId = _clusterId;
            });
            configure(client);
        });
        return builder.Build();
    }

    /// <summary>
    /// Starts an intruding silo (no fault domain) that names the primary silo, and returns what
    /// stopped it, or null if it started. It gives up joining after a few seconds of its own (its
    /// membership options), well within the test's deadline.
    /// </summary>
    public async Task<Exception?> TryJoinAsync(string name, Action<MinBftOptions> options, Action<ISiloBuilder>? configure, ITestOutputHelper output)
    {
        using var silo = BuildSilo("intruder-" + name, FreePorts.Next(), FreePorts.Next(), options, builder =>
        {
            builder.Configure<ClusterMembershipOptions>(o => o.MaxJoinAttemptTime = TimeSpan.FromSeconds(5));
            configure?.Invoke(builder);
        });
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var clock = Stopwatch.StartNew();
        try
        {
            await silo.StartAsync(deadline.Token);
            return null;
        }
        catch (Exception e)
        {
            output.WriteLine($"intruder {name} refused after {clock.Elapsed.TotalSeconds:F1} s: {e.GetType().Name}: {e.Message}");
            return e;
        }
        finally
        {
            await TlsTests.StopQuietlyAsync(silo);
        }
    }

    /// <summary>The gateway silo (no fault domain).</summary>
    public IHost GatewaySilo => _silos[1];

    /// <summary>The gateway silo's silo-to-silo port.</summary>
    public int GatewaySiloPort { get; private set; }

    /// <summary>The cluster id (also the service id).</summary>
    public string ClusterId => _clusterId;

    /// <summary>Fault domain 0's silo.</summary>
    public SiloAddress DomainSilo => _silos[0].Services.GetRequiredService<ILocalSiloDetails>().SiloAddress;

    /// <summary>Starts another member (no fault domain unless <paramref name="options"/> gives one) and returns it running.</summary>
    public async Task<IHost> JoinAsync(string name, Action<MinBftOptions> options)
    {
        var silo = BuildSilo("intruder-" + name, FreePorts.Next(), FreePorts.Next(), options, configure: null);
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        try
        {
            await silo.StartAsync(deadline.Token);
            return silo;
        }
        catch
        {
            silo.Dispose();
            throw;
        }
    }

    /// <summary>The cluster, asked through a valid client, has exactly <paramref name="count"/> active members.</summary>
    public async Task AssertMembersAsync(int count)
    {
        using var client = BuildClient(c => c.UseMinBftTls(Manifest, DeploymentCertificates.ClientCertificatePath(Keys, DeploymentCertificates.DefaultClientName)));
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await client.StartAsync(deadline.Token);
        var hosts = await client.Services.GetRequiredService<IClusterClient>().GetGrain<IManagementGrain>(0).GetHosts(onlyActive: true);
        Assert.True(hosts.Count == count, $"active members: {string.Join(", ", hosts.Keys)}; expected {count}");
        await client.StopAsync(CancellationToken.None);
    }

    private IHost BuildSilo(string name, int siloPort, int gatewayPort, Action<MinBftOptions> options, Action<ISiloBuilder>? configure)
    {
        var builder = new HostApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Logging.ClearProviders();
        builder.Logging.AddProvider(Log.For(name));
        builder.Logging.SetMinimumLevel(LogLevel.Information);
        builder.UseOrleans(silo =>
        {
            silo.UseLocalhostClustering(siloPort, gatewayPort, new IPEndPoint(IPAddress.Loopback, _primarySiloPort), _clusterId, _clusterId);
            silo.Configure<SiloOptions>(o => o.SiloName = name);
            silo.AddMinBft(o =>
            {
                o.ManifestPath = ManifestPath;
                options(o);
            });
            configure?.Invoke(silo);
        });
        return builder.Build();
    }
}

/// <summary>Every log line of the fixture's silos, in order, for tests that look for a refusal.</summary>
public sealed class CapturedLog
{
    private readonly ConcurrentQueue<Line> _lines = new();
    private int _count;

    public sealed record Line(string Silo, string Category, LogLevel Level, string Message)
    {
        /// <summary>Written by one of the deployment's own silos (not an intruder).</summary>
        public bool FromCluster => Silo is "domain-0" or "gateway";
    }

    public int Count => Volatile.Read(ref _count);

    public IEnumerable<Line> Lines => _lines;

    public ILoggerProvider For(string silo) => new Provider(this, silo);

    /// <summary>Waits (deadline 30 s) for a line after the first <paramref name="mark"/> lines that matches.</summary>
    public Task WaitForAsync(int mark, Func<Line, bool> match, string what) =>
        MinBft.Tests.Client.Conditions.WaitUntilAsync(() =>
        {
            var found = _lines.Skip(mark).Any(match);
            var recent = _lines.Skip(mark).Where(l => l.Level >= LogLevel.Warning).TakeLast(5).Select(l => $"[{l.Silo}] {l.Category}: {l.Message}");
            return Task.FromResult((found, string.Join(" | ", recent)));
        }, TimeSpan.FromSeconds(30), what);

    private void Add(Line line)
    {
        _lines.Enqueue(line);
        Interlocked.Increment(ref _count);
    }

    private sealed class Provider(CapturedLog log, string silo) : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => new Logger(log, silo, categoryName);

        public void Dispose()
        {
        }
    }

    private sealed class Logger(CapturedLog log, string silo, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        // Orleans is chatty at Information; warnings and MinBFT's own lines are what the tests read.
        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning || category.StartsWith("MinBft", StringComparison.Ordinal);

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel)) log.Add(new Line(silo, category, logLevel, formatter(state, exception)));
        }
    }
}
