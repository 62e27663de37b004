using System.Collections.Concurrent;
using System.Diagnostics;
using MinBft.Application;
using Xunit.Abstractions;

namespace MinBft.Tests.Integration;

/// <summary>
/// Crash recovery on a TestingHost cluster with SQLite stores (each fault domain its own file):
/// a replica whose silo stops and starts again resumes from its stored checkpoint, catches up
/// (by state transfer when its peers have forgotten the history it missed) and ends with the
/// same state and history as the others; under load, restarting every silo in turn loses no
/// acknowledged write. K = 4 and W = 8 so that garbage collection runs all the time.
/// </summary>
public sealed class CrashRecoveryTests(ITestOutputHelper output)
{
    private static ClusterSetup Setup => new() { F = 1, CheckpointInterval = 4, Watermark = 8 };

    [Fact]
    public async Task A_backup_restarted_after_missing_many_requests_catches_up_and_agrees()
    {
        const int restarted = 2;
        const int missed = 120; // requests executed while it is down
        await using var cluster = await MinBftTestCluster.StartAsync(Setup, output);
        var all = Enumerable.Range(0, cluster.N).ToArray();
        var clients = Enumerable.Range(0, 4).Select(c => new TestClient(cluster, "b" + c)).ToArray();
        await Task.WhenAll(clients.Select(c => c.RunAsync(8)));
        await cluster.WaitForAgreementAsync(all);

        await cluster.StopDomainAsync(restarted);
        await Task.WhenAll(clients.Select(c => c.RunAsync(missed / clients.Length)));
        var others = await cluster.WaitForAgreementAsync([0, 1]);

        // No new load: the restarted replica must catch up on its own.
        var clock = Stopwatch.StartNew();
        await cluster.RestartDomainAsync(restarted);
        var caughtUp = await cluster.WaitForAgreementAsync(all, others[0].ExecutedSequence);
        var catchUp = clock.Elapsed;
        output.WriteLine($"catch-up after {missed} missed requests ({others[0].ExecutedSequence} batches in all): {catchUp.TotalMilliseconds:F0} ms from silo start to agreement");
        foreach (var s in caughtUp) output.WriteLine(MinBftTestCluster.Describe(s));
        Assert.Equal(caughtUp[0].HistoryDigest, caughtUp[restarted].HistoryDigest);

        // And it takes part again: with replica 0 stopped, requests need replica 2's commits.
        await cluster.StopDomainAsync(1);
        await Task.WhenAll(clients.Select(c => c.RunAsync(2)));
        await cluster.WaitForAgreementAsync([0, restarted], caughtUp[0].ExecutedSequence + 1);
    }

    [Fact]
    public async Task Rolling_restart_of_every_silo_under_load_loses_no_acknowledged_write()
    {
        await using var cluster = await MinBftTestCluster.StartAsync(Setup, output);
        var all = Enumerable.Range(0, cluster.N).ToArray();
        var clients = Enumerable.Range(0, 3).Select(c => new TestClient(cluster, "r" + c)).ToArray();
        // Per client: the last value a put was acknowledged for (its key is its own).
        var acknowledged = new ConcurrentDictionary<string, byte[]>();
        var completed = 0;
        using var stop = new CancellationTokenSource();
        var load = clients.Select(client => Task.Run(async () =>
        {
            for (var i = 0; !stop.IsCancellationRequested; i++)
            {
                var value = System.Text.Encoding.UTF8.GetBytes($"{client.Name}-{i}");
                Assert.Equal(KeyValueResult.Ok, await client.ExecuteAsync(KeyValueOperation.EncodePut("key-" + client.Name, value)));
                acknowledged[client.Name] = value;
                Interlocked.Increment(ref completed);
            }
        })).ToArray();

        async Task Progress(int requests, string what)
        {
            var target = Volatile.Read(ref completed) + requests;
            await MinBftTestCluster.UntilAsync(() => Task.FromResult(Volatile.Read(ref completed) >= target || load.Any(t => t.IsFaulted)), () => Volatile.Read(ref completed), what);
            if (load.FirstOrDefault(t => t.IsFaulted) is { } failed) await failed; // surface the client's failure
        }

        await Progress(20, "load started");
        foreach (var domain in all)
        {
            var atStop = await cluster.StatusesAsync(all);
            var view = atStop.Max(s => s.View);
            var primary = atStop.First(s => s.View == view).Primary;
            await cluster.StopDomainAsync(domain);
            // The primary's stop hands over to the next view: the backups suspect it as soon as
            // their request timers run out, which the test makes happen now.
            if (domain == primary) await cluster.ExpireRequestTimersAsync(all.Where(i => i != domain).ToArray(), view);
            await Progress(20, $"requests complete without domain {domain}");
            var before = await cluster.StatusesAsync(all.Where(i => i != domain));
            await cluster.RestartDomainAsync(domain);
            await cluster.WaitForReplicasAsync([domain]);
            // Caught up past where the others were at its restart, and the others' stable
            // checkpoint is far enough beyond that for them to count its stream again.
            var target = before.Max(s => s.ExecutedSequence);
            await cluster.WaitForStatusesAsync(all, statuses =>
            {
                Assert.All(statuses, s => Assert.Null(s.Halted));
                return statuses[domain].ExecutedSequence >= target
                    && statuses.Where(s => s.ReplicaId != domain).All(s => s.StableCheckpoint >= target + 2 * (4 + 8));
            }, $"replica {domain} caught up after its restart");
            cluster.Log($"domain {domain} restarted and caught up ({Volatile.Read(ref completed)} requests so far)");
        }

        await stop.CancelAsync();
        await Task.WhenAll(load);
        var statuses = await cluster.WaitForAgreementAsync(all);
        foreach (var s in statuses) output.WriteLine(MinBftTestCluster.Describe(s));
        output.WriteLine($"{completed} acknowledged writes, final view {statuses[0].View}");
        Assert.True(statuses[0].View >= 1, "the primary's restart handed over to a new view");
        foreach (var client in clients)
            Assert.Equal(KeyValueResult.OkWithValue(acknowledged[client.Name]), await client.ExecuteAsync(KeyValueOperation.EncodeGet("key-" + client.Name)));
    }
}
