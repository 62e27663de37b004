using Microsoft.Data.Sqlite;
using MinBft.Hosting.Journal;
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

    [Fact]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")] // reads the file journal, as the embedded store keeps it on Linux
    public async Task Checkpoints_bound_the_durable_log_and_a_replica_restarted_after_garbage_collection_catches_up_by_state_transfer()
    {
        const int restarted = 2;
        await using var cluster = await MinBftTestCluster.StartAsync(
            new ClusterSetup { F = 1, CheckpointInterval = 4, Watermark = 8 }, output);
        var all = Enumerable.Range(0, cluster.N).ToArray();
        var clients = Enumerable.Range(0, 4).Select(c => new TestClient(cluster, "g" + c)).ToArray();

        // Enough history that the window kept (about W + K positions) is well under half of it:
        // with 16 requests per client the history was some 27 messages and the window 13 of them
        // (a CI flake, stop 42).
        await Task.WhenAll(clients.Select(c => c.RunAsync(48)));
        var statuses = await cluster.WaitForAgreementAsync(all);
        foreach (var s in statuses) output.WriteLine(MinBftTestCluster.Describe(s) + $" sent log {s.SentLogCount} (durable {s.DurableSentCount})");
        Assert.All(statuses, s => Assert.True(s.StableCheckpoint >= 40, MinBftTestCluster.Describe(s)));
        // The sent log kept in memory (and durable) is a window, not the whole history. A replica
        // that probed for state while briefly behind (a slow machine) makes its peers keep more for
        // it until it is level or quiet, so this is waited for, not read once.
        statuses = await cluster.WaitForStatusesAsync(all,
            ss => ss.All(s => s.SentLogCount < (int)s.LastUiCounter / 2 && s.SentLogCount == s.DurableSentCount),
            "every sent log is a window, the same in memory and in the journal");
        foreach (var s in statuses) output.WriteLine($"r{s.ReplicaId}: sent log {s.SentLogCount} of {s.LastUiCounter} (durable {s.DurableSentCount})");
        // In storage too: the start of every replica's journal is gone (it keeps a window, from
        // an anchor the stored checkpoint covers), and the stable checkpoint (snapshot and
        // certificate) is there for a restart.
        for (var domain = 0; domain < cluster.N; domain++)
        {
            var (first, stored) = StoredJournal(Path.Combine(cluster.Directory, "data", $"minbft-domain-{domain}-journal"));
            var status = statuses[domain];
            Assert.True(first > 1, $"replica {domain}: journal starts at {first}");
            Assert.True(stored < (int)status.LastUiCounter / 2, $"replica {domain}: {stored} journal entries of {status.LastUiCounter}");
            Assert.Contains("checkpoint", StoredStates(Path.Combine(cluster.Directory, "data", $"minbft-domain-{domain}.db"), "checkpoint"));
        }

        // Its peers forgot the start of history while it was down: it resumes from its own
        // stored checkpoint, fetches a newer snapshot from a peer, and rejoins.
        var usigBefore = (await cluster.Usig(restarted).GetIdentity()).LastCounter;
        cluster.Log($"USIG {restarted} at counter {usigBefore} before the stop");
        await cluster.StopDomainAsync(restarted);
        await Task.WhenAll(clients.Select(c => c.RunAsync(12)));
        var withoutIt = await cluster.WaitForAgreementAsync([0, 1], statuses[0].ExecutedSequence + 8);
        await cluster.RestartDomainAsync(restarted);
        await cluster.WaitForReplicasAsync([restarted]);
        await Task.WhenAll(clients.Select(c => c.RunAsync(4)));
        var after = await cluster.WaitForAgreementAsync(all, withoutIt[0].ExecutedSequence + 1);
        foreach (var s in after) output.WriteLine(MinBftTestCluster.Describe(s));
        // Equal history digests: the certified checkpoint carries the history chain too.
        Assert.Equal(after[0].HistoryDigest, after[restarted].HistoryDigest);

        // It takes part again with new counters. Not checked at the moment of agreement: the
        // snapshot it installed may cover every batch ordered so far, and then it had nothing to
        // send yet. Batches ordered now, after it caught up, reach it as PREPAREs it commits
        // (a new UI each), though f + 1 replies may complete the requests before its COMMIT.
        await Task.WhenAll(clients.Select(c => c.RunAsync(2)));
        ulong usigAfter = 0;
        await MinBftTestCluster.UntilAsync(async () =>
        {
            usigAfter = (await cluster.Usig(restarted).GetIdentity()).LastCounter;
            return usigAfter > usigBefore;
        }, $"replica {restarted} issues a counter above {usigBefore} for a batch ordered after it caught up");
        var final = await cluster.WaitForAgreementAsync(all, after[0].ExecutedSequence + 1);
        foreach (var s in final) output.WriteLine(MinBftTestCluster.Describe(s));
        Assert.True(final[restarted].LastUiCounter >= usigAfter, MinBftTestCluster.Describe(final[restarted]));
    }

    /// <summary>The first counter and the number of entries of the one replica journal in a domain's journal directory.</summary>
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    private static (ulong First, int Entries) StoredJournal(string directory)
    {
        var journal = Assert.Single(Directory.GetFiles(directory, "*.journal"));
        var contents = FileReplicaJournal.ReadUnowned(journal, Hosting.JournalKit.Serializer);
        return (contents.FirstCounter, contents.Entries.Count);
    }

    private static List<string> StoredStates(string database, string like)
    {
        using var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = database, Pooling = false }.ToString());
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT state_name FROM grain_state WHERE state_name LIKE $like AND data IS NOT NULL";
        command.Parameters.AddWithValue("$like", like);
        using var reader = command.ExecuteReader();
        var names = new List<string>();
        while (reader.Read()) names.Add(reader.GetString(0));
        return names;
    }
}
