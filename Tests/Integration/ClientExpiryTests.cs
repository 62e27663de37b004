using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using MinBft.Application;
using MinBft.Client;
using MinBft.Hosting;
using Xunit.Abstractions;

namespace MinBft.Tests.Integration;

/// <summary>
/// The bounded client table on a real cluster (CLIENT-SESSIONS-DESIGN.md): a manifest cap of two
/// records, clients that come and go, and what the SDK does when its identity was evicted.
/// </summary>
public sealed class ClientExpiryTests(ITestOutputHelper output)
{
    private static readonly int[] All = [0, 1, 2];

    private static byte[] Put(string key, string value) => KeyValueOperation.EncodePut(key, System.Text.Encoding.UTF8.GetBytes(value));

    private static async Task<KeyValueResult> GetAsync(MinBftClient client, string key)
    {
        Assert.True(KeyValueResult.TryDecode(await client.ExecuteAsync(KeyValueOperation.EncodeGet(key)), out var result));
        return result;
    }

    /// <summary>Three one-identity clients each run a request: with a cap of two, whoever was
    /// active before them is evicted.</summary>
    private static async Task CrowdOutAsync(MinBftTestCluster cluster, string tag)
    {
        for (var i = 0; i < 3; i++)
        {
            using var other = new MinBftClient(cluster.Grains, cluster.Manifest, new MinBftClientOptions { IdentityPoolSize = 1 });
            await other.ExecuteAsync(Put($"{tag}-{i}", "x"));
        }
    }

    [Fact]
    public async Task An_identity_evicted_while_idle_is_admitted_again_and_a_request_that_met_the_eviction_is_reported_expired_and_did_not_run()
    {
        await using var cluster = await MinBftTestCluster.StartAsync(new ClusterSetup { F = 1, Sqlite = false, MaxClientRecords = 2 }, output);
        // The meter's eviction counter, from this cluster's silos only (other tests run clusters in this process).
        var meters = Enumerable.Range(0, cluster.N).Select(i => cluster.SiloOf(i).ServiceProvider.GetRequiredService<MinBftMetrics>().Meter).ToHashSet();
        var evicted = new ConcurrentDictionary<int, long>();
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) => { if (meters.Contains(instrument.Meter) && instrument.Name == "minbft.client.evictions") l.EnableMeasurementEvents(instrument); },
        };
        listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
        {
            foreach (var tag in tags)
                if (tag.Key == "replica") evicted.AddOrUpdate((int)tag.Value!, value, (_, sum) => sum + value);
        });
        listener.Start();

        // Client A probes whenever it was idle at all: after an eviction its probe meets Expired,
        // learns a fresh position, and the request itself is admitted. No error reaches the caller.
        using var a = new MinBftClient(cluster.Grains, cluster.Manifest,
            new MinBftClientOptions { IdentityPoolSize = 1, ProbeAfterIdle = TimeSpan.FromTicks(1) });
        await a.ExecuteAsync(Put("a", "1"));
        await CrowdOutAsync(cluster, "after-a");
        var statuses = await cluster.WaitForStatusesAsync(All, s => s.All(r => r.ExpiryHorizon > 0), "a record evicted at every replica");
        Assert.All(statuses, s => Assert.True(s.ClientRecords <= 2, $"replica {s.ReplicaId} holds {s.ClientRecords} records"));
        var admitted = await a.ExecuteVerifiedAsync(Put("a", "2"));
        Assert.Equal(MinBft.Messages.ReplyStatus.Executed, admitted.Status);
        Assert.Equal(KeyValueResult.OkWithValue("2"u8.ToArray()).Encode(), (await GetAsync(a, "a")).Encode());

        // Client B never probes after its start: its next request after the eviction carries its
        // own last position, below the horizon. The cluster answers Expired, the SDK says the
        // outcome is unknown, and here it did not run; the client's next request is admitted.
        using var b = new MinBftClient(cluster.Grains, cluster.Manifest,
            new MinBftClientOptions { IdentityPoolSize = 1, ProbeAfterIdle = Timeout.InfiniteTimeSpan });
        await b.ExecuteAsync(Put("b", "1"));
        var horizon = (await cluster.StatusesAsync(All)).Max(s => s.ExpiryHorizon);
        await CrowdOutAsync(cluster, "after-b");
        await cluster.WaitForStatusesAsync(All, s => s.All(r => r.ExpiryHorizon > horizon), "b's record evicted at every replica");
        var expired = await Assert.ThrowsAsync<MinBftRequestExpiredException>(() => b.ExecuteAsync(Put("b", "2")));
        output.WriteLine(expired.Message);
        Assert.Equal(b.ClientIds[0], expired.ClientId);
        Assert.True(expired.Position > horizon);
        Assert.Equal(KeyValueResult.OkWithValue("1"u8.ToArray()).Encode(), (await GetAsync(b, "b")).Encode());
        await b.ExecuteAsync(Put("b", "3"));
        Assert.Equal(KeyValueResult.OkWithValue("3"u8.ToArray()).Encode(), (await GetAsync(b, "b")).Encode());

        var end = await cluster.WaitForAgreementAsync(All);
        Assert.All(end, s =>
        {
            Assert.True(s.ClientRecords <= 2, $"replica {s.ReplicaId} holds {s.ClientRecords} records");
            Assert.True(s.ClientEvictions > 0);
            Assert.Equal(s.ClientEvictions, evicted.GetValueOrDefault(s.ReplicaId));
        });
    }
}
