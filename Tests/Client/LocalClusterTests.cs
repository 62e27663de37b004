using Microsoft.Extensions.Logging;
using System.Globalization;
using MinBft.Client;
using MinBft.Client.Cli;
using MinBft.Hosting;

namespace MinBft.Tests.Client;

/// <summary>One f=1 LocalCluster (on free ports) shared by the tests of <see cref="LocalClusterTests"/>.</summary>
public sealed class LocalClusterFixture : IAsyncLifetime
{
    public string DataDirectory { get; } = Directory.CreateTempSubdirectory("minbft-localcluster-").FullName;

    public LocalCluster Cluster { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        var log = Environment.GetEnvironmentVariable("MINBFT_TEST_LOG");
        Cluster = new LocalCluster(new LocalClusterOptions
        {
            F = 1,
            DataDirectory = DataDirectory,
            ConfigureLogging = log is null ? null : logging =>
            {
                logging.AddProvider(new FileLogProvider(log));
                logging.SetMinimumLevel(LogLevel.Information);
                logging.AddFilter("Orleans", LogLevel.Warning);
            },
        }.UseFreePorts());
        await Cluster.StartAsync();
        await Cluster.WaitForReplicasAsync(TimeSpan.FromSeconds(60));
    }

    public async Task DisposeAsync()
    {
        await Cluster.DisposeAsync();
        Directory.Delete(DataDirectory, recursive: true);
    }
}

/// <summary>The SDK and the CLI against a real in-process cluster: gateway, fault-domain silos, replicas.</summary>
public sealed class LocalClusterTests(LocalClusterFixture fixture) : IClassFixture<LocalClusterFixture>
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    private LocalCluster Cluster => fixture.Cluster;

    [Fact]
    public async Task Cli_PutGetDeleteStatus_ThroughTheGateway()
    {
        var connection = new[]
        {
            "--gateway", Cluster.GatewayEndpoint.ToString(), "--manifest", Cluster.ManifestPath,
        };
        async Task<(int Exit, string Out, string Error)> Run(params string[] args)
        {
            var output = new StringWriter();
            var error = new StringWriter();
            var exit = await new ClientCli(new CliConsole(output, error, ErrorIsTerminal: false)).InvokeAsync([.. args, .. connection], CancellationToken.None);
            return (exit, output.ToString(), error.ToString());
        }

        Assert.Equal((0, "ok\n", ""), await Run("put", "cli-key", "cli value"));
        Assert.Equal((0, "cli value\n", ""), await Run("get", "cli-key"));
        Assert.Equal(0, (await Run("delete", "cli-key")).Exit);
        var missing = await Run("get", "cli-key");
        Assert.Equal(ExitCodes.NotFound, missing.Exit);
        Assert.Contains("not found", missing.Error, StringComparison.Ordinal);

        var status = await Run("status");
        Assert.Equal(0, status.Exit);
        for (var i = 0; i < 3; i++)
            Assert.Contains(string.Create(CultureInfo.InvariantCulture, $"replica {i}: view="), status.Out, StringComparison.Ordinal);
        // The client table: the CLI's identities hold records, and nothing was evicted (cap 100,000).
        Assert.Matches(new System.Text.RegularExpressions.Regex(" clients=[1-9][0-9]* horizon=0 "), status.Out);
    }

    [Fact]
    public async Task Bench_WithAKeySpace_WritesEveryKeyBeforeItMeasures()
    {
        var output = new StringWriter();
        var exit = await new ClientCli(new CliConsole(output, new StringWriter(), ErrorIsTerminal: false)).InvokeAsync(
            ["bench", "--clients", "3", "--seconds", "1", "--warmup", "0", "--keys", "50", "--payload", "5",
                "--gateway", Cluster.GatewayEndpoint.ToString(), "--manifest", Cluster.ManifestPath], CancellationToken.None);

        Assert.Equal(0, exit);
        Assert.Contains("bench: ops/s=", output.ToString(), StringComparison.Ordinal);
        using var client = new MinBftClient(Cluster.Client, Cluster.Manifest, new MinBftClientOptions { IdentityPoolSize = 1 });
        var kv = new KeyValueClient(client);
        for (var key = 0; key < 50; key++)
        {
            var value = await kv.GetAsync(string.Create(CultureInfo.InvariantCulture, $"bench-key-{key}"));
            Assert.True(value is { Length: 5 }, $"bench-key-{key} was not written");
        }
        Assert.Null(await kv.GetAsync("bench-key-50"));
    }

    [Fact]
    public async Task OneProxy_ServesEveryIdentityOfAClient_AndTheRepliesComeBackToIt()
    {
        // Probing only at start: however slow the machine, the client probes exactly once.
        using var client = new MinBftClient(Cluster.Client, Cluster.Manifest, new MinBftClientOptions { IdentityPoolSize = 4, ProbeAfterIdle = Timeout.InfiniteTimeSpan });
        var kv = new KeyValueClient(client);
        await Task.WhenAll(Enumerable.Range(0, 12).Select(i => kv.PutAsync("shared-proxy-" + i, [(byte)i])));
        for (var i = 0; i < 12; i++) Assert.Equal(new byte[] { (byte)i }, await kv.GetAsync("shared-proxy-" + i));

        var proxy = await Cluster.Client.GetGrain<IClientProxyGrain>(client.ProxyKey).GetStatus();
        Assert.Equal(1 + 24, proxy.Completed); // the probe before the first requests, then 12 puts and 12 gets
        Assert.Equal(0, proxy.InFlight);
        // Replicas answered the proxy the requests named, not proxies keyed by client id.
        foreach (var clientId in client.ClientIds)
        {
            var unused = await Cluster.Client.GetGrain<IClientProxyGrain>(clientId).GetStatus();
            Assert.Equal(0, unused.RepliesAccepted + unused.RepliesIgnored.Values.Sum());
        }
    }

    [Fact]
    public async Task FaultDomainSiloStopped_ClusterKeepsServing_RestartedReplicaCatchesUp()
    {
        using var client = new MinBftClient(Cluster.Client, Cluster.Manifest, new MinBftClientOptions { IdentityPoolSize = 2 });
        var kv = new KeyValueClient(client);
        await kv.PutAsync("before", [1]);

        await Cluster.StopSiloAsync(2);
        try
        {
            Assert.False(Cluster.IsSiloRunning(2));
            // f = 1: replicas 0 and 1 still make f+1 matching replies.
            await kv.PutAsync("during", [2]);
            Assert.Equal(new byte[] { 2 }, await kv.GetAsync("during"));
            var statuses = await Cluster.GetStatusesAsync(TimeSpan.FromSeconds(5));
            Assert.Null(statuses[2]);
        }
        finally
        {
            await Cluster.StartSiloAsync(2);
        }

        await Cluster.WaitForReplicasAsync(Deadline);
        await kv.PutAsync("after", [3]);
        await Conditions.WaitUntilAsync(async () =>
        {
            var statuses = await Cluster.GetStatusesAsync(TimeSpan.FromSeconds(5));
            var holds = statuses.All(s => s is not null)
                && statuses.Select(s => (s!.ExecutedSequence, s.StateDigest, s.HistoryDigest)).Distinct().Count() == 1;
            return (holds, string.Join("; ", statuses.Select((s, i) => s is null ? $"r{i} down" : $"r{i} executed={s.ExecutedSequence}")));
        }, Deadline, "replica 2 catching up with the others");
    }

    [Fact]
    public async Task StopAndStart_RejectInvalidDomainsAndStates()
    {
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => Cluster.StopSiloAsync(3));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => Cluster.StartSiloAsync(-1));
        await Assert.ThrowsAsync<InvalidOperationException>(() => Cluster.StartSiloAsync(0));
    }
}

/// <summary>A LocalCluster's files: keys generated once, reused with the stores after a restart.</summary>
public sealed class LocalClusterRestartTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("minbft-localcluster-restart-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public async Task SecondStart_ReusesTheKeys_RefusesAnotherF_FreshStartReplacesThem()
    {
        string manifest;
        await using (var first = await StartAsync(f: 1))
        {
            manifest = await File.ReadAllTextAsync(first.ManifestPath);
        }

        await using (var second = await StartAsync(f: 1))
        {
            Assert.Equal(manifest, await File.ReadAllTextAsync(second.ManifestPath));
            Assert.Equal(3, (await second.WaitForReplicasAsync(TimeSpan.FromSeconds(60))).Length);
        }

        // The data directory holds an f=1 deployment: another f is refused, not silently mixed.
        await using (var wrong = new LocalCluster(new LocalClusterOptions { F = 2, DataDirectory = _directory }.UseFreePorts()))
        {
            Assert.True(wrong.HasExistingState);
            var e = await Assert.ThrowsAsync<InvalidOperationException>(() => wrong.StartAsync());
            Assert.Contains("f=1", e.Message, StringComparison.Ordinal);
        }

        // A fresh start replaces keys and stores (and may change f), and leaves other files alone.
        var unrelated = Path.Combine(_directory, "notes.txt");
        await File.WriteAllTextAsync(unrelated, "keep me");
        await using var fresh = new LocalCluster(new LocalClusterOptions { F = 2, DataDirectory = _directory, FreshStart = true }.UseFreePorts());
        await fresh.StartAsync();
        Assert.Equal(5, fresh.Manifest.N);
        Assert.NotEqual(manifest, await File.ReadAllTextAsync(fresh.ManifestPath));
        Assert.True(File.Exists(unrelated));
    }

    [Fact]
    public async Task SecondStart_KeepsTheState()
    {
        await using (var first = await StartAsync(f: 1))
        {
            using var client = new MinBftClient(first.Client, first.Manifest, new MinBftClientOptions { IdentityPoolSize = 1 });
            await new KeyValueClient(client).PutAsync("durable", [42]);
        }

        await using var second = await StartAsync(f: 1);
        using var again = new MinBftClient(second.Client, second.Manifest, new MinBftClientOptions { IdentityPoolSize = 1 });
        Assert.Equal(new byte[] { 42 }, await new KeyValueClient(again).GetAsync("durable"));
    }

    [Fact]
    public async Task SecondStart_RestoresEachReplicaFromItsStoredCheckpointFile()
    {
        // Past the first checkpoint (64 positions; one request per position here), so every
        // replica stored one, with the service state in a file of its own.
        const int requests = 80;
        ulong executed;
        await using (var first = await StartAsync(f: 1))
        {
            using var client = new MinBftClient(first.Client, first.Manifest, new MinBftClientOptions { IdentityPoolSize = 1 });
            var kv = new KeyValueClient(client);
            for (var i = 0; i < requests; i++) await kv.PutAsync(string.Create(CultureInfo.InvariantCulture, $"key-{i}"), [(byte)i]);
            await Conditions.WaitUntilAsync(async () =>
            {
                var statuses = await first.GetStatusesAsync(TimeSpan.FromSeconds(5));
                var stored = Enumerable.Range(0, 3).Select(SnapshotFiles).ToArray();
                return (statuses.All(s => s is { StableCheckpoint: >= 64 }) && stored.All(f => f.Length == 1),
                    string.Join("; ", statuses.Select((s, i) => $"r{i} stable={s?.StableCheckpoint} files={stored[i].Length}")));
            }, TimeSpan.FromSeconds(60), "every replica storing its stable checkpoint");
            executed = (await first.GetStatusesAsync(TimeSpan.FromSeconds(5))).Min(s => s!.ExecutedSequence);
        }

        await using var second = await StartAsync(f: 1);
        // Each replica resumed from its checkpoint (not from the beginning: its journal is trimmed below it).
        var restarted = await second.GetStatusesAsync(TimeSpan.FromSeconds(5));
        Assert.All(restarted, s => Assert.True(s!.ExecutedSequence >= 64, $"replica {s.ReplicaId} restarted at {s.ExecutedSequence}"));
        using var again = new MinBftClient(second.Client, second.Manifest, new MinBftClientOptions { IdentityPoolSize = 1 });
        var reader = new KeyValueClient(again);
        for (var i = 0; i < requests; i += 7)
            Assert.Equal(new[] { (byte)i }, await reader.GetAsync(string.Create(CultureInfo.InvariantCulture, $"key-{i}")));
        Assert.True(executed >= requests);
    }

    private string[] SnapshotFiles(int domain)
    {
        var directory = Path.Combine(_directory, string.Create(CultureInfo.InvariantCulture, $"domain-{domain}"), string.Create(CultureInfo.InvariantCulture, $"minbft-domain-{domain}-checkpoints"));
        return Directory.Exists(directory) ? Directory.GetFiles(directory, "*.snapshot") : [];
    }

    private async Task<LocalCluster> StartAsync(int f)
    {
        var cluster = new LocalCluster(new LocalClusterOptions { F = f, DataDirectory = _directory }.UseFreePorts());
        try
        {
            await cluster.StartAsync();
            await cluster.WaitForReplicasAsync(TimeSpan.FromSeconds(60));
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }
}

/// <summary>
/// The README's USIG rotation procedure, end to end on a LocalCluster: the view-0 primary's USIG
/// loses its state, keygen --rotate-usig gives it a new identity, the manifest rolls to the other
/// domains one silo at a time, and the rotated domain starts again with an empty store.
/// </summary>
public sealed class LocalClusterUsigRotationTests : IDisposable
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(90);
    private readonly string _directory = Directory.CreateTempSubdirectory("minbft-localcluster-rotation-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task The_primarys_usig_is_rotated_the_cluster_moves_on_and_the_rotated_replica_catches_up_from_nothing(bool isolatedUsig)
    {
        await using var cluster = new LocalCluster(new LocalClusterOptions { F = 1, DataDirectory = _directory, IsolatedUsig = isolatedUsig }.UseFreePorts());
        await cluster.StartAsync();
        await cluster.WaitForReplicasAsync(Deadline);
        using var client = new MinBftClient(cluster.Client, cluster.Manifest, new MinBftClientOptions { IdentityPoolSize = 1 });
        var kv = new KeyValueClient(client);
        for (var i = 0; i < 5; i++) await kv.PutAsync($"before-{i}", [(byte)i]);

        // Domain 0 (the primary of view 0) loses its USIG state: its store goes with it.
        const int rotated = 0;
        var before = await cluster.GetStatusesAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(rotated, before[1]!.Primary);
        // An isolated USIG program's process is reported with its replica, for the bench's CPU count.
        for (var i = 0; i < cluster.N; i++)
            Assert.Equal(isolatedUsig ? $"{Environment.MachineName}:{cluster.UsigProcessOf(i)!.ProcessId}" : "", before[i]!.UsigProcess);
        await cluster.StopSiloAsync(rotated);
        Directory.Delete(Path.Combine(_directory, $"domain-{rotated}"), recursive: true);
        if (isolatedUsig)
        {
            cluster.KillUsig(rotated);
            Directory.Delete(Path.Combine(_directory, $"usig-{rotated}"), recursive: true);
        }

        // The operator reads status from the running replicas and rotates above what they show.
        var running = (await cluster.GetStatusesAsync(TimeSpan.FromSeconds(5))).OfType<ReplicaStatus>().ToList();
        Assert.Equal(2, running.Count);
        var firstView = running.Max(s => s.View) + cluster.N;
        var firstCheckpoint = running.Max(s => s.ExecutedSequence) + (ulong)cluster.Manifest.Watermark;
        var manifest = DeploymentKeys.RotateUsig(cluster.KeysDirectory, rotated, firstView, firstCheckpoint);
        Assert.Equal(2UL, manifest.Replica(rotated).UsigEpoch);
        cluster.ReloadManifest();

        // The manifest rolls to the other domains, one silo at a time...
        foreach (var domain in new[] { 1, 2 })
        {
            await cluster.StopSiloAsync(domain);
            await cluster.StartSiloAsync(domain);
        }
        // ...and the rotated domain starts empty, its USIG initialised for the new epoch (the
        // program with the new key keygen wrote, in isolated mode).
        cluster.InitializeUsigOnNextStart(rotated);
        if (isolatedUsig)
        {
            Directory.CreateDirectory(Path.Combine(_directory, $"usig-{rotated}"));
            await cluster.StartUsigAsync(rotated);
        }
        await cluster.StartSiloAsync(rotated);

        // The view moves past the retired identity's, the history is kept, new writes are ordered.
        await kv.PutAsync("after", [9]);
        for (var i = 0; i < 5; i++) Assert.Equal(new[] { (byte)i }, await kv.GetAsync($"before-{i}"));
        await Conditions.WaitUntilAsync(async () =>
        {
            var statuses = await cluster.GetStatusesAsync(TimeSpan.FromSeconds(5));
            var holds = statuses.All(s => s is not null && s.View >= 1)
                && statuses.Select(s => (s!.ExecutedSequence, s.StateDigest, s.HistoryDigest)).Distinct().Count() == 1;
            return (holds, string.Join("; ", statuses.Select((s, i) => s is null ? $"r{i} down" : $"r{i} view={s.View} executed={s.ExecutedSequence}")));
        }, Deadline, "the rotated replica catching up with the others in a later view");
        // Its messages are of the new epoch only: nothing of the old identity entered a stream as live.
        var after = await cluster.GetStatusesAsync(TimeSpan.FromSeconds(5));
        Assert.All(after, s => Assert.Equal(0, s!.Rejections.GetValueOrDefault(nameof(MinBft.Protocol.RejectReason.EpochNotForView))));
    }
}
