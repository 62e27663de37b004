using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using MinBft.Hosting;
using Xunit;
using Xunit.Abstractions;

namespace MinBft.Tests.Integration;

/// <summary>The <c>MinBft</c> meter reports what the replicas did, checked against their status.</summary>
public sealed class MetricsTests(ITestOutputHelper output)
{
    [Fact]
    public async Task The_meter_counts_every_executed_request_once_per_replica_and_times_usig_storage_and_commits()
    {
        await using var cluster = await MinBftTestCluster.StartAsync(new ClusterSetup { F = 1 }, output);
        // Other test classes run clusters in this process at the same time: listen only to this
        // cluster's silos' meters.
        var meters = Enumerable.Range(0, cluster.N)
            .Select(i => cluster.SiloOf(i).ServiceProvider.GetRequiredService<MinBftMetrics>().Meter)
            .ToHashSet();
        var sums = new ConcurrentDictionary<(string Instrument, int Replica, string? Kind), double>();
        var counts = new ConcurrentDictionary<(string Instrument, int Replica, string? Kind), long>();
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) => { if (meters.Contains(instrument.Meter)) l.EnableMeasurementEvents(instrument); },
        };
        void Record(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            int replica = -1;
            string? kind = null;
            foreach (var tag in tags)
            {
                if (tag.Key == "replica") replica = (int)tag.Value!;
                else if (tag.Key is "kind" or "reason") kind = (string?)tag.Value;
            }
            var key = (instrument.Name, replica, kind);
            sums.AddOrUpdate(key, value, (_, s) => s + value);
            counts.AddOrUpdate(key, 1, (_, c) => c + 1);
        }
        listener.SetMeasurementEventCallback<long>((i, v, t, _) => Record(i, v, t));
        listener.SetMeasurementEventCallback<int>((i, v, t, _) => Record(i, v, t));
        listener.SetMeasurementEventCallback<double>((i, v, t, _) => Record(i, v, t));
        listener.Start();

        var clients = Enumerable.Range(0, 3).Select(c => new TestClient(cluster, "m" + c)).ToArray();
        var operations = (await Task.WhenAll(clients.Select(c => c.RunAsync(8)))).Sum();
        var statuses = await cluster.WaitForAgreementAsync([0, 1, 2]);

        double Sum(string instrument, int replica, string? kind = null) => sums.GetValueOrDefault((instrument, replica, kind));
        long Count(string instrument, int replica, string? kind = null) => counts.GetValueOrDefault((instrument, replica, kind));
        foreach (var status in statuses)
        {
            var r = status.ReplicaId;
            output.WriteLine($"r{r}: executed {Sum("minbft.requests.executed", r)} requests in {Count("minbft.batch.size", r)} batches; "
                + $"usig {Count("minbft.usig.latency", r)}x, log writes {Count("minbft.storage.write.latency", r, "log")}x, commits timed {Count("minbft.commit.latency", r)}x");
            // Exactly once per replica: every request the clients completed, none twice.
            Assert.Equal(operations, Sum("minbft.requests.executed", r));
            Assert.Equal(operations, Sum("minbft.batch.size", r));
            Assert.Equal((long)status.ExecutedSequence, Count("minbft.batch.size", r));
            Assert.True(Count("minbft.usig.latency", r) > 0, $"r{r} timed its USIG");
            Assert.True(Count("minbft.storage.write.latency", r, "log") > 0, $"r{r} timed its log writes");
            Assert.Equal(0, Count("minbft.view.changes", r));
            // Commit latency is the primary's: PREPARE sent to batch executed.
            if (r == status.Primary) Assert.Equal((long)status.ExecutedSequence, Count("minbft.commit.latency", r));
            else Assert.Equal(0, Count("minbft.commit.latency", r));
        }
        Assert.All(sums.Where(s => s.Key.Instrument.EndsWith("latency", StringComparison.Ordinal)), s => Assert.True(s.Value >= 0));
    }
}
