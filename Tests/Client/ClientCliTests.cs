using System.Net;
using System.Text.RegularExpressions;
using MinBft.Client.Cli;
using MinBft.Hosting;

namespace MinBft.Tests.Client;

/// <summary>The client tool's grammar: each command line binds to the command record it means, or is rejected.</summary>
public sealed class ClientCliTests
{
    private static readonly ConnectionSettings Defaults = new(
        new IPEndPoint(IPAddress.Loopback, 30000),
        Path.Combine("data", "keys", "manifest.json"),
        LocalClusterOptions.DefaultClusterId,
        LocalClusterOptions.DefaultServiceId,
        TimeSpan.FromSeconds(30));

    private static ICliCommand? Bind(params string[] args)
    {
        var cli = new ClientCli();
        return cli.Bind(cli.Parse(args));
    }

    private static void AssertRejected(params string[] args)
    {
        var cli = new ClientCli();
        var parse = cli.Parse(args);
        Assert.NotEmpty(parse.Errors);
        Assert.Null(cli.Bind(parse));
    }

    [Fact]
    public void Put_WithDefaults() =>
        Assert.Equal(new PutCommand(Defaults, "k", "hello world"), Bind("put", "k", "hello world"));

    [Fact]
    public void Get_WithConnectionOptions()
    {
        var command = Bind("get", "k", "--gateway", "10.1.2.3:4000", "--manifest", "m.json", "--cluster-id", "c", "--service-id", "s", "--timeout", "5");

        Assert.Equal(
            new GetCommand(new ConnectionSettings(new IPEndPoint(IPAddress.Parse("10.1.2.3"), 4000), "m.json", "c", "s", TimeSpan.FromSeconds(5)), "k"),
            command);
    }

    [Fact]
    public void ShortAliases_AndLocalhost() =>
        Assert.Equal(
            new DeleteCommand(Defaults with { Gateway = new IPEndPoint(IPAddress.Loopback, 31000), ManifestPath = "x.json" }, "k"),
            Bind("delete", "k", "-g", "localhost:31000", "-m", "x.json"));

    [Fact]
    public void Status() => Assert.Equal(new StatusCommand(Defaults), Bind("status"));

    [Fact]
    public void Keygen()
    {
        Assert.Equal(new KeygenCommand(2, "out", UsigScheme.Hmac), Bind("keygen", "--f", "2", "--out", "out", "--scheme", "hmac"));
        Assert.Equal(new KeygenCommand(1, "k", UsigScheme.Ed25519), Bind("keygen", "--f", "1", "-o", "k"));
        Assert.Equal(new KeygenCommand(1, "k", UsigScheme.Ed25519) { MaxClientRecords = 5000 }, Bind("keygen", "--f", "1", "-o", "k", "--max-client-records", "5000"));
        Assert.Equal(new KeygenCommand(0, "k", UsigScheme.Ed25519, RotateUsig: 2) { FirstView = 7, FirstCheckpoint = 300 },
            Bind("keygen", "--rotate-usig", "2", "-o", "k", "--first-view", "7", "--first-checkpoint", "300"));
        Assert.Equal(new KeygenCommand(0, "k", UsigScheme.Ed25519) { ClientCertificate = "alice" }, Bind("keygen", "--client-cert", "alice", "-o", "k"));
        Assert.Equal(new KeygenCommand(0, "k", UsigScheme.Ed25519) { SiloCertificate = "domain-1" }, Bind("keygen", "--silo-cert", "domain-1", "-o", "k"));
    }

    [Fact]
    public void Tls_options_of_the_cluster_commands()
    {
        Assert.Equal(new GetCommand(Defaults with { TlsCertificate = "c.crt" }, "k"), Bind("get", "k", "--tls-cert", "c.crt"));
        Assert.Equal(new GetCommand(Defaults with { TlsCertificate = "c.crt", TlsKey = "c.key" }, "k"), Bind("get", "k", "--tls-cert", "c.crt", "--tls-key", "c.key"));
        Assert.Equal(new StatusCommand(Defaults with { NoTls = true }), Bind("status", "--no-tls"));
    }

    [Fact]
    public void Bench_DefaultsAndOptions()
    {
        Assert.Equal(new BenchCommand(Defaults, 16, TimeSpan.FromSeconds(10), 64, false), Bind("bench"));
        Assert.Equal(
            new BenchCommand(Defaults, 4, TimeSpan.FromSeconds(2), 0, true),
            Bind("bench", "--clients", "4", "--seconds", "2", "--payload", "0", "--baseline"));
        Assert.Equal(TimeSpan.FromSeconds(5), Assert.IsType<BenchCommand>(Bind("bench")).Warmup);
        Assert.Equal(TimeSpan.Zero, Assert.IsType<BenchCommand>(Bind("bench", "--warmup", "0")).Warmup);
        Assert.Null(Assert.IsType<BenchCommand>(Bind("bench")).KeySpace);
        Assert.Equal(100_000, Assert.IsType<BenchCommand>(Bind("bench", "--keys", "100000")).KeySpace);
    }

    [Fact]
    public void Demo_DefaultsAndOptions()
    {
        Assert.Equal(new DemoCommand(1, 200, 4), Bind("demo"));
        Assert.Equal(new DemoCommand(2, 50, 8), Bind("demo", "--f", "2", "--requests", "50", "--clients", "8"));
        Assert.Equal(new DemoCommand(0, 1, 1), Bind("demo", "--f", "0", "--requests", "1", "--clients", "1", "--verbose"));
        Assert.Equal(new DemoCommand(1, 200, 4, CrashPrimary: true), Bind("demo", "--crash-primary"));
        Assert.Equal(new DemoCommand(1, 200, 4) { IsolatedUsig = true }, Bind("demo", "--isolated-usig"));
    }

    [Theory]
    [InlineData("put", "k")]
    [InlineData("get")]
    [InlineData("get", "a", "b")]
    [InlineData("frobnicate")]
    [InlineData("get", "k", "--gateway", "nonsense")]
    [InlineData("get", "k", "--gateway", "1.2.3.4")]
    [InlineData("get", "k", "--gateway", "1.2.3.4:0")]
    [InlineData("get", "k", "--gateway", "1.2.3.4:70000")]
    [InlineData("get", "k", "--timeout", "0")]
    [InlineData("keygen", "--out", "x")]
    [InlineData("keygen", "--f", "1")]
    [InlineData("keygen", "--f", "1", "--out", "x", "--scheme", "rsa")]
    [InlineData("keygen", "--f", "-1", "--out", "x")]
    [InlineData("keygen", "--f", "1", "--rotate-usig", "0", "--out", "x")]
    [InlineData("keygen", "--f", "1", "--out", "x", "--max-client-records", "0")]
    [InlineData("keygen", "--rotate-usig", "0", "--out", "x", "--max-client-records", "10", "--first-view", "3", "--first-checkpoint", "64")]
    [InlineData("keygen", "--rotate-usig", "-1", "--out", "x", "--first-view", "3", "--first-checkpoint", "64")]
    [InlineData("keygen", "--rotate-usig", "1", "--out", "x")]
    [InlineData("keygen", "--rotate-usig", "1", "--out", "x", "--first-view", "3")]
    [InlineData("keygen", "--rotate-usig", "1", "--out", "x", "--first-checkpoint", "64")]
    [InlineData("keygen", "--rotate-usig", "1", "--out", "x", "--first-view", "0", "--first-checkpoint", "64")]
    [InlineData("keygen", "--f", "1", "--out", "x", "--first-view", "3")]
    [InlineData("keygen", "--f", "1", "--client-cert", "alice", "--out", "x")]
    [InlineData("keygen", "--client-cert", "alice", "--silo-cert", "gateway", "--out", "x")]
    [InlineData("keygen", "--client-cert", "../etc", "--out", "x")]
    [InlineData("keygen", "--silo-cert", "a/b", "--out", "x")]
    [InlineData("get", "k", "--no-tls", "--tls-cert", "c.crt")]
    [InlineData("get", "k", "--tls-key", "c.key")]
    [InlineData("bench", "--clients", "0")]
    [InlineData("bench", "--seconds", "-3")]
    [InlineData("bench", "--payload", "-1")]
    [InlineData("bench", "--warmup", "-1")]
    [InlineData("bench", "--keys", "0")]
    [InlineData("bench", "--payload", "1000000")]
    [InlineData("bench", "--clients", "many")]
    [InlineData("demo", "--f", "11")]
    [InlineData("demo", "--requests", "0")]
    public void InvalidCommandLines_AreRejected(params string[] args) => AssertRejected(args);

    [Fact]
    public void OversizedKey_IsRejected() => AssertRejected("get", new string('k', 2000));

    [Fact]
    public async Task Help_ListsTheCommands()
    {
        var output = new StringWriter();
        var cli = new ClientCli(new CliConsole(output, new StringWriter(), ErrorIsTerminal: false));

        var exit = await cli.InvokeAsync(["--help"], CancellationToken.None);

        Assert.Equal(0, exit);
        foreach (var command in new[] { "put", "get", "delete", "status", "keygen", "bench", "demo" })
            Assert.Contains(command, output.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task InvalidArguments_ExitNonZero_WithAMessage()
    {
        var error = new StringWriter();
        var cli = new ClientCli(new CliConsole(new StringWriter(), error, ErrorIsTerminal: false));

        var exit = await cli.InvokeAsync(["bench", "--clients", "0"], CancellationToken.None);

        Assert.Equal(ExitCodes.Usage, exit);
        Assert.Contains("--clients", error.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Keygen_WritesADeployment_AndRefusesToOverwriteIt()
    {
        var directory = Path.Combine(Path.GetTempPath(), "minbft-keygen-" + Guid.NewGuid().ToString("N"));
        try
        {
            var output = new StringWriter();
            var error = new StringWriter();
            var cli = new ClientCli(new CliConsole(output, error, ErrorIsTerminal: false));

            Assert.Equal(ExitCodes.Ok, await cli.InvokeAsync(["keygen", "--f", "1", "--out", directory, "--max-client-records", "5000"], CancellationToken.None));
            var manifest = ClusterManifest.Load(Path.Combine(directory, DeploymentKeys.ManifestFileName));
            Assert.Equal(3, manifest.N);
            Assert.Equal(5000, manifest.MaxClientRecords);
            Assert.All(Enumerable.Range(0, 3), i => Assert.True(File.Exists(Path.Combine(DeploymentKeys.DomainDirectory(directory, i), DeploymentKeys.ReplicaKeyDirectoryName, DeploymentKeys.SigningKeyFileName))));

            Assert.Equal(ExitCodes.Usage, await cli.InvokeAsync(["keygen", "--f", "1", "--out", directory], CancellationToken.None));
            Assert.Contains("already exists", error.ToString(), StringComparison.Ordinal);

            // A USIG that lost its state: a new epoch and key for it, nothing else changes.
            var oldKey = File.ReadAllText(DeploymentKeys.UsigKeyPath(manifest, DeploymentKeys.DomainDirectory(directory, 1)));
            Assert.Equal(ExitCodes.Ok, await cli.InvokeAsync(["keygen", "--rotate-usig", "1", "--out", directory, "--first-view", "5", "--first-checkpoint", "128"], CancellationToken.None));
            var rotated = ClusterManifest.Load(Path.Combine(directory, DeploymentKeys.ManifestFileName));
            Assert.Equal(manifest.Replica(1).UsigEpoch + 1, rotated.Replica(1).UsigEpoch);
            // The old identity is kept, retired: it still verifies the history it certified.
            var retired = Assert.Single(rotated.Replica(1).RetiredUsigs!);
            Assert.Equal(manifest.Replica(1).UsigEpoch, retired.Epoch);
            Assert.Equal(manifest.Replica(1).UsigPublicKey, retired.PublicKey);
            Assert.Equal((5L, 128UL), (rotated.Replica(1).UsigFirstView, rotated.Replica(1).UsigFirstCheckpoint));
            Assert.Equal(manifest.Replica(1).UsigEpoch, rotated.UsigEpochs().LeaderEpoch(1, 4));
            Assert.Equal(rotated.Replica(1).UsigEpoch, rotated.UsigEpochs().LeaderEpoch(1, 5));
            // A second rotation must move the first view on.
            Assert.Equal(ExitCodes.Usage, await cli.InvokeAsync(["keygen", "--rotate-usig", "1", "--out", directory, "--first-view", "5", "--first-checkpoint", "200"], CancellationToken.None));
            Assert.Contains("first view", error.ToString(), StringComparison.Ordinal);
            Assert.NotEqual(manifest.Replica(1).UsigPublicKey, rotated.Replica(1).UsigPublicKey);
            Assert.NotEqual(oldKey, File.ReadAllText(DeploymentKeys.UsigKeyPath(rotated, DeploymentKeys.DomainDirectory(directory, 1))));
            Assert.Equal(rotated.Replica(1).UsigPublicKey, DeploymentKeys.LoadUsigCertifier(rotated, 1, DeploymentKeys.DomainDirectory(directory, 1)).PublicKey);
            foreach (var other in new[] { 0, 2 }) Assert.Equal(manifest.Replica(other), rotated.Replica(other), ReplicaIdentityComparer.Instance);
            Assert.Equal(manifest.Replica(1).SigningPublicKey, rotated.Replica(1).SigningPublicKey);
            Assert.Contains("epoch 2", output.ToString(), StringComparison.Ordinal);
        }
        finally
        {
            if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public async Task ClusterCommand_WithMissingManifest_ExitsWithUsageError()
    {
        var error = new StringWriter();
        var cli = new ClientCli(new CliConsole(new StringWriter(), error, ErrorIsTerminal: false));

        var exit = await cli.InvokeAsync(["get", "k", "--manifest", "/nonexistent/manifest.json"], CancellationToken.None);

        Assert.Equal(ExitCodes.Usage, exit);
        Assert.Contains("manifest", error.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ClusterCommand_WithUnreachableGateway_ExitsWithUsageErrorAfterTheConnectTimeout()
    {
        var directory = Directory.CreateTempSubdirectory("minbft-cli-").FullName;
        try
        {
            var manifest = Path.Combine(directory, "manifest.json");
            new FakeReplicas(f: 1).Manifest.Save(manifest);
            var nobody = new LocalClusterOptions().UseFreePorts().GatewayPort;
            var error = new StringWriter();
            var cli = new ClientCli(new CliConsole(new StringWriter(), error, ErrorIsTerminal: false));
            var watch = System.Diagnostics.Stopwatch.StartNew();

            var exit = await cli.InvokeAsync(["get", "k", "--manifest", manifest, "--gateway", $"127.0.0.1:{nobody}"], CancellationToken.None);

            Assert.Equal(ExitCodes.Usage, exit);
            Assert.Contains("cannot connect to the cluster gateway", error.ToString(), StringComparison.Ordinal);
            Assert.InRange(watch.Elapsed, TimeSpan.Zero, ClusterConnection.ConnectTimeout + TimeSpan.FromSeconds(20));
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Theory]
    [InlineData("127.0.0.1:30000", "127.0.0.1", 30000)]
    [InlineData("localhost:1", "127.0.0.1", 1)]
    [InlineData("[::1]:5000", "::1", 5000)]
    public void Endpoints_Parse(string text, string address, int port)
    {
        Assert.True(ClientCli.TryParseEndpoint(text, out var endpoint));
        Assert.Equal(new IPEndPoint(IPAddress.Parse(address), port), endpoint);
    }

    [Theory]
    [InlineData("")]
    [InlineData("127.0.0.1")]
    [InlineData("::1")]
    [InlineData("host:")]
    [InlineData(":80")]
    [InlineData("127.0.0.1:99999")]
    public void Endpoints_Rejected(string text) => Assert.False(ClientCli.TryParseEndpoint(text, out _));

    [Fact]
    public void BenchLine_HasTheDocumentedShape()
    {
        var minbft = new BenchResult(100, 0, TimeSpan.FromSeconds(2), 50, 12.345, 99.5, null);
        var plain = new BenchResult(1000, 0, TimeSpan.FromSeconds(2), 500, 1, 2, null);

        var line = BenchCommand.FormatLine(minbft) + BenchCommand.FormatBaseline(minbft, plain);

        Assert.Equal("bench: ops/s=50.0 p50_ms=12.35 p99_ms=99.50 baseline_ops/s=500.0 ratio=0.100", line);
        Assert.Matches(new Regex(@"^bench: ops/s=[0-9.]+ p50_ms=[0-9.]+ p99_ms=[0-9.]+$"), BenchCommand.FormatLine(minbft));
    }

    [Fact]
    public void BenchCost_CountsEachSiloProcessOnce_AndLeavesOutProcessesNotSampledTwice()
    {
        var before = new ClusterCost(
            new Dictionary<string, TimeSpan> { ["m:1"] = TimeSpan.FromSeconds(10), ["m:2"] = TimeSpan.FromSeconds(4) },
            Executed: 100, ClientCpu: TimeSpan.FromSeconds(1));
        // m:1 hosts two replicas (one entry); m:3 restarted during the phase (no start sample).
        var after = new ClusterCost(
            new Dictionary<string, TimeSpan> { ["m:1"] = TimeSpan.FromSeconds(13), ["m:2"] = TimeSpan.FromSeconds(5), ["m:3"] = TimeSpan.FromSeconds(60) },
            Executed: 300, ClientCpu: TimeSpan.FromSeconds(2));

        var cost = ClusterCost.Between(before, after, operations: 2000);

        Assert.Equal(TimeSpan.FromSeconds(4), cost.SiloCpu);
        Assert.Equal(" cpu_ms_per_op=2.000 batch_avg=10.0", cost.Format());
        Assert.StartsWith("bench client: cpu_ms_per_op=0.500 ", cost.FormatClient());
    }

    [Fact]
    public void BenchCost_CountsIsolatedUsigProgramsWithTheirSilos_EachProcessOnce()
    {
        static ReplicaStatus Status(int id, ulong executed, string silo, double siloCpu, string usig, double usigCpu) =>
            new(id, 0, 0, executed, "", [], 0, 0, 0, 0, 0, 0, null, "", 0)
            {
                Process = silo,
                ProcessCpu = TimeSpan.FromSeconds(siloCpu),
                UsigProcess = usig,
                UsigProcessCpu = TimeSpan.FromSeconds(usigCpu),
            };
        // Replicas 0 and 1 share silo process m:1, each with its USIG program; replica 2 runs an
        // in-process USIG in m:2 (no USIG process); replica 3 did not answer.
        var before = ClusterCost.FromStatuses(
            [Status(0, 90, "m:1", 10, "m:10", 1), Status(1, 100, "m:1", 10, "m:11", 2), Status(2, 95, "m:2", 5, "", 0), null],
            TimeSpan.Zero);
        var after = ClusterCost.FromStatuses(
            [Status(0, 290, "m:1", 13, "m:10", 1.5), Status(1, 300, "m:1", 13, "m:11", 2.25), Status(2, 295, "m:2", 6, "", 0), null],
            TimeSpan.Zero);

        var cost = ClusterCost.Between(before, after, operations: 1000);

        // Silos 3 + 1, USIG programs 0.5 + 0.25; executed counts the furthest replica.
        Assert.Equal(TimeSpan.FromSeconds(4.75), cost.SiloCpu);
        Assert.Equal(200UL, cost.Batches);
        Assert.Equal(" cpu_ms_per_op=4.750 batch_avg=5.0", cost.Format());
    }

    [Fact]
    public void BenchCost_SaysNotAvailable_WhenNoReplicaAnsweredOrNothingCompleted()
    {
        var none = new ClusterCost(new Dictionary<string, TimeSpan>(), 0, TimeSpan.Zero);
        Assert.Equal(" cpu_ms_per_op=n/a batch_avg=n/a", ClusterCost.Between(none, none, 100).Format());
        var some = new ClusterCost(new Dictionary<string, TimeSpan> { ["m:1"] = TimeSpan.FromSeconds(1) }, 5, TimeSpan.Zero);
        Assert.Equal(" cpu_ms_per_op=n/a batch_avg=n/a", ClusterCost.Between(some, some, 0).Format());
    }

    [Fact]
    public void Percentile_IsNearestRank()
    {
        double[] values = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        Assert.Equal(5, BenchCommand.Percentile(values, 0.50));
        Assert.Equal(10, BenchCommand.Percentile(values, 0.99));
        Assert.Equal(0, BenchCommand.Percentile([], 0.5));
        Assert.Equal(7, BenchCommand.Percentile([7], 0.99));
    }
}

/// <summary>Replica identities by value (their keys are arrays).</summary>
internal sealed class ReplicaIdentityComparer : IEqualityComparer<ReplicaIdentity>
{
    public static readonly ReplicaIdentityComparer Instance = new();

    public bool Equals(ReplicaIdentity? x, ReplicaIdentity? y) =>
        x is not null && y is not null && x.Id == y.Id && x.UsigEpoch == y.UsigEpoch
        && x.SigningPublicKey.AsSpan().SequenceEqual(y.SigningPublicKey) && (x.UsigPublicKey ?? []).AsSpan().SequenceEqual(y.UsigPublicKey ?? []);

    public int GetHashCode(ReplicaIdentity obj) => obj.Id;
}
