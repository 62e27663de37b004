using System.Globalization;
using StackExchange.Redis;
using Xunit.Abstractions;

namespace MinBft.Tests.Integration;

/// <summary>
/// TestingHost clusters whose fault domains keep their state in Redis (the official Orleans
/// Redis grain storage under provider "minbft"), instead of SQLite.
/// </summary>
public sealed class RedisStorageClusterTests(ITestOutputHelper output)
{
    /// <summary>
    /// The SQLite durability test (<see cref="UsigDurabilityTests"/>) on Redis: a backup's silo
    /// stops and starts again; its USIG goes on from the counter in Redis, never issuing a
    /// value twice, and its replica rejoins and catches up. The domains share one Redis server
    /// here (MINBFT_REDIS when set); the next test gives each its own.
    /// </summary>
    [RedisFact]
    public async Task Redis_storage_restarting_a_domain_never_reissues_a_counter_and_its_replica_catches_up()
    {
        const int restarted = 2; // a backup
        var redis = RedisTestEnvironment.SharedServer(out var owned);
        using var ownedServer = owned;
        await using var cluster = await MinBftTestCluster.StartAsync(
            new ClusterSetup { F = 1, Sqlite = false, RedisStorage = [redis, redis, redis] }, output);
        var all = Enumerable.Range(0, cluster.N).ToArray();
        var clients = Enumerable.Range(0, 3).Select(c => new TestClient(cluster, "r" + c)).ToArray();

        await Task.WhenAll(clients.Select(c => c.RunAsync(6)));
        var before = await cluster.WaitForAgreementAsync(all);
        var usigBefore = await cluster.Usig(restarted).GetIdentity();
        Assert.Equal(before[restarted].LastUiCounter, usigBefore.LastCounter);

        var stop = cluster.StopDomainAsync(restarted);
        var during = Task.WhenAll(clients.Select(c => c.RunAsync(4)));
        await stop;
        await during;
        var others = all.Where(i => i != restarted).ToArray();
        var withoutIt = await cluster.WaitForAgreementAsync(others, before[0].ExecutedSequence + 1);

        await cluster.RestartDomainAsync(restarted);
        await cluster.WaitForReplicasAsync([restarted]);
        await Task.WhenAll(clients.Select(c => c.RunAsync(4)));
        var after = await cluster.WaitForAgreementAsync(all, withoutIt[0].ExecutedSequence + 1);
        foreach (var s in after) output.WriteLine(MinBftTestCluster.Describe(s));

        var usigAfter = await cluster.Usig(restarted).GetIdentity();
        Assert.True(usigAfter.LastCounter > usigBefore.LastCounter, "the restarted USIG went on from its counter in Redis");
        Assert.Equal(after[restarted].LastUiCounter, usigAfter.LastCounter);
        AssertEveryCounterIssuedOnce(cluster, restarted, usigBefore.LastCounter);
    }

    /// <summary>
    /// Each fault domain on its own Redis server (started here, one process per domain): the
    /// replicas agree on concurrent clients' requests, and each server holds exactly its own
    /// domain's USIG and replica state.
    /// </summary>
    [RedisFact(ownServers: true)]
    public async Task Redis_storage_one_server_per_fault_domain_runs_requests_to_agreement()
    {
        var servers = RedisTestServer.StartMany(3);
        try
        {
            output.WriteLine("redis servers: " + string.Join(", ", servers.Select(s => $"{s.ConnectionString} (pid {s.ProcessId})")));
            await using var cluster = await MinBftTestCluster.StartAsync(
                new ClusterSetup { F = 1, Sqlite = false, RedisStorage = servers.Select(s => s.ConnectionString).ToArray() }, output);
            var all = Enumerable.Range(0, cluster.N).ToArray();
            var clients = Enumerable.Range(0, 4).Select(c => new TestClient(cluster, "p" + c)).ToArray();

            await Task.WhenAll(clients.Select(c => c.RunAsync(10)));
            var statuses = await cluster.WaitForAgreementAsync(all);
            foreach (var s in statuses) output.WriteLine(MinBftTestCluster.Describe(s));
            Assert.All(statuses, s => Assert.True(s.ExecutedSequence > 0));
            AssertEveryCounterIssuedOnce(cluster, restarted: null, 0);

            // Server i holds domain i's state and nothing of another domain.
            for (var domain = 0; domain < servers.Length; domain++)
            {
                using var connection = await ConnectionMultiplexer.ConnectAsync(servers[domain].ConnectionString);
                var keys = connection.GetServer(connection.GetEndPoints()[0]).Keys(pattern: "*").Select(k => k.ToString()).ToArray();
                output.WriteLine($"redis of domain {domain}: {string.Join(" ", keys.Order())}");
                var grains = keys.Select(GrainOf).ToArray();
                Assert.All(grains, g => Assert.Equal(domain.ToString(CultureInfo.InvariantCulture), g.Key));
                Assert.Contains(grains, g => g.Type.Contains("usig", StringComparison.OrdinalIgnoreCase));
                Assert.Contains(grains, g => g.Type.Contains("replica", StringComparison.OrdinalIgnoreCase));
            }
        }
        finally
        {
            foreach (var server in servers) server.Dispose();
        }
    }

    /// <summary>"{service id}/state/{grain type}/{grain key}/{state name}" → (type, key).</summary>
    private static (string Type, string Key) GrainOf(string redisKey)
    {
        var parts = redisKey.Split('/');
        var state = Array.IndexOf(parts, "state");
        Assert.True(state >= 0 && parts.Length >= state + 3, $"unexpected Redis key {redisKey}");
        return (parts[state + 1], parts[state + 2]);
    }

    private static void AssertEveryCounterIssuedOnce(MinBftTestCluster cluster, int? restarted, ulong counterBeforeRestart)
    {
        var issued = cluster.IssuedUis.ToArray();
        Assert.NotEmpty(issued);
        foreach (var byReplica in issued.GroupBy(u => u.Replica))
        {
            foreach (var byCounter in byReplica.GroupBy(u => u.Counter))
                Assert.True(byCounter.Select(u => u.Digest).Distinct().Count() == 1, $"USIG {byReplica.Key} issued counter {byCounter.Key} for two digests");
            var counters = byReplica.Select(u => u.Counter).Distinct().Order().ToArray();
            Assert.Equal(Enumerable.Range(1, counters.Length).Select(c => (ulong)c), counters);
        }
        if (restarted is { } r) Assert.Contains(issued, u => u.Replica == r && u.Counter > counterBeforeRestart);
    }
}
