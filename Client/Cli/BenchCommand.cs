using System.Diagnostics;
using System.Globalization;
using MinBft.Application;

namespace MinBft.Client.Cli;

/// <summary>
/// <c>bench</c>: <see cref="Clients"/> concurrent closed-loop writers put <see cref="PayloadBytes"/>-byte
/// values for <see cref="Duration"/> through MinBFT (every result verified), then report
/// throughput and latency. With <see cref="Baseline"/> the same workload runs against one plain,
/// unreplicated key-value grain in the same cluster, for comparison.
/// The last line is exactly <c>bench: ops/s=X p50_ms=Y p99_ms=Z</c>, followed with --baseline
/// by <c> baseline_ops/s=B ratio=R durable_baseline_ops/s=D</c> (R = X/B), and always by
/// <c> cpu_ms_per_op=C batch_avg=A</c>: C is the CPU time of every replica's silo process over the
/// MinBFT phase (read from the replicas' status, each process once) per completed operation, A the
/// operations per ordered batch. The line before it gives the bench process's own CPU per operation.
/// </summary>
public sealed record BenchCommand(ConnectionSettings Connection, int Clients, TimeSpan Duration, int PayloadBytes, bool Baseline) : ICliCommand
{
    public const string BaselineGrainKey = "bench-baseline";

    /// <summary>Unmeasured load before the MinBFT phase: right after start-up a silo still runs
    /// unoptimised code (tiered compilation), which inflated the first phase's CPU per operation
    /// several times.</summary>
    public TimeSpan Warmup { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>How many distinct keys the writers put, so how large the replicated state is.
    /// Null: 16 keys per writer, cycled over, so the state stays small however long the run. With a
    /// key space, every key is written once before the warm-up (unmeasured), so the measured
    /// phases run against a state of that size, as a service with real data would.</summary>
    public int? KeySpace { get; init; }

    private const int KeysPerClient = 16;

    public async Task<int> RunAsync(CliConsole console, CancellationToken cancellationToken) =>
        await CliErrors.GuardAsync(console, async () =>
        {
            await using var cluster = await ClusterConnection.ConnectAsync(Connection, console, cancellationToken).ConfigureAwait(false);
            using var client = cluster.CreateClient(Clients);
            var kv = new KeyValueClient(client);
            // One request first: activates proxies and replicas, so start-up is not measured.
            await kv.PutAsync("bench-warmup", [1], cancellationToken).ConfigureAwait(false);
            if (KeySpace is { } keySpace)
                await RunPhaseAsync("fill", console, op => client.ExecuteAsync(op, cancellationToken), cancellationToken, operationsPerWorker: worker => (keySpace - worker + Clients - 1) / Clients).ConfigureAwait(false);
            if (Warmup > TimeSpan.Zero)
                await RunPhaseAsync("warm-up", console, op => client.ExecuteAsync(op, cancellationToken), cancellationToken, Warmup).ConfigureAwait(false);

            var before = await ClusterCost.SampleAsync(cluster, cancellationToken).ConfigureAwait(false);
            var minbft = await RunPhaseAsync("minbft", console,
                op => client.ExecuteAsync(op, cancellationToken), cancellationToken).ConfigureAwait(false);
            var after = await ClusterCost.SampleAsync(cluster, cancellationToken).ConfigureAwait(false);
            var cost = ClusterCost.Between(before, after, minbft.Operations);
            var line = FormatLine(minbft);
            if (Baseline)
            {
                var grain = cluster.Client.GetGrain<IPlainKeyValueGrain>(BaselineGrainKey);
                await grain.Execute(KeyValueOperation.EncodePut("bench-warmup", [1])).WaitAsync(cancellationToken).ConfigureAwait(false);
                var plain = await RunPhaseAsync("baseline", console, op => grain.Execute(op), cancellationToken).ConfigureAwait(false);
                line += FormatBaseline(minbft, plain);
                // The same workload, each operation durable in fault domain 0's store before it answers.
                var durableGrain = cluster.Client.GetGrain<IDurableKeyValueGrain>(0);
                await durableGrain.Execute(KeyValueOperation.EncodePut("bench-warmup", [1])).WaitAsync(cancellationToken).ConfigureAwait(false);
                var durable = await RunPhaseAsync("durable baseline", console, op => durableGrain.Execute(op), cancellationToken).ConfigureAwait(false);
                line += string.Create(CultureInfo.InvariantCulture, $" durable_baseline_ops/s={durable.OpsPerSecond:F1}");
                var baselineErrors = plain.Errors + durable.Errors;
                if (baselineErrors > 0) minbft = minbft with { Errors = minbft.Errors + baselineErrors, FirstError = minbft.FirstError ?? plain.FirstError ?? durable.FirstError };
            }
            line += cost.Format();
            await console.Out.WriteLineAsync(cost.FormatClient()).ConfigureAwait(false);
            if (minbft.Errors > 0)
            {
                await console.Error.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                    $"bench: {minbft.Errors} operations failed; first error: {minbft.FirstError}")).ConfigureAwait(false);
            }
            await console.Out.WriteLineAsync(line).ConfigureAwait(false);
            return minbft.Errors == 0 && minbft.Operations > 0 ? ExitCodes.Ok : ExitCodes.Failed;
        }, cancellationToken).ConfigureAwait(false);

    public static string FormatLine(BenchResult result) => string.Create(CultureInfo.InvariantCulture,
        $"bench: ops/s={result.OpsPerSecond:F1} p50_ms={result.P50Ms:F2} p99_ms={result.P99Ms:F2}");

    public static string FormatBaseline(BenchResult minbft, BenchResult baseline) => string.Create(CultureInfo.InvariantCulture,
        $" baseline_ops/s={baseline.OpsPerSecond:F1} ratio={(baseline.OpsPerSecond > 0 ? minbft.OpsPerSecond / baseline.OpsPerSecond : 0):F3}");

    private async Task<BenchResult> RunPhaseAsync(
        string name, CliConsole console, Func<byte[], Task<byte[]>> execute, CancellationToken cancellationToken, TimeSpan? duration = null,
        Func<int, int>? operationsPerWorker = null)
    {
        var length = duration ?? Duration;
        var latencies = new List<double>[Clients];
        var completed = 0L;
        var errors = 0L;
        string? firstError = null;
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var watch = Stopwatch.StartNew();
        if (operationsPerWorker is null) stop.CancelAfter(length);

        var workers = Enumerable.Range(0, Clients).Select(worker => Task.Run(async () =>
        {
            var mine = latencies[worker] = new List<double>(1024);
            var value = new byte[PayloadBytes];
            Random.Shared.NextBytes(value);
            var keys = KeySpace is null
                ? Enumerable.Range(0, KeysPerClient)
                    .Select(k => KeyValueOperation.EncodePut(string.Create(CultureInfo.InvariantCulture, $"bench-{worker}-{k}"), value))
                    .ToArray()
                : null;
            var limit = operationsPerWorker?.Invoke(worker) ?? int.MaxValue;
            for (var i = 0; i < limit && !stop.IsCancellationRequested; i++)
            {
                var started = Stopwatch.GetTimestamp();
                try
                {
                    // With a key space, writer w puts keys w, w + clients, w + 2 clients, ...: the
                    // fill writes each key once, and later phases go round the space again.
                    var operation = keys is null
                        ? KeyValueOperation.EncodePut(KeyOf((worker + (long)i * Clients) % KeySpace!.Value), value)
                        : keys[i % KeysPerClient];
                    await execute(operation).ConfigureAwait(false);
                    mine.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
                    Interlocked.Increment(ref completed);
                }
                catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
                {
                    Interlocked.Increment(ref errors);
                    Interlocked.CompareExchange(ref firstError, $"{e.GetType().Name}: {e.Message}", null);
                }
            }
        }, CancellationToken.None)).ToArray();

        var all = Task.WhenAll(workers);
        using (var progress = new PeriodicTimer(TimeSpan.FromSeconds(1)))
        {
            while (!all.IsCompleted)
            {
                var tick = progress.WaitForNextTickAsync(CancellationToken.None).AsTask();
                await Task.WhenAny(all, tick).ConfigureAwait(false);
                if (all.IsCompleted) break;
                var seconds = watch.Elapsed.TotalSeconds;
                var of = operationsPerWorker is null ? string.Create(CultureInfo.InvariantCulture, $"/{length.TotalSeconds:F0}") : "";
                await console.Error.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                    $"bench {name}: {seconds:F0}{of} s ops={Interlocked.Read(ref completed)} ops/s={Interlocked.Read(ref completed) / seconds:F1} errors={Interlocked.Read(ref errors)}"))
                    .ConfigureAwait(false);
            }
        }
        await all.ConfigureAwait(false);
        cancellationToken.ThrowIfCancellationRequested();
        var elapsed = watch.Elapsed;

        var sorted = latencies.SelectMany(l => l).Order().ToArray();
        return new BenchResult(
            sorted.Length,
            errors,
            elapsed,
            sorted.Length / elapsed.TotalSeconds,
            Percentile(sorted, 0.50),
            Percentile(sorted, 0.99),
            firstError);
    }

    private static string KeyOf(long key) => string.Create(CultureInfo.InvariantCulture, $"bench-key-{key}");

    /// <summary>Nearest-rank percentile of sorted values; 0 for none.</summary>
    public static double Percentile(IReadOnlyList<double> sorted, double fraction)
    {
        if (sorted.Count == 0) return 0;
        var rank = (int)Math.Ceiling(fraction * sorted.Count);
        return sorted[Math.Clamp(rank - 1, 0, sorted.Count - 1)];
    }
}

/// <summary>One bench phase: completed operations, failures, throughput and latency percentiles.</summary>
public sealed record BenchResult(long Operations, long Errors, TimeSpan Elapsed, double OpsPerSecond, double P50Ms, double P99Ms, string? FirstError);
