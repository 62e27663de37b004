using MinBft.Application;
using MinBft.Crypto;
using MinBft.Messages;
using MinBft.Protocol;

namespace MinBft.Tests.Protocol;

/// <summary>
/// The bounded client table (CLIENT-SESSIONS-DESIGN.md), on real cores driven by hand: eviction of
/// the least recently active record at the same position everywhere, Expired replies for requests
/// that could be replays from before an eviction, incarnations, probes, and snapshots that carry it all.
/// </summary>
public sealed class ClientTableTests
{
    private static byte[] Put(string key, string value) => KeyValueOperation.EncodePut(key, System.Text.Encoding.UTF8.GetBytes(value));
    private static byte[] Get(string key) => KeyValueOperation.EncodeGet(key);

    private static CoreHarness Harness(int cap, int checkpointInterval = 64) => new(tune: s => s with
    {
        MaxClientRecords = cap,
        CheckpointInterval = checkpointInterval,
        Watermark = checkpointInterval < 64 ? checkpointInterval : s.Watermark,
        Tuning = s.Tuning with { MaxBatchSize = 1, MaxInFlightBatches = 1 },
    });

    /// <summary>Orders <paramref name="request"/> at every replica (one batch of its own) and
    /// returns the replies the replicas sent for it.</summary>
    private static List<Reply> Run(CoreHarness h, Request request, params int[] live)
    {
        if (live.Length == 0) live = Enumerable.Range(0, h.N).ToArray();
        var before = live.ToDictionary(i => i, i => h.Outbox[i].Count);
        foreach (var i in live) h.Request(i, request);
        h.Flush(live);
        return live.SelectMany(i => h.Outbox[i].Skip(before[i]).OfType<SendReply>().Select(s => s.Reply))
            .Where(r => r.ClientId == request.ClientId && r.Seq == request.Seq).ToList();
    }

    private static void AssertSameStateEverywhere(CoreHarness h, params int[] replicas)
    {
        if (replicas.Length == 0) replicas = Enumerable.Range(0, h.N).ToArray();
        var first = h.Cores[replicas[0]];
        foreach (var i in replicas.Skip(1))
        {
            Assert.Equal(first.ExecutedSequence, h.Cores[i].ExecutedSequence);
            Assert.Equal(first.StateDigest(), h.Cores[i].StateDigest());
            Assert.Equal(first.ExpiryHorizon, h.Cores[i].ExpiryHorizon);
            Assert.Equal(first.ClientRecordCount, h.Cores[i].ClientRecordCount);
        }
    }

    [Fact]
    public void Beyond_the_cap_the_least_recently_active_record_is_evicted_at_every_replica_alike()
    {
        var h = Harness(cap: 2);
        var (a, b, c) = (h.NewClient(), h.NewClient(), h.NewClient());
        Run(h, a.CreateRequest(1, Put("a", "1"))); // position 1
        Run(h, b.CreateRequest(1, Put("b", "1"))); // position 2
        Run(h, a.CreateRequest(2, Put("a", "2"))); // position 3: a is now more recent than b
        Assert.All(h.Cores, core => Assert.Equal(0UL, core.ExpiryHorizon));
        Run(h, c.CreateRequest(1, Put("c", "1"))); // position 4: three records, cap 2

        Assert.All(h.Cores, core =>
        {
            Assert.Equal(2, core.ClientRecordCount);
            Assert.Equal(0UL, core.LastExecutedSeq(b.ClientId)); // least recently active (position 2)
            Assert.Equal(2UL, core.LastExecutedSeq(a.ClientId));
            Assert.Equal(1UL, core.LastExecutedSeq(c.ClientId));
            Assert.Equal(3UL, core.ExpiryHorizon); // above b's last activity
            Assert.Equal(1, core.ClientEvictions);
        });
        AssertSameStateEverywhere(h);
    }

    [Fact]
    public void A_replayed_request_of_an_evicted_client_gets_a_signed_Expired_reply_and_does_not_run_again()
    {
        var h = Harness(cap: 1);
        var (a, b) = (h.NewClient(), h.NewClient());
        var old = a.CreateRequest(1, Put("k", "from a"));
        Run(h, old);
        Run(h, b.CreateRequest(1, Put("k", "from b"))); // a is evicted
        Assert.All(h.Cores, core => Assert.Equal(0UL, core.LastExecutedSeq(a.ClientId)));

        // The old request, replayed: a new-looking client to every replica, but below the horizon.
        var before = h.Cores.Select(c => c.ExecutedSequence).ToArray();
        var replies = Run(h, old);
        Assert.Equal(h.N, replies.Count);
        var authenticator = h.Replies();
        Assert.All(replies, r =>
        {
            Assert.Equal(ReplyStatus.Expired, r.Status);
            Assert.Empty(r.Result);
            Assert.Equal(3UL, r.Position); // decided at the position that carried the replay
            Assert.Null(authenticator.Explain(r)); // signed like any reply
        });
        Assert.All(h.Cores, core => Assert.Equal(0UL, core.LastExecutedSeq(a.ClientId)));
        var applied = h.Outbox.SelectMany(o => o.OfType<Executed>()).Where(e => e.Sequence == 3).ToList();
        Assert.Equal(h.N, applied.Count);
        Assert.All(applied, e => Assert.Empty(e.Applied));
        // b's value stands: the replay did not run.
        var read = Run(h, b.CreateRequest(2, Get("k"), incarnation: 3));
        Assert.All(read, r => Assert.Equal(KeyValueResult.OkWithValue("from b"u8.ToArray()).Encode(), r.Result));
        AssertSameStateEverywhere(h);
        Assert.True(h.Cores.Zip(before).All(p => p.First.ExecutedSequence > p.Second));
    }

    [Fact]
    public void An_evicted_client_signing_with_a_proven_position_as_its_incarnation_is_admitted_again()
    {
        var h = Harness(cap: 1);
        var (a, b) = (h.NewClient(), h.NewClient());
        var first = Run(h, a.CreateRequest(1, Put("a", "1")));
        Run(h, b.CreateRequest(1, Put("b", "1"))); // a is evicted; the horizon is 2
        var position = Assert.Single(first.Select(r => r.Position).Distinct());
        Assert.Equal(1UL, position);

        // Incarnation 1 (the position a's last reply proved) is below the horizon: Expired.
        var stale = Run(h, a.CreateRequest(2, Put("a", "2"), incarnation: position));
        Assert.All(stale, r => Assert.Equal(ReplyStatus.Expired, r.Status));
        // The Expired reply's position is a valid incarnation: admitted, a new record.
        var again = Run(h, a.CreateRequest(3, Put("a", "3"), incarnation: stale[0].Position));
        Assert.All(again, r => Assert.Equal(ReplyStatus.Executed, r.Status));
        Assert.All(h.Cores, core => Assert.Equal(3UL, core.LastExecutedSeq(a.ClientId)));
        // Request 2 is now older than the record: it never runs, even replayed.
        Assert.Empty(Run(h, a.CreateRequest(2, Put("a", "2"), incarnation: stale[0].Position)));
        AssertSameStateEverywhere(h);
    }

    [Fact]
    public void An_incarnation_beyond_the_position_is_refused_even_with_a_record()
    {
        // An executed request's incarnation must stay at or below its position: otherwise, once the
        // client is evicted, a replay of it could pass the horizon and run again.
        var h = Harness(cap: 4);
        var a = h.NewClient();
        Run(h, a.CreateRequest(1, Put("a", "1")));
        var replies = Run(h, a.CreateRequest(2, Put("a", "2"), incarnation: 1_000));
        Assert.All(replies, r => Assert.Equal(ReplyStatus.Expired, r.Status));
        Assert.All(h.Cores, core => Assert.Equal(1UL, core.LastExecutedSeq(a.ClientId)));
    }

    [Fact]
    public void A_probe_with_an_empty_operation_runs_nothing_and_renews_the_record()
    {
        var h = Harness(cap: 2);
        var (a, b, c) = (h.NewClient(), h.NewClient(), h.NewClient());
        Run(h, a.CreateRequest(1, Put("a", "1")));
        Run(h, b.CreateRequest(1, Put("b", "1")));
        var digest = h.Cores[0].StateDigest();
        var probe = Run(h, a.CreateRequest(2, [], incarnation: 2));
        Assert.All(probe, r =>
        {
            Assert.Equal(ReplyStatus.Executed, r.Status);
            Assert.Empty(r.Result);
            Assert.Equal(3UL, r.Position);
        });
        Assert.All(h.Outbox.SelectMany(o => o.OfType<Executed>()).Where(e => e.Sequence == 3), e => Assert.Empty(e.Applied));
        // The record moved on (seq and activity), so the state digest did too; b is now the oldest.
        Assert.NotEqual(digest, h.Cores[0].StateDigest());
        Run(h, c.CreateRequest(1, Put("c", "1")));
        Assert.All(h.Cores, core =>
        {
            Assert.Equal(2UL, core.LastExecutedSeq(a.ClientId));
            Assert.Equal(0UL, core.LastExecutedSeq(b.ClientId));
        });
    }

    [Fact]
    public void A_replica_that_installs_a_snapshot_holds_the_same_table_and_evicts_the_same_records_afterwards()
    {
        var h = Harness(cap: 2, checkpointInterval: 2);
        var clients = Enumerable.Range(0, 4).Select(_ => h.NewClient()).ToArray();
        var seqs = new ulong[clients.Length];
        ulong incarnation = 0;
        // Twelve batches at replicas 0 and 1 only, four clients over a table of two.
        for (var round = 0; round < 12; round++)
        {
            var i = round % clients.Length;
            var replies = Run(h, clients[i].CreateRequest(++seqs[i], Put("k" + i, "v" + round), incarnation), 0, 1);
            incarnation = replies.Max(r => r.Position);
        }
        Assert.True(h.Cores[0].ClientEvictions > 0);
        Assert.Equal(0UL, h.Cores[2].ExecutedSequence);

        // Replica 2 falls behind beyond the checkpoints and fetches the state from replica 1.
        h.Request(2, h.NewClient().CreateRequest(1, Put("late", "x"), incarnation));
        for (var i = 0; i < 5 && h.Sent<StateRequest>(2).Count == 0; i++)
        {
            h.Now += TimeSpan.FromSeconds(1);
            h.Tick(2);
        }
        var request = Assert.Single(h.Sent<StateRequest>(2));
        for (var round = 0; round < 100 && h.Cores[2].StateTransfersCompleted == 0; round++)
        {
            var chunk = Assert.Single(h.Deliver(1, request).OfType<Send>().Where(s => s.To == 2).Select(s => s.Message).OfType<StateChunk>());
            var effects = h.Deliver(2, chunk);
            if (effects.OfType<Send>().Select(s => s.Message).OfType<StateRequest>().FirstOrDefault() is { } next) request = next;
        }
        Assert.Equal(1, h.Cores[2].StateTransfersCompleted);
        Assert.True(h.Cores[2].ExpiryHorizon > 0);

        // From here all three execute the same batches and evict the same records.
        for (var round = 0; round < 4; round++)
        {
            var i = round % clients.Length;
            var replies = Run(h, clients[i].CreateRequest(++seqs[i], Put("k" + i, "w" + round), incarnation));
            incarnation = Math.Max(incarnation, replies.Max(r => r.Position));
        }
        AssertSameStateEverywhere(h);
    }

    [Fact]
    public void A_snapshot_carries_the_table_and_refuses_an_activity_beyond_its_position()
    {
        var client = new SnapshotClient(new string('a', 64), 3, 0, new byte[32], [1, 2], LastActive: 7);
        var snapshot = new StateSnapshot(9, new byte[32], [5], [client], ExpiryHorizon: 4);
        var decoded = StateSnapshot.TryDecode(snapshot.Encode());
        Assert.NotNull(decoded);
        Assert.Equal(4UL, decoded.ExpiryHorizon);
        Assert.Equal(7UL, Assert.Single(decoded.Clients).LastActive);

        Assert.Null(StateSnapshot.TryDecode((snapshot with { Clients = [client with { LastActive = 10 }] }).Encode()));
        Assert.Null(StateSnapshot.TryDecode((snapshot with { ExpiryHorizon = 11 }).Encode()));
    }
}
