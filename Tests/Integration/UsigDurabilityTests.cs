using Xunit.Abstractions;

namespace MinBft.Tests.Integration;

/// <summary>
/// A fault domain's silo stops and starts again on its SQLite store: its USIG must never issue
/// a counter value twice (for two different messages), and its replica must rejoin and catch up.
/// </summary>
public sealed class UsigDurabilityTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Restarting_a_domain_never_reissues_a_counter_and_its_replica_catches_up()
    {
        const int restarted = 2; // a backup: the primary's recovery needs view change (see ReplicaGrain)
        await using var cluster = await MinBftTestCluster.StartAsync(new ClusterSetup { F = 1, Sqlite = true }, output);
        var all = Enumerable.Range(0, cluster.N).ToArray();
        var clients = Enumerable.Range(0, 3).Select(c => new TestClient(cluster, "d" + c)).ToArray();

        await Task.WhenAll(clients.Select(c => c.RunAsync(6)));
        var before = await cluster.WaitForAgreementAsync(all);
        var usigBefore = await cluster.Usig(restarted).GetIdentity();
        Assert.Equal(before[restarted].LastUiCounter, usigBefore.LastCounter);

        // Stop while the others keep going, then more work without it.
        var stop = cluster.StopDomainAsync(restarted);
        var during = Task.WhenAll(clients.Select(c => c.RunAsync(4)));
        await stop;
        await during;
        var others = all.Where(i => i != restarted).ToArray();
        var withoutIt = await cluster.WaitForAgreementAsync(others, before[0].ExecutedSequence + 1);

        await cluster.RestartDomainAsync(restarted);
        await cluster.WaitForReplicasAsync([restarted]);
        // New traffic shows the restarted replica it is behind (the core asks for the gap when
        // a message arrives ahead of its counters). It replays its history from its peers,
        // re-deriving its own messages from its durable log instead of asking its USIG again,
        // and then takes part in the new requests.
        await Task.WhenAll(clients.Select(c => c.RunAsync(4)));
        var after = await cluster.WaitForAgreementAsync(all, withoutIt[0].ExecutedSequence + 1);
        foreach (var s in after) output.WriteLine(MinBftTestCluster.Describe(s));

        var usigAfter = await cluster.Usig(restarted).GetIdentity();
        Assert.True(usigAfter.LastCounter > usigBefore.LastCounter, "the restarted USIG went on from its durable counter");
        Assert.Equal(after[restarted].LastUiCounter, usigAfter.LastCounter);

        // Every UI any USIG returned: one digest per (replica, counter), counters 1, 2, ... without a gap.
        var issued = cluster.IssuedUis.ToArray();
        Assert.NotEmpty(issued);
        foreach (var byReplica in issued.GroupBy(u => u.Replica))
        {
            foreach (var byCounter in byReplica.GroupBy(u => u.Counter))
                Assert.True(byCounter.Select(u => u.Digest).Distinct().Count() == 1, $"USIG {byReplica.Key} issued counter {byCounter.Key} for two digests");
            var counters = byReplica.Select(u => u.Counter).Distinct().Order().ToArray();
            Assert.Equal(Enumerable.Range(1, counters.Length).Select(c => (ulong)c), counters);
        }
        Assert.Contains(issued, u => u.Replica == restarted && u.Counter > usigBefore.LastCounter);
    }
}
