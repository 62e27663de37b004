using System.Globalization;
using MinBft.Application;
using MinBft.Hosting;

namespace MinBft.Client.Cli;

/// <summary>
/// <c>demo</c>: starts a <see cref="LocalCluster"/> of 2f+1 fault domains in a temporary
/// directory, runs <see cref="Requests"/> key-value operations from <see cref="Clients"/>
/// concurrent clients, checks every verified result against a model of what it must be, then
/// checks that every replica reports the same executed sequence, history and state digest,
/// and that digest is the digest of the expected state. With <see cref="CrashPrimary"/> the
/// silo of the replica that is primary at that moment (asked of the replicas, not assumed to be
/// domain 0) is stopped halfway through: the other replicas must change
/// view and finish the run, and the demo reports how long the first request issued after the
/// crash took. The last line is
/// <c>demo ok: requests=N replicas=R view=V digest=HEX usig=MODE</c> (exit 0), or the reason it failed.
/// </summary>
public sealed record DemoCommand(int F, int Requests, int Clients, bool CrashPrimary = false) : ICliCommand
{
    /// <summary>Each domain's USIG as a separate USIG program (child processes) instead of in-process.</summary>
    public bool IsolatedUsig { get; init; }

    public async Task<int> RunAsync(CliConsole console, CancellationToken cancellationToken)
    {
        DemoOutcome outcome;
        try
        {
            outcome = await new DemoRunner(this, console).RunAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            await console.Error.WriteLineAsync("demo interrupted").ConfigureAwait(false);
            return ExitCodes.Interrupted;
        }
        if (outcome.Ok)
        {
            await console.Out.WriteLineAsync(outcome.Summary).ConfigureAwait(false);
            return ExitCodes.Ok;
        }
        await console.Error.WriteLineAsync(outcome.Summary).ConfigureAwait(false);
        return ExitCodes.Failed;
    }
}

/// <summary>The demo's verdict: <see cref="Summary"/> is its last line.</summary>
public sealed record DemoOutcome(bool Ok, string Summary, long View = 0, string? Digest = null);

/// <summary>The demo's logic, separate from the console so tests can run it against their own ports.</summary>
public sealed class DemoRunner(DemoCommand settings, CliConsole console)
{
    // Few keys per client: operations collide on keys, so gets, CAS and deletes see real state.
    private const int KeysPerClient = 4;

    /// <summary>Ports of the demo's cluster; null picks free ones.</summary>
    public (int SiloPort, int GatewayPort)? Ports { get; init; }

    /// <summary>How long to wait for the cluster to come up and for backups to catch up.</summary>
    public TimeSpan SettleTimeout { get; init; } = TimeSpan.FromSeconds(60);

    public async Task<DemoOutcome> RunAsync(CancellationToken cancellationToken)
    {
        var directory = Directory.CreateTempSubdirectory("minbft-demo-").FullName;
        // Disposed after the cluster (declared first): the last spans are flushed once it stopped.
        using var telemetry = DemoTelemetry.StartIfConfigured();
        try
        {
            var options = new LocalClusterOptions
            {
                F = settings.F,
                DataDirectory = directory,
                IsolatedUsig = settings.IsolatedUsig,
                // Spans and their propagation across grain calls only when they are exported.
                ConfigureMinBft = minBft => minBft.Tracing = telemetry is not null,
                ConfigureLogging = logging =>
                {
                    CliLogging.Configure(logging, console.Verbose);
                    // A deliberate crash makes Orleans log every message addressed to the stopped
                    // silo; that is the point of the run, not an error worth a screenful.
                    if (settings.CrashPrimary && !console.Verbose)
                        foreach (var category in new[] { "Orleans.Messaging", "Polly" })
                            Microsoft.Extensions.Logging.FilterLoggingBuilderExtensions.AddFilter(logging, category, Microsoft.Extensions.Logging.LogLevel.None);
                },
            };
            // Free ports: the demo must not collide with a running 'Silo local' on the defaults.
            if (Ports is var (siloPort, gatewayPort))
            {
                options.SiloPort = siloPort;
                options.GatewayPort = gatewayPort;
            }
            else
            {
                options.UseFreePorts();
            }
            await console.Error.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                $"demo: starting a local cluster, f={settings.F} n={2 * settings.F + 1}, usig={(settings.IsolatedUsig ? MinBftSilo.IsolatedUsigMode : MinBftSilo.InProcessUsigMode)}, transport={LocalCluster.Transport}, in {directory}")).ConfigureAwait(false);
            if (telemetry is not null)
                await console.Error.WriteLineAsync("demo: exporting traces and metrics over OTLP to " + Environment.GetEnvironmentVariable("OTEL_EXPORTER_OTLP_ENDPOINT")).ConfigureAwait(false);
            await using var cluster = new LocalCluster(options);
            await cluster.StartAsync(cancellationToken).ConfigureAwait(false);
            await cluster.WaitForReplicasAsync(SettleTimeout, cancellationToken).ConfigureAwait(false);

            using var client = new MinBftClient(
                cluster.Client, cluster.Manifest, new MinBftClientOptions { IdentityPoolSize = settings.Clients, Tracing = telemetry is not null });
            var kv = new KeyValueClient(client);
            var failure = await RunWorkloadAsync(kv, cluster, cancellationToken).ConfigureAwait(false);
            if (failure is not null) return new DemoOutcome(false, "demo failed: " + failure.Reason);
            if (_crash is { } crash)
            {
                await crash.ConfigureAwait(false);
                var (stopped, view) = await crash.ConfigureAwait(false);
                await console.Error.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                    $"demo: the primary, replica {stopped} (view {view}), stopped with its silo after {settings.Requests / 2} requests; longest pause between completed requests after it stopped (the view change): {LongestPauseAfterCrash()?.TotalMilliseconds:F0} ms")).ConfigureAwait(false);
            }

            return await CheckReplicasAsync(cluster, ExpectedDigest(), cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is TimeoutException or MinBftException or InvalidOperationException or IOException)
        {
            return new DemoOutcome(false, $"demo failed: {e.Message}");
        }
        finally
        {
            TryDelete(directory);
        }
    }

    // --crash-primary: the stop of the primary's silo, when it ended, and when requests completed.
    // The second half of the run waits for the stop to end. A graceful stop lets the old primary
    // order what arrives meanwhile; a run that ended then would need no view change at all, since a
    // backup suspects its primary only for a request the primary holds up (rule 7.1). The figure
    // that measures the view change is the longest pause between completions after the stop.
    private Task<(int Replica, long View)>? _crash;
    private int? _crashedReplica;
    private long _viewAtCrash;
    private long _crashStarted;
    private readonly List<long> _completions = [];

    /// <summary>Longest pause between completed requests after the crash began (null: no crash).</summary>
    public TimeSpan? LongestPauseAfterCrash()
    {
        if (Interlocked.Read(ref _crashStarted) == 0) return null;
        lock (_completions)
        {
            var after = _completions.Where(t => t >= _crashStarted).Order().Prepend(_crashStarted).ToList();
            var longest = 0L;
            for (var i = 1; i < after.Count; i++) longest = Math.Max(longest, after[i] - after[i - 1]);
            return TimeSpan.FromSeconds(longest / (double)System.Diagnostics.Stopwatch.Frequency);
        }
    }

    private readonly Dictionary<string, byte[]>[] _models =
        Enumerable.Range(0, settings.Clients).Select(_ => new Dictionary<string, byte[]>(StringComparer.Ordinal)).ToArray();

    private sealed record Failure(string Reason);

    /// <summary>Runs the operations; null if every result was what the model predicted.</summary>
    private async Task<Failure?> RunWorkloadAsync(KeyValueClient kv, LocalCluster cluster, CancellationToken cancellationToken)
    {
        var done = 0;
        var progress = new ProgressBar(console, settings.Requests);
        var seed = Random.Shared.Next();
        var workers = Enumerable.Range(0, settings.Clients).Select(worker => Task.Run(async () =>
        {
            // Each client owns its keys, so its model predicts every result exactly.
            var model = _models[worker];
            var random = new Random(seed + worker);
            var share = settings.Requests / settings.Clients + (worker < settings.Requests % settings.Clients ? 1 : 0);
            for (var i = 0; i < share; i++)
            {
                if (Volatile.Read(ref _crash) is { } stopping) await stopping.ConfigureAwait(false);
                var key = string.Create(CultureInfo.InvariantCulture, $"c{worker}-k{random.Next(KeysPerClient)}");
                var value = System.Text.Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture, $"v{worker}.{i}"));
                model.TryGetValue(key, out var current);
                var where = string.Create(CultureInfo.InvariantCulture, $"client {worker} operation {i} on {key}");
                switch (random.Next(10))
                {
                    case < 4:
                        await kv.PutAsync(key, value, cancellationToken).ConfigureAwait(false);
                        model[key] = value;
                        break;
                    case < 7:
                        var read = await kv.GetAsync(key, cancellationToken).ConfigureAwait(false);
                        if (!Same(read, current)) return new Failure($"{where}: get returned {Show(read)}, expected {Show(current)}");
                        break;
                    case < 9:
                        // Half the time the expected value is right, half the time deliberately wrong.
                        var expected = random.Next(2) == 0 ? current : [0xEE];
                        var cas = await kv.CompareAndSetAsync(key, expected, value, cancellationToken).ConfigureAwait(false);
                        var shouldSucceed = Same(expected, current);
                        if (cas.Succeeded != shouldSucceed || (!cas.Succeeded && !Same(cas.Current, current)))
                            return new Failure($"{where}: compare-and-set returned {(cas.Succeeded ? "success" : "mismatch " + Show(cas.Current))}, expected {(shouldSucceed ? "success" : "mismatch " + Show(current))}");
                        if (cas.Succeeded) model[key] = value;
                        break;
                    default:
                        var existed = await kv.DeleteAsync(key, cancellationToken).ConfigureAwait(false);
                        if (existed != (current is not null)) return new Failure($"{where}: delete returned {existed}, expected {current is not null}");
                        model.Remove(key);
                        break;
                }
                var completed = Interlocked.Increment(ref done);
                progress.Report(completed);
                lock (_completions) _completions.Add(System.Diagnostics.Stopwatch.GetTimestamp());
                if (settings.CrashPrimary && completed == settings.Requests / 2)
                {
                    Volatile.Write(ref _crash, CrashPrimaryAsync(cluster));
                }
            }
            return null;
        }, CancellationToken.None)).ToArray();

        var results = await Task.WhenAll(workers).ConfigureAwait(false);
        await progress.CompleteAsync().ConfigureAwait(false);
        return results.FirstOrDefault(r => r is not null);
    }

    /// <summary>
    /// Stops the silo of the replica that is primary now: the view most replicas report names it
    /// (after an earlier view change it is not domain 0).
    /// </summary>
    private async Task<(int Replica, long View)> CrashPrimaryAsync(LocalCluster cluster)
    {
        var statuses = await cluster.GetStatusesAsync(TimeSpan.FromSeconds(5), CancellationToken.None).ConfigureAwait(false);
        var view = statuses.Where(s => s is not null).GroupBy(s => s!.View).OrderByDescending(g => g.Count()).ThenByDescending(g => g.Key)
            .Select(g => g.Key).FirstOrDefault();
        var primary = (int)(view % statuses.Length);
        _viewAtCrash = view;
        _crashedReplica = primary;
        await cluster.StopSiloAsync(primary, CancellationToken.None).ConfigureAwait(false);
        Interlocked.Exchange(ref _crashStarted, System.Diagnostics.Stopwatch.GetTimestamp());
        return (primary, view);
    }

    /// <summary>The statuses of the replicas still running (all but the stopped primary's).</summary>
    private ReplicaStatus?[] Live(ReplicaStatus?[] statuses) =>
        _crashedReplica is { } stopped ? statuses.Where((_, i) => i != stopped).ToArray() : statuses;

    /// <summary>The digest the replicas must report: that of a state holding exactly the models' entries.</summary>
    private string ExpectedDigest()
    {
        var expected = new KeyValueStateMachine();
        foreach (var model in _models)
            foreach (var (key, value) in model)
                expected.Apply(KeyValueOperation.EncodePut(key, value));
        return Convert.ToHexString(expected.Digest());
    }

    /// <summary>Waits until every replica reports the same progress and digest, the expected one.</summary>
    private async Task<DemoOutcome> CheckReplicasAsync(LocalCluster cluster, string expectedDigest, CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(SettleTimeout);
        ReplicaStatus?[] statuses = [];
        string? problem = null;
        try
        {
            while (true)
            {
                // Backups may still be executing the last batches the client already has f+1 replies for.
                statuses = await cluster.GetStatusesAsync(TimeSpan.FromSeconds(5), deadline.Token).ConfigureAwait(false);
                problem = Disagreement(Live(statuses), expectedDigest);
                if (problem is null) break;
                await Task.Delay(TimeSpan.FromMilliseconds(100), deadline.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return new DemoOutcome(false, $"demo failed: replicas did not agree within {SettleTimeout}: {problem}");
        }

        var live = Live(statuses);
        var first = live[0]!;
        if (_crashedReplica is not null && first.View <= _viewAtCrash)
            return new DemoOutcome(false, $"demo failed: the primary crashed but the live replicas are still in view {first.View}");
        return new DemoOutcome(
            true,
            string.Create(CultureInfo.InvariantCulture,
                $"demo ok: requests={settings.Requests} replicas={live.Length} view={first.View} digest={first.StateDigest} usig={first.UsigMode}"),
            first.View,
            first.StateDigest);
    }

    private static string? Disagreement(ReplicaStatus?[] statuses, string expectedDigest)
    {
        for (var i = 0; i < statuses.Length; i++)
        {
            if (statuses[i] is not { } s) return string.Create(CultureInfo.InvariantCulture, $"replica {i} does not answer");
            if (s.Halted is not null) return string.Create(CultureInfo.InvariantCulture, $"replica {i} halted: {s.Halted}");
        }
        var all = statuses.Select(s => s!).ToArray();
        var first = all[0];
        foreach (var s in all)
        {
            if (s.ExecutedSequence != first.ExecutedSequence || s.View != first.View || !string.Equals(s.HistoryDigest, first.HistoryDigest, StringComparison.OrdinalIgnoreCase))
                return "replicas differ: " + string.Join("; ", all.Select(x => string.Create(CultureInfo.InvariantCulture, $"r{x.ReplicaId} view={x.View} executed={x.ExecutedSequence}")));
        }
        foreach (var s in all)
        {
            if (!string.Equals(s.StateDigest, expectedDigest, StringComparison.OrdinalIgnoreCase))
                return string.Create(CultureInfo.InvariantCulture, $"replica {s.ReplicaId} state digest {s.StateDigest} is not the expected {expectedDigest}");
        }
        return null;
    }

    private static bool Same(byte[]? a, byte[]? b) => a is null ? b is null : b is not null && a.AsSpan().SequenceEqual(b);

    private static string Show(byte[]? value) => value is null ? "(absent)" : "'" + System.Text.Encoding.UTF8.GetString(value) + "'";

    private static void TryDelete(string directory)
    {
        try
        {
            Directory.Delete(directory, recursive: true);
        }
        catch (IOException)
        {
            // A temp directory left behind is harmless.
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
