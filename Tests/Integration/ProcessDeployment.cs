using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using MinBft.Client;
using MinBft.Hosting;
using Orleans.Configuration;
using Orleans.Hosting;
using Xunit.Abstractions;

namespace MinBft.Tests.Integration;

/// <summary>Where a process deployment keeps membership and each fault domain's state.</summary>
internal enum ProcessStorage
{
    /// <summary>Redis clustering (no primary silo) and one Redis server per fault domain.</summary>
    Redis,

    /// <summary>
    /// Each fault domain on its embedded SQLite store, development clustering: the membership
    /// table lives in a silo process without fault domain (the primary silo of development
    /// clustering, which the tests never kill), and clients know the gateways statically.
    /// </summary>
    Sqlite,
}

/// <summary>
/// The processes of one deployment: Redis servers (membership, one per fault domain) or a
/// membership silo, the fault-domain silo processes, and the client host. Dispose stops all of
/// them by process id, whatever happened.
/// </summary>
internal sealed class ProcessDeployment : IDisposable
{
    private const int F = 1;
    private const int N = 2 * F + 1;

    private readonly ITestOutputHelper _output;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly List<RedisTestServer> _redis = [];
    private readonly List<SiloProcess> _silos = [];
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "minbft-proc-" + Guid.NewGuid().ToString("N"));
    private readonly string _clusterId = "minbft-proc-" + Guid.NewGuid().ToString("N")[..8];
    private string _membership = "";
    private IHost? _client;
    private bool _failed = true;
    private bool _isolatedUsig;
    private ProcessStorage _storage;
    private readonly List<UsigProcess> _usigs = [];
    // Development clustering: the membership silo, and every silo's gateway port for the client.
    private SiloProcess? _membershipSilo;
    private readonly List<int> _gatewayPorts = [];
    // Each fault domain's /healthz port (SQLite deployments).
    private readonly int[] _httpPorts = new int[N];

    private ProcessDeployment(ITestOutputHelper output) => _output = output;

    /// <summary>From launching the silo processes to every replica answering: how fast this machine is now.</summary>
    public TimeSpan Startup { get; private set; }

    private string ManifestPath => Path.Combine(_directory, "keys", DeploymentKeys.ManifestFileName);

    private IClusterClient Cluster => _client!.Services.GetRequiredService<IClusterClient>();

    public static async Task<ProcessDeployment> StartAsync(
        ITestOutputHelper output, int checkpointInterval, int watermark, CancellationToken cancellationToken, bool isolatedUsig = false, ProcessStorage storage = ProcessStorage.Redis)
    {
        var deployment = new ProcessDeployment(output) { _isolatedUsig = isolatedUsig, _storage = storage };
        try
        {
            await deployment.StartAllAsync(checkpointInterval, watermark, cancellationToken);
            return deployment;
        }
        catch
        {
            deployment.Dispose();
            throw;
        }
    }

    private void Log(string message) => _output.WriteLine($"[{_clock.Elapsed.TotalSeconds:F1}s] {message}");

    private async Task StartAllAsync(int checkpointInterval, int watermark, CancellationToken cancellationToken)
    {
        // With a TLS CA, as keygen makes them: every silo-to-silo and client connection below is mutual TLS.
        var manifest = DeploymentKeys.Generate(F, Path.Combine(_directory, "keys"), UsigScheme.Ed25519, checkpointInterval, watermark, tls: true);
        var sockets = new string?[N];
        if (_isolatedUsig)
        {
            // Each domain's USIG key moves out of the silo's key directory into the USIG program's:
            // a silo that still read domain-i/usig/ would fail to start.
            for (var domain = 0; domain < N; domain++)
            {
                var keys = DeploymentKeys.DomainDirectory(Path.Combine(_directory, "keys"), domain);
                var usigDirectory = Path.Combine(_directory, $"usig-{domain}");
                Directory.CreateDirectory(usigDirectory);
                var key = Path.Combine(usigDirectory, "usig.key");
                File.Move(DeploymentKeys.UsigKeyPath(manifest, keys), key);
                Directory.Delete(Path.GetDirectoryName(DeploymentKeys.UsigKeyPath(manifest, keys))!, recursive: true);
                var settings = new UsigProgramSettings(UsigProgramSettings.DefaultProgram, domain, manifest.Replica(domain).UsigEpoch,
                    Path.Combine(usigDirectory, "usig.state"), key, Path.Combine(usigDirectory, "usig.sock"));
                await UsigProcess.InitializeAsync(settings, cancellationToken);
                var usig = await UsigProcess.StartAsync(settings, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, TimeSpan.FromSeconds(60), cancellationToken);
                _usigs.Add(usig);
                sockets[domain] = settings.SocketPath;
            }
            Log("usig programs: " + string.Join(", ", _usigs.Select(u => $"usig-{u.Settings.ReplicaId} (pid {u.ProcessId})")));
        }

        var launched = Stopwatch.StartNew();
        string[] membership;
        IReadOnlyList<RedisTestServer> storage = [];
        if (_storage == ProcessStorage.Redis)
        {
            // The membership table: MINBFT_REDIS (keyed by this run's cluster id) or a server of its own.
            _membership = RedisTestEnvironment.SharedServer(out var ownMembership);
            if (ownMembership is not null) _redis.Add(ownMembership);
            storage = RedisTestServer.StartMany(N);
            _redis.AddRange(storage);
            Log($"redis: membership {_membership}, storage {string.Join(", ", storage.Select(s => $"{s.ConnectionString} (pid {s.ProcessId})"))}");
            membership = ["--clustering", "redis", "--redis-clustering", _membership, "--advertised-ip", "127.0.0.1"];
        }
        else
        {
            // Development clustering: a silo without fault domain holds the membership table
            // (and is a gateway); the fault-domain silos join through it.
            var membershipPort = FreePorts.Next();
            var membershipGateway = FreePorts.Next();
            _gatewayPorts.Add(membershipGateway);
            _membershipSilo = new SiloProcess("membership",
            [
                "--manifest", ManifestPath,
                "--clustering", "development",
                "--silo-port", membershipPort.ToString(CultureInfo.InvariantCulture),
                "--gateway-port", membershipGateway.ToString(CultureInfo.InvariantCulture),
                "--cluster-id", _clusterId, "--service-id", _clusterId,
            ], SiloEnvironment(), Path.Combine(_directory, "membership"));
            _membershipSilo.Start();
            var started = _membershipSilo;
            // The others join through it: wait until its gateway listens.
            await WaitUntilAsync(async () =>
            {
                Assert.True(started.IsRunning, "the membership silo exited:\n" + started.Tail());
                using var probe = new System.Net.Sockets.TcpClient();
                try
                {
                    await probe.ConnectAsync(System.Net.IPAddress.Loopback, membershipGateway, cancellationToken);
                    return (true, "listening");
                }
                catch (System.Net.Sockets.SocketException e)
                {
                    return (false, e.SocketErrorCode.ToString());
                }
            }, "the membership silo listens", cancellationToken, progress: () => started.LinesWritten);
            Log($"membership silo: {_membershipSilo}, silo port {membershipPort}, gateway {membershipGateway}");
            membership = ["--clustering", "development", "--primary-silo", $"127.0.0.1:{membershipPort.ToString(CultureInfo.InvariantCulture)}"];
        }

        for (var domain = 0; domain < N; domain++)
        {
            var gatewayPort = FreePorts.Next();
            _gatewayPorts.Add(gatewayPort);
            _httpPorts[domain] = FreePorts.Next();
            var silo = new SiloProcess(
                $"domain-{domain}",
                [
                    "--fault-domain", domain.ToString(CultureInfo.InvariantCulture),
                    "--manifest", ManifestPath,
                    .. membership,
                    .. (_storage == ProcessStorage.Redis
                        ? new[] { "--storage", "redis", "--redis-storage", storage[domain].ConnectionString }
                        : ["--storage", "sqlite", "--data", Path.Combine(_directory, $"domain-{domain}", "data")]),
                    "--silo-port", FreePorts.Next().ToString(CultureInfo.InvariantCulture),
                    "--gateway-port", gatewayPort.ToString(CultureInfo.InvariantCulture),
                    "--http-port", _httpPorts[domain].ToString(CultureInfo.InvariantCulture),
                    "--cluster-id", _clusterId, "--service-id", _clusterId,
                    // Isolated: every start (restarts too) talks to the domain's USIG program.
                    .. (sockets[domain] is { } socket ? new[] { "--usig", "unix:" + socket } : []),
                ],
                SiloEnvironment(),
                Path.Combine(_directory, $"domain-{domain}"))
            {
                FirstStartArguments = sockets[domain] is null ? ["--init-usig", "1"] : [],
            };
            _silos.Add(silo);
            silo.Start();
        }
        Log("silo processes: " + string.Join(", ", _silos));

        _client = await ConnectClientAsync(cancellationToken);
        Log("client connected through the " + (_storage == ProcessStorage.Redis ? "Redis membership table" : "static gateway list"));
        await WaitUntilAsync(async () =>
        {
            var statuses = await StatusesAsync();
            return (statuses.All(s => s is not null), Describe(statuses));
        }, "every replica answers", cancellationToken, progress: () => _silos.Sum(s => s.LinesWritten));
        Startup = launched.Elapsed;
        Log("all replicas answer");
    }

    /// <summary>Every silo's environment: configuration through the environment, as a deployment may do it.</summary>
    private Dictionary<string, string> SiloEnvironment() => new()
    {
        // A loaded machine's pauses make no view change. A deployment whose primary is
        // killed has backups suspect it sooner (a spurious view change there is harmless).
        ["MinBft__Protocol__RequestTimeout"] = _storage == ProcessStorage.Sqlite ? "00:00:05" : "00:00:20",
        ["MinBft__Protocol__ViewChangeTimeout"] = _storage == ProcessStorage.Sqlite ? "00:00:10" : "00:00:20",
        ["MinBft__Protocol__RetransmitInterval"] = "00:00:00.100",
        ["MinBft__ClientRetransmitInterval"] = "00:00:00.500",
        ["MinBft__ClientRetransmitMaxInterval"] = "00:00:02",
        ["MinBft__SafetyTickInterval"] = "00:00:00.250",
        ["MinBft__Host__Membership__ProbeTimeout"] = "00:00:01",
        ["MinBft__Host__Membership__NumMissedProbesLimit"] = "2",
        ["MinBft__Host__Membership__NumVotesForDeathDeclaration"] = "1",
        ["MinBft__Host__Membership__TableRefreshTimeout"] = "00:00:01",
        ["MinBft__Host__Membership__IAmAliveTablePublishTimeout"] = "00:00:02",
        // The directory's guard after a crash (default about 20 s): a killed process is gone for sure here.
        ["MinBft__Host__GrainDirectory__RangeLeaseDuration"] = "00:00:02",
        // Three silos and the tests share two cores: workstation GC keeps each small.
        ["DOTNET_gcServer"] = "0",
        ["DOTNET_ENVIRONMENT"] = "Production",
    };

    private async Task<IHost> ConnectClientAsync(CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        Exception? last = null;
        while (clock.Elapsed < TimeSpan.FromSeconds(40))
        {
            cancellationToken.ThrowIfCancellationRequested();
            var builder = new HostApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
            builder.Logging.ClearProviders();
            builder.UseOrleansClient(client =>
            {
                client.Configure<ClusterOptions>(o =>
                {
                    o.ClusterId = _clusterId;
                    o.ServiceId = _clusterId;
                });
                client.Configure<GatewayOptions>(o => o.GatewayListRefreshPeriod = TimeSpan.FromSeconds(1));
                // Development clustering has no table a client reads: it is given every gateway.
                if (_storage == ProcessStorage.Sqlite)
                    client.UseStaticClustering(_gatewayPorts.Select(p => new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, p)).ToArray());
                client.AddMinBftClient(o =>
                {
                    o.ManifestPath = ManifestPath;
                    o.Tls.CertificatePath = DeploymentCertificates.ClientCertificatePath(Path.Combine(_directory, "keys"), DeploymentCertificates.DefaultClientName);
                    if (_storage == ProcessStorage.Redis) o.RedisClustering = _membership;
                    o.IdentityPoolSize = 8;
                    o.RequestTimeout = TimeSpan.FromSeconds(30);
                    o.AttemptTimeout = TimeSpan.FromSeconds(4);
                    o.MaxAttempts = 20;
                });
            });
            var host = builder.Build();
            try
            {
                using var attempt = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                // A TLS handshake per connection on a loaded machine: give each attempt time.
                attempt.CancelAfter(TimeSpan.FromSeconds(15));
                await host.StartAsync(attempt.Token);
                return host;
            }
            catch (Exception e) when (!cancellationToken.IsCancellationRequested)
            {
                // No silo has published its gateway yet.
                last = e;
                Log($"client: {e.GetType().Name}: {e.Message}");
                host.Dispose();
                await Task.Delay(200, cancellationToken);
            }
        }
        throw new TimeoutException("the client found no gateway: " + last?.Message + "\n" + SiloLogs(), last);
    }

    /// <summary>
    /// Under a continuous load of puts: kill -9 of a backup's silo process (or, with
    /// <paramref name="killPrimary"/>, of the process of whichever replica is primary at that
    /// moment), load goes on without it (after a view change, for the primary), the process
    /// starts again from its stored state and catches up, and every acknowledged put reads back.
    /// </summary>
    public async Task RunKillAndRestartAsync(CancellationToken cancellationToken, bool killPrimary = false)
    {
        var statuses = (await StatusesAsync())!;
        var primary = statuses[0]!.Primary;
        var victim = Enumerable.Range(0, N).Last(i => i != primary);
        if (!killPrimary) Log($"view {statuses[0]!.View}, primary {primary}; the backup to kill: replica {victim}");
        var viewAtKill = -1L;

        var kv = _client!.Services.GetRequiredService<KeyValueClient>();
        var acknowledged = new ConcurrentDictionary<string, string>();
        var completions = 0;
        var failures = new ConcurrentQueue<string>();
        using var stopLoad = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var workers = Enumerable.Range(0, 8).Select(w => Task.Run(async () =>
        {
            for (var i = 0; !stopLoad.IsCancellationRequested; i++)
            {
                var key = string.Create(CultureInfo.InvariantCulture, $"w{w}-{i}");
                var value = string.Create(CultureInfo.InvariantCulture, $"value-{w}-{i}");
                try
                {
                    await kv.PutAsync(key, System.Text.Encoding.UTF8.GetBytes(value), stopLoad.Token);
                    acknowledged[key] = value;
                    Interlocked.Increment(ref completions);
                }
                catch (OperationCanceledException) when (stopLoad.IsCancellationRequested)
                {
                    return; // outcome unknown, never acknowledged
                }
                catch (Exception e)
                {
                    failures.Enqueue($"{key}: {e.GetType().Name}: {e.Message}");
                    return;
                }
            }
        }, CancellationToken.None)).ToArray();

        try
        {
            await WaitForCompletionsAsync(() => completions, 40, "before the kill", failures, cancellationToken);

            if (killPrimary)
            {
                // The primary now, under load: the view all three replicas are in (not changing),
                // asked of the replicas right before the kill, not assumed to be replica 0.
                ReplicaStatus?[] now = [];
                await WaitUntilAsync(async () =>
                {
                    now = await StatusesAsync();
                    var settled = now.All(s => s is not null && !s.ViewChanging && s.View == now[0]!.View);
                    return (settled, Describe(now));
                }, "the replicas agree on the current view", cancellationToken);
                viewAtKill = now[0]!.View;
                victim = now[0]!.Primary;
                Log($"view {viewAtKill}, primary {victim}: killing the primary's process");
            }
            var victimProcess = _silos[victim];
            victimProcess.Kill();
            var atKill = completions;
            var killedAt = _clock.Elapsed;
            Log($"SIGKILL {victimProcess} at {atKill} acknowledged writes");
            var survivors = Enumerable.Range(0, N).Where(i => i != victim).ToArray();

            if (killPrimary)
            {
                // The survivors suspect it (their request timers run out), change view, and order
                // again under a primary of their own.
                await WaitUntilAsync(async () =>
                {
                    var s = await Task.WhenAll(survivors.Select(StatusAsync));
                    var moved = s.All(x => x is not null && x.Halted is null && !x.ViewChanging && x.View > viewAtKill && x.View == s[0]!.View && x.Primary != victim);
                    return (moved, Describe(s));
                }, $"replicas {string.Join(",", survivors)} change to a view after {viewAtKill} without replica {victim}", cancellationToken, progress: () => completions);
                Log($"the survivors left view {viewAtKill} after {(_clock.Elapsed - killedAt).TotalSeconds:F1} s: " + Describe(await Task.WhenAll(survivors.Select(StatusAsync))));
            }
            await WaitForCompletionsAsync(() => completions, atKill + 40, killPrimary ? "in the new view while the old primary is down" : "while the backup is down", failures, cancellationToken);
            // Down for a few seconds at least: long enough for its peers to move well ahead.
            await WaitUntilAsync(
                () => Task.FromResult((_clock.Elapsed - killedAt >= TimeSpan.FromSeconds(4), $"{completions} writes acknowledged")),
                "a few seconds of load without the backup", cancellationToken);
            var whileDown = completions - atKill;

            victimProcess.Start();
            var atRestart = completions;
            Log($"restarted {victimProcess} after {(_clock.Elapsed - killedAt).TotalSeconds:F1} s down, {whileDown} writes acknowledged meanwhile");
            await WaitUntilAsync(async () =>
            {
                var s = await StatusAsync(victim);
                return (s is not null, s is null ? "no answer" : MinBftTestCluster.Describe(s));
            }, $"restarted replica {victim} answers", cancellationToken, progress: () => victimProcess.LinesWritten);
            Log("restarted replica answers");
            await WaitForCompletionsAsync(() => completions, atRestart + 40, "after the restart", failures, cancellationToken);
        }
        finally
        {
            await stopLoad.CancelAsync();
            await Task.WhenAll(workers).WaitAsync(TimeSpan.FromSeconds(10), CancellationToken.None);
        }
        Assert.True(failures.IsEmpty, "requests failed: " + string.Join("; ", failures.Take(5)));
        Log($"load stopped: {acknowledged.Count} acknowledged writes");

        // Agreement: all three at the same position with equal history and state.
        ReplicaStatus?[] final = [];
        await WaitUntilAsync(async () =>
        {
            final = await StatusesAsync();
            var ok = final.All(s => s is not null && s.Halted is null
                && s.ExecutedSequence == final[0]!.ExecutedSequence
                && s.HistoryDigest == final[0]!.HistoryDigest
                && s.StateDigest == final[0]!.StateDigest
                && (!killPrimary || s.View == final[0]!.View)
                && s.AwaitingUi == 0 && s.DurableSentCount == s.SentLogCount);
            return (ok, Describe(final));
        }, "the three replicas agree (restarted one included)", cancellationToken);
        foreach (var s in final) Log(MinBftTestCluster.Describe(s!));
        Assert.True(final[victim]!.ExecutedSequence > 0);
        if (killPrimary)
            Assert.All(final, s => Assert.True(s!.View > viewAtKill && s.Primary != victim, $"the replicas moved on from view {viewAtKill}: {MinBftTestCluster.Describe(s)}"));
        var mode = _isolatedUsig ? MinBftSilo.IsolatedUsigMode : MinBftSilo.InProcessUsigMode;
        Assert.All(final, s => Assert.Equal(mode, s!.UsigMode));
        Assert.All(_usigs, u => Assert.False(u.HasExited, $"USIG program {u.Settings.ReplicaId} is still up"));

        // No acknowledged write is lost: every one reads back (an ordered, f+1-verified read).
        var reads = acknowledged.ToArray();
        var checkedCount = 0;
        await Parallel.ForEachAsync(reads, new ParallelOptions { MaxDegreeOfParallelism = 8, CancellationToken = cancellationToken }, async (entry, token) =>
        {
            var stored = await kv.GetAsync(entry.Key, token);
            Assert.True(stored is not null, $"acknowledged write {entry.Key} is lost");
            Assert.Equal(entry.Value, System.Text.Encoding.UTF8.GetString(stored));
            Interlocked.Increment(ref checkedCount);
        });
        Log($"all {checkedCount} acknowledged writes read back");
        if (_storage == ProcessStorage.Sqlite) await CheckHealthzAsync(cancellationToken);
        _failed = false;
    }

    /// <summary>Every fault domain's <c>/healthz</c> (the silo host's HTTP endpoint) says Healthy once the replicas agree again.</summary>
    private async Task CheckHealthzAsync(CancellationToken cancellationToken)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        for (var domain = 0; domain < N; domain++)
        {
            var url = string.Create(CultureInfo.InvariantCulture, $"http://127.0.0.1:{_httpPorts[domain]}/healthz");
            var body = "";
            await WaitUntilAsync(async () =>
            {
                try
                {
                    using var response = await http.GetAsync(url, cancellationToken);
                    body = await response.Content.ReadAsStringAsync(cancellationToken);
                    return (response.StatusCode == System.Net.HttpStatusCode.OK && body.Contains("\"status\": \"Healthy\"", StringComparison.Ordinal), $"{(int)response.StatusCode}: {body}");
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
                {
                    return (false, e.Message);
                }
            }, $"{url} reports Healthy", cancellationToken);
            using var json = System.Text.Json.JsonDocument.Parse(body);
            var check = json.RootElement.GetProperty("checks").GetProperty("minbft");
            Assert.Equal("Healthy", check.GetProperty("status").GetString());
            Assert.Equal(domain.ToString(CultureInfo.InvariantCulture), check.GetProperty("replica").GetString());
        }
        Log("every fault domain's /healthz reports Healthy");
    }

    private async Task WaitForCompletionsAsync(Func<int> completions, int target, string phase, ConcurrentQueue<string> failures, CancellationToken cancellationToken) =>
        await WaitUntilAsync(() =>
        {
            if (!failures.IsEmpty) Assert.Fail($"requests failed {phase}: " + string.Join("; ", failures.Take(5)));
            return Task.FromResult((completions() >= target, $"{completions()} of {target} writes acknowledged"));
        }, $"{target} acknowledged writes {phase}", cancellationToken);

    private async Task<ReplicaStatus?> StatusAsync(int replica)
    {
        try
        {
            return await Cluster.GetGrain<IReplicaGrain>(replica).GetStatus().WaitAsync(TimeSpan.FromSeconds(3));
        }
        catch (Exception)
        {
            return null; // down, or still activating
        }
    }

    private async Task<ReplicaStatus?[]> StatusesAsync() => await Task.WhenAll(Enumerable.Range(0, N).Select(StatusAsync));

    private static string Describe(ReplicaStatus?[] statuses) =>
        string.Join("; ", statuses.Select((s, i) => s is null ? $"r{i}: no answer" : MinBftTestCluster.Describe(s)));

    /// <summary>
    /// Polls until <paramref name="condition"/> holds. Fails after <see cref="ProcessDeploymentTimeouts.Phase"/>
    /// without progress (what the condition observes changing, or <paramref name="progress"/>,
    /// e.g. a starting silo writing its log) or when the test's budget runs out: a stuck phase
    /// fails as before, a phase that a loaded machine slows down is not failed for being slow.
    /// </summary>
    private async Task WaitUntilAsync(Func<Task<(bool Holds, string Observed)>> condition, string what, CancellationToken cancellationToken, Func<long>? progress = null)
    {
        var idle = Stopwatch.StartNew();
        var observed = "(not evaluated)";
        var seen = progress?.Invoke();
        while (idle.Elapsed < ProcessDeploymentTimeouts.Phase)
        {
            if (cancellationToken.IsCancellationRequested) break;
            var (holds, now) = await condition();
            if (holds) return;
            if (now != observed || progress?.Invoke() != seen)
            {
                observed = now;
                seen = progress?.Invoke();
                idle.Restart();
            }
            try
            {
                await Task.Delay(100, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }
        Assert.Fail($"{(cancellationToken.IsCancellationRequested ? "the test's budget ran out" : $"no progress for {ProcessDeploymentTimeouts.Phase.TotalSeconds:F0} s")}: {what}; last observed: {observed}\n{SiloLogs()}");
    }

    private string SiloLogs() => string.Join("\n", _silos.Append(_membershipSilo).OfType<SiloProcess>().Select(s => $"--- {s} ---\n{s.Tail()}"));

    public void Dispose()
    {
        if (_failed)
        {
            _output.WriteLine(SiloLogs());
            // Keep the logs of a failed run.
            var kept = Path.Combine(Path.GetTempPath(), "minbft-proc-failed-logs");
            Directory.CreateDirectory(kept);
            foreach (var silo in _silos.Append(_membershipSilo).OfType<SiloProcess>())
            {
                var log = Path.Combine(silo.WorkingDirectory, silo.Name + ".log");
                if (File.Exists(log)) File.Copy(log, Path.Combine(kept, silo.Name + ".log"), overwrite: true);
            }
        }
        if (_client is { } client)
        {
            try
            {
                client.StopAsync().Wait(TimeSpan.FromSeconds(5));
            }
            catch (AggregateException)
            {
            }
            client.Dispose();
        }
        foreach (var silo in _silos) silo.Dispose();
        _membershipSilo?.Dispose();
        foreach (var usig in _usigs)
        {
            if (_failed) _output.WriteLine($"--- usig-{usig.Settings.ReplicaId} (pid {usig.ProcessId}) ---\n" + string.Join('\n', usig.Output.TakeLast(15)));
            usig.Dispose();
        }
        foreach (var redis in _redis) redis.Dispose();
        Log("stopped: " + string.Join(", ", _silos) + "; redis pids " + string.Join(",", _redis.Select(r => r.ProcessId)));
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

internal static class ProcessDeploymentTimeouts
{
    public static readonly TimeSpan Phase = TimeSpan.FromSeconds(25);
}
