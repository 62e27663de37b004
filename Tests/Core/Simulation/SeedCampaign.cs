using System.Diagnostics;
using MinBft.Protocol;
using Xunit.Abstractions;

namespace MinBft.Tests.Simulation;

/// <summary>
/// Runs one seeded scenario over a block of seeds. CI runs each scenario's fixed block; the
/// environment widens it for a long campaign (Tests/campaign.sh):
/// <list type="bullet">
/// <item><c>MINBFT_SEED=s</c> replays exactly seed s;</item>
/// <item><c>MINBFT_SEEDS=N</c> runs N seeds from the scenario's first seed;</item>
/// <item><c>MINBFT_SEED_OFFSET=k</c> starts k seeds after the scenario's first seed, so a long
/// block can be split into shards that run in parallel;</item>
/// <item><c>MINBFT_SIM_THREADS=t</c> runs t seeds at once (default: half the cores);</item>
/// <item><c>MINBFT_KEEP_GOING=1</c> runs every seed even after a failure and reports all failing
/// seeds at the end (the default stops at the first, with its trace).</item>
/// </list>
/// Every run prints a summary line starting with "campaign" (seeds, seeds per second, failures)
/// that the campaign script collects.
/// </summary>
internal sealed class SeedCampaign(string name, ITestOutputHelper output)
{
    private readonly Dictionary<RejectReason, long> _rejections = [];
    private long _events, _requests, _viewChanged, _maxView, _transfers, _restarts, _expired;

    /// <summary>Expired replies clients accepted over the passing seeds.</summary>
    public long ExpiredAccepted => _expired;

    public static int? ReplaySeed =>
        Environment.GetEnvironmentVariable("MINBFT_SEED") is { Length: > 0 } replay ? int.Parse(replay) : null;

    public static int SeedCount(int fallback) =>
        int.TryParse(Environment.GetEnvironmentVariable("MINBFT_SEEDS"), out var n) && n > 0 ? n : fallback;

    public static int SeedOffset =>
        int.TryParse(Environment.GetEnvironmentVariable("MINBFT_SEED_OFFSET"), out var k) && k > 0 ? k : 0;

    /// <summary>Seeds run at once: <c>MINBFT_SIM_THREADS</c>, or half the cores (the integration
    /// tests run beside these in their own process, and their clusters need the other half).</summary>
    public static int Threads =>
        int.TryParse(Environment.GetEnvironmentVariable("MINBFT_SIM_THREADS"), out var t) && t > 0 ? t : Math.Max(1, Environment.ProcessorCount / 2);

    private static bool KeepGoing => Environment.GetEnvironmentVariable("MINBFT_KEEP_GOING") is "1" or "true";

    /// <summary>Runs <paramref name="count"/> seeds from <paramref name="firstSeed"/> (or the
    /// environment's choice); <paramref name="check"/> may assert more about each finished run.</summary>
    public void Run(int firstSeed, int count, Func<int, SimulationOptions> optionsFor, Action<Simulation>? check = null)
    {
        var seeds = ReplaySeed is { } replay ? [replay] : Enumerable.Range(firstSeed + SeedOffset, SeedCount(count)).ToArray();
        var clock = Stopwatch.StartNew();
        var failed = new SortedDictionary<int, Exception>();
        var runs = 0;
        var gate = new object();
        // Each run is deterministic on its own and shares nothing with the others, so seeds run on
        // every core; what they report is gathered under one lock (the totals are sums, the same in
        // any order). Without MINBFT_KEEP_GOING no seed starts after the first failure, and the
        // lowest failing seed is the one reported.
        Parallel.ForEach(seeds, new ParallelOptions { MaxDegreeOfParallelism = Threads }, (seed, loop) =>
        {
            var sim = new Simulation(seed, optionsFor(seed));
            Exception? error = null;
            try
            {
                sim.Run();
            }
            catch (Exception e)
            {
                error = e;
            }
            lock (gate)
            {
                if (error is null)
                {
                    try
                    {
                        check?.Invoke(sim);
                    }
                    catch (Exception e)
                    {
                        error = e;
                    }
                }
                if (error is null)
                {
                    runs++;
                    Observe(sim);
                    return;
                }
                failed[seed] = error;
                output.WriteLine($"FAILED {name} seed={seed}: {FirstLine(error)}\n  replay: MINBFT_SEED={seed} dotnet test Tests/Core -c Release --filter \"FullyQualifiedName~{name}\"");
                if (!KeepGoing) loop.Stop();
            }
        });
        if (!KeepGoing && failed.Count > 0)
        {
            var (seed, error) = failed.First();
            throw new Xunit.Sdk.XunitException($"seed {seed} failed (replay: MINBFT_SEED={seed}):\n{error}");
        }
        var failures = failed.Select(f => $"{f.Key} ({FirstLine(f.Value)})").ToList();
        var total = runs + failures.Count;
        var seconds = clock.Elapsed.TotalSeconds;
        output.WriteLine($"campaign {name}: {total} seeds (from seed {seeds.FirstOrDefault()}) in {seconds:F1}s ({total / Math.Max(seconds, 1e-9):F1} seeds/s), {failures.Count} failed; " +
                         $"{_requests} requests completed, {_events} events, view changed in {_viewChanged} seeds (highest view {_maxView}), " +
                         $"{_transfers} snapshots installed, {_restarts} restarts, {_expired} Expired replies accepted");
        output.WriteLine("rejections by reason: " + string.Join(", ", _rejections.OrderBy(r => r.Key).Select(r => $"{r.Key}={r.Value}")));
        if (failures.Count > 0)
            throw new Xunit.Sdk.XunitException($"{failures.Count} of {total} seeds failed: {string.Join("; ", failures)}");
        Assert.True(runs > 0);
        Assert.True(_requests > 0, "the runs completed client requests");
    }

    private static string FirstLine(Exception e) => e.Message.Split('\n', 2)[0];

    private void Observe(Simulation sim)
    {
        _events += sim.EventsProcessed;
        _requests += sim.RequestsCompleted;
        _expired += sim.ExpiredAccepted;
        if (sim.MaxView > 0) _viewChanged++;
        _transfers += sim.StateTransfers;
        _restarts += sim.RestartsDone;
        _maxView = Math.Max(_maxView, sim.MaxView);
        foreach (var (reason, c) in sim.Rejections) _rejections[reason] = _rejections.GetValueOrDefault(reason) + c;
    }
}
