using MinBft.Application;
using MinBft.Encoding;
using MinBft.Messages;
using MinBft.Protocol;
using MinBft.Tests.Simulation;

namespace MinBft.Tests.Protocol;

/// <summary>State transfer, PROTOCOL.md section 8, driven by hand on real cores.</summary>
public sealed class StateTransferTests
{
    private static byte[] Put(string key, string value) => KeyValueOperation.EncodePut(key, System.Text.Encoding.UTF8.GetBytes(value));

    /// <summary>Replicas 0 and 1 run 12 requests without replica 2 (K = 2, so they checkpoint
    /// and forget), then replica 2 learns of a request, stalls and probes its peers.</summary>
    private static (CoreHarness H, StateRequest Probe) LaggingReplica(int chunkSize, int retention = 1024, int chunksPerInterval = 64)
    {
        var h = new CoreHarness(tune: s => s with
        {
            CheckpointInterval = 2, Watermark = 2,
            Tuning = s.Tuning with
            {
                MaxInFlightBatches = 1, MaxBatchSize = 1, StateChunkSize = chunkSize, StateTransferRetention = retention,
                MaxStateChunksPerInterval = chunksPerInterval,
            },
        });
        var client = h.NewClient();
        for (ulong seq = 1; seq <= 12; seq++)
        {
            var request = client.CreateRequest(seq, Put("k" + seq, new string('v', 40)));
            h.Request(0, request);
            h.Request(1, request);
            h.Flush(0, 1);
        }
        Assert.All(h.Cores.Take(2), c => Assert.True(c.StableCheckpoint.Sequence >= 10, $"stable {c.StableCheckpoint.Sequence}"));
        Assert.Equal(0UL, h.Cores[2].ExecutedSequence);

        h.Request(2, h.NewClient().CreateRequest(1, Put("late", "x")));
        for (var i = 0; i < 3 && h.Sent<StateRequest>(2).Count == 0; i++)
        {
            h.Now += TimeSpan.FromSeconds(1);
            h.Tick(2);
        }
        return (h, Assert.Single(h.Sent<StateRequest>(2)));
    }

    private static StateChunk Answer(CoreHarness h, int server, StateRequest request) =>
        Assert.Single(h.Deliver(server, request).OfType<Send>().Where(s => s.To == 2).Select(s => s.Message).OfType<StateChunk>());

    [Fact]
    public void Rule_8_a_lagging_replica_fetches_a_chunked_snapshot_checks_it_and_installs_it()
    {
        var (h, probe) = LaggingReplica(chunkSize: 100);
        var lagging = h.Cores[2];
        var chunk = Answer(h, 1, probe);
        Assert.True(chunk.Count > 1, "the snapshot travels in several bounded chunks");
        Assert.All([chunk], c => Assert.True(c.Data.Length <= 100));
        var certificate = chunk.Certificate;

        var effects = FetchAll(h, 1, chunk);
        var installed = Assert.Single(effects.OfType<StateInstalled>());
        Assert.Equal(1, installed.From);
        Assert.Equal(certificate.Sequence, lagging.ExecutedSequence);
        Assert.Equal(certificate.StateDigest, lagging.StateDigest());
        Assert.Equal(1, lagging.StateTransfersCompleted);
        // Afterwards it asks every peer for the streams that follow (relays included).
        Assert.Contains(effects.OfType<Send>(), s => s.Message is RetransmitRequest { TargetId: 0 });
        Assert.Contains(effects.OfType<Send>(), s => s.Message is RetransmitRequest { TargetId: 1 });
    }

    [Fact]
    public void Rule_8_a_primary_that_fell_behind_installs_a_snapshot_of_its_own_proposals_and_goes_on_leading()
    {
        // The backups order the primary's two PREPAREs and reach a stable checkpoint; none of
        // their messages reaches the primary, which stalls, probes and installs that checkpoint.
        // It knows what it proposed (up to there, all settled now), so it keeps leading; before,
        // it handed over as if it had restarted, a needless view change.
        var h = new CoreHarness(tune: s => s with
        {
            CheckpointInterval = 2, Watermark = 4,
            Tuning = s.Tuning with { MaxBatchSize = 1, MaxInFlightBatches = 4, StateChunkSize = 64 * 1024 },
        });
        var client = h.NewClient();
        h.Request(0, client.CreateRequest(1, Put("a", "1")));
        h.Request(0, client.CreateRequest(2, Put("b", "2")));
        var prepares = h.Sent<Prepare>(0);
        Assert.Equal([1UL, 2UL], prepares.Select(p => p.Sequence));
        foreach (var proposed in prepares)
        {
            h.Deliver(1, proposed);
            h.Deliver(2, proposed);
        }
        h.Flush(1, 2);
        Assert.All(h.Cores.Skip(1), c => Assert.Equal(2UL, c.StableCheckpoint.Sequence));
        Assert.Equal(0UL, h.Cores[0].ExecutedSequence);

        for (var i = 0; i < 6 && h.Sent<StateRequest>(0).Count == 0; i++)
        {
            h.Now += TimeSpan.FromSeconds(1);
            h.Tick(0);
        }
        var probe = Assert.Single(h.Sent<StateRequest>(0));
        var offer = Assert.Single(h.Deliver(1, probe).OfType<Send>().Select(s => s.Message).OfType<StateChunk>());
        Assert.Contains(h.Deliver(0, offer), e => e is StateInstalled);
        Assert.Equal(2UL, h.Cores[0].ExecutedSequence);
        Assert.True(h.Cores[0].IsPrimary);
        Assert.Empty(h.Sent<ReqViewChange>(0));

        // The next request gets the next position, in the same view.
        var next = h.Request(0, client.CreateRequest(3, Put("c", "3")));
        var prepare = Assert.Single(next.OfType<Send>().Select(s => s.Message).OfType<Prepare>());
        Assert.Equal((0L, 3UL), (prepare.View, prepare.Sequence));
    }

    [Fact]
    public void Rule_8_a_snapshot_that_does_not_match_its_certificate_is_rejected_counted_and_changes_nothing()
    {
        var (h, probe) = LaggingReplica(chunkSize: 64 * 1024);
        var lagging = h.Cores[2];
        var honest = Answer(h, 0, probe);
        Assert.Equal(1, honest.Count);
        var before = lagging.StateFingerprint();

        var effects = h.Deliver(2, Tamper.CorruptChunk(honest, new Random(5)));
        Assert.Contains(effects.OfType<Rejected>(), r => r.Reason == RejectReason.InvalidSnapshot && r.From == 0);
        Assert.Equal(1, lagging.RejectionCount(RejectReason.InvalidSnapshot));
        Assert.Equal(before, lagging.StateFingerprint());
        Assert.Equal(0UL, lagging.ExecutedSequence);

        // The same (now correct) offer from the server that lied is not taken again...
        Assert.DoesNotContain(h.Deliver(2, honest), e => e is StateInstalled);
        // ...but another peer's is.
        Assert.Contains(h.Deliver(2, Answer(h, 1, probe)), e => e is StateInstalled);
        Assert.Equal(honest.Certificate.Sequence, lagging.ExecutedSequence);
    }

    [Fact]
    public void Rule_8_an_offer_whose_certificate_does_not_verify_is_rejected()
    {
        var (h, probe) = LaggingReplica(chunkSize: 64 * 1024);
        var honest = Answer(h, 0, probe);
        var forgedDigest = (byte[])honest.Certificate.StateDigest.Clone();
        forgedDigest[0] ^= 1;
        // A certificate whose CHECKPOINTs do not match its digest (or whose UIs do not verify).
        var forged = honest with { Certificate = honest.Certificate with { StateDigest = forgedDigest } };
        var effects = h.Deliver(2, forged);
        Assert.Contains(effects.OfType<Rejected>(), r => r.Reason == RejectReason.InvalidUi);
        Assert.Equal(0UL, h.Cores[2].ExecutedSequence);
        // The forged offer started nothing; the replica still waits for an offer to its probe.
        Assert.True(h.Cores[2].StateTransferInProgress);
        Assert.Contains(h.Deliver(2, honest), e => e is StateInstalled);
        Assert.False(h.Cores[2].StateTransferInProgress);
    }

    [Fact]
    public void Rule_8_a_snapshot_of_one_chunk_is_being_fetched_from_the_probe_until_that_chunk_is_installed()
    {
        var (h, probe) = LaggingReplica(chunkSize: 64 * 1024);
        var lagging = h.Cores[2];
        // The chunk carries the offer, so the transfer ends the moment it arrives: the replica is
        // fetching (health: Degraded) from its probe on, not only once a chunk is in.
        Assert.True(lagging.StateTransferInProgress, "fetching state from the probe on");
        var only = Answer(h, 0, probe);
        Assert.Equal(1, only.Count);
        Assert.True(lagging.StateTransferInProgress, "still fetching while the only chunk is on its way");
        Assert.Contains(h.Deliver(2, only), e => e is StateInstalled);
        Assert.False(lagging.StateTransferInProgress);
        Assert.Equal(only.Certificate.Sequence, lagging.ExecutedSequence);
    }

    /// <summary>Replicas 0 and 1 order <paramref name="count"/> more requests among themselves.</summary>
    private static void MoreLoad(CoreHarness h, int count, ulong firstSeq = 1)
    {
        var client = h.NewClient();
        for (var seq = firstSeq; seq < firstSeq + (ulong)count; seq++)
        {
            var request = client.CreateRequest(seq, Put("more" + seq, new string('w', 40)));
            h.Request(0, request);
            h.Request(1, request);
            h.Flush(0, 1);
        }
    }

    /// <summary>Fetch every chunk of <paramref name="first"/>'s checkpoint from <paramref name="server"/>,
    /// answering every request replica 2 has out, and return the effects of the round that completed it.</summary>
    private static List<Effect> FetchAll(CoreHarness h, int server, StateChunk first)
    {
        var effects = h.Deliver(2, first).ToList();
        for (var round = 0; round < 200 && !effects.OfType<StateInstalled>().Any(); round++)
        {
            var requests = ChunkRequests(effects);
            Assert.NotEmpty(requests);
            effects = [];
            foreach (var request in requests)
            {
                Assert.Equal(first.Certificate.Sequence, request.Sequence);
                var chunk = Answer(h, server, request);
                Assert.Equal(first.Certificate.Sequence, chunk.Certificate.Sequence);
                Assert.Equal(request.Chunk, chunk.Index);
                effects.AddRange(h.Deliver(2, chunk));
            }
        }
        return effects;
    }

    private static List<StateRequest> ChunkRequests(IEnumerable<Effect> effects) =>
        effects.OfType<Send>().Select(s => s.Message).OfType<StateRequest>().ToList();

    [Fact]
    public void Rule_8_a_requester_asks_for_as_many_chunks_per_interval_as_a_peer_serves_and_asks_again_for_one_not_answered()
    {
        var (h, probe) = LaggingReplica(chunkSize: 50, chunksPerInterval: 3);
        var interval = h.Cores[2].Settings.Tuning.RetransmitInterval;
        var first = Answer(h, 1, probe);
        Assert.True(first.Count > 8, $"the snapshot takes many chunks ({first.Count})");

        // The offer carried chunk 0 and used one of the peer's three chunks of this interval: the
        // other two are asked for at once, not one per round trip.
        var sends = h.Deliver(2, first).OfType<Send>().Where(s => s.Message is StateRequest).ToList();
        Assert.All(sends, s => Assert.Equal(1, s.To));
        var asked = ChunkRequests(sends);
        Assert.Equal([1, 2], asked.Select(r => r.Chunk));
        // Their answers use up this interval's share: nothing more until the next interval.
        var effects = asked.SelectMany(r => h.Deliver(2, Answer(h, 1, r))).ToList();
        Assert.Empty(ChunkRequests(effects));

        h.Now += interval;
        asked = ChunkRequests(h.Tick(2));
        Assert.Equal([3, 4, 5], asked.Select(r => r.Chunk));
        // Chunk 5's request is lost (or dropped by the peer's cap): 3 and 4 arrive.
        Assert.Empty(ChunkRequests(asked.Take(2).SelectMany(r => h.Deliver(2, Answer(h, 1, r)))));

        // One interval later it is asked for again, ahead of the chunks after it.
        h.Now += interval;
        asked = ChunkRequests(h.Tick(2));
        Assert.Equal([5, 6, 7], asked.Select(r => r.Chunk));

        // The rest, interval by interval, installs the checkpoint offered.
        effects = asked.SelectMany(r => h.Deliver(2, Answer(h, 1, r))).ToList();
        for (var round = 0; round < 100 && !effects.OfType<StateInstalled>().Any(); round++)
        {
            h.Now += interval;
            effects = ChunkRequests(h.Tick(2)).SelectMany(r => h.Deliver(2, Answer(h, 1, r))).ToList();
        }
        Assert.Equal(first.Certificate.Sequence, Assert.Single(effects.OfType<StateInstalled>()).Sequence);
        Assert.Equal(first.Certificate.Sequence, h.Cores[2].ExecutedSequence);
    }

    /// <summary>Replica 2 asks its peers to retransmit and gets only their answers to it, until quiet:
    /// what it catches up on comes from the logs they kept, not from a replay of every send.</summary>
    private static void ServeRetransmissions(CoreHarness h, IEnumerable<Effect> first)
    {
        var queue = new Queue<(int To, ReplicaMessage Message)>();
        void Route(int from, IEnumerable<Effect> effects)
        {
            foreach (var send in effects.OfType<Send>())
            {
                if (from == 2) { foreach (var to in new[] { 0, 1 }) if (send.To is null || send.To == to) queue.Enqueue((to, send.Message)); }
                else if (send.To == 2) queue.Enqueue((2, send.Message));
            }
        }
        Route(2, first);
        for (var round = 0; round < 50; round++)
        {
            while (queue.TryDequeue(out var next)) Route(next.To, h.Deliver(next.To, next.Message));
            h.Now += TimeSpan.FromSeconds(1);
            Route(2, h.Tick(2));
            if (queue.Count == 0) break;
        }
    }

    [Fact]
    public void Rule_8_a_peer_keeps_the_checkpoint_a_replica_fetches_and_its_log_after_it_so_the_replica_replays_the_rest()
    {
        var (h, probe) = LaggingReplica(chunkSize: 100);
        var first = Answer(h, 1, probe);
        var fetched = first.Certificate.Sequence;
        Assert.True(first.Count > 2, "the snapshot takes several chunks");
        Assert.Equal(1, h.Cores[1].StatePinsHeld);

        // The others move well past that checkpoint (their stable one and its log anchor) meanwhile.
        MoreLoad(h, 12);
        Assert.True(h.Cores[1].StableCheckpoint.Sequence >= fetched + 10, $"stable {h.Cores[1].StableCheckpoint.Sequence}, fetched {fetched}");

        // Still served the checkpoint it started on (before: a new offer of the newest, from chunk 0).
        var installed = FetchAll(h, 1, first);
        Assert.Equal(fetched, Assert.Single(installed.OfType<StateInstalled>()).Sequence);

        // The rest comes by retransmission from what the peers kept: no second snapshot.
        ServeRetransmissions(h, installed);
        Assert.Equal(h.Cores[0].ExecutedSequence, h.Cores[2].ExecutedSequence);
        Assert.Equal(h.Cores[0].StateDigest(), h.Cores[2].StateDigest());
        Assert.Equal(1, h.Cores[2].StateTransfersCompleted);
        // Level with them, its CHECKPOINTs released what replica 1 kept for it.
        Assert.Equal(0, h.Cores[1].StatePinsHeld);
    }

    [Fact]
    public void Rule_8_what_a_peer_keeps_for_a_requester_ends_when_it_goes_quiet()
    {
        var (h, probe) = LaggingReplica(chunkSize: 100);
        Answer(h, 1, probe);
        var kept = h.Cores[1].SentLogCount;
        MoreLoad(h, 12);
        Assert.Equal(1, h.Cores[1].StatePinsHeld);
        Assert.True(h.Cores[1].SentLogCount > kept + 8, $"the log grows while it is kept for the requester ({h.Cores[1].SentLogCount} against {kept})");

        // No chunk or retransmission request for eight retransmit intervals: nothing is kept for it.
        h.Now += TimeSpan.FromSeconds(60);
        h.Tick(1);
        Assert.Equal(0, h.Cores[1].StatePinsHeld);
        MoreLoad(h, 6, firstSeq: 13);
        Assert.True(h.Cores[1].SentLogCount <= kept + 4, $"the log is trimmed again ({h.Cores[1].SentLogCount} against {kept})");
    }

    [Fact]
    public void Rule_8_what_a_peer_keeps_for_a_requester_is_bounded_however_often_it_asks()
    {
        // A faulty requester that keeps asking cannot make a peer keep its log for ever: past
        // StateTransferRetention positions the peer lets go, and the log is trimmed again.
        var (h, probe) = LaggingReplica(chunkSize: 100, retention: 6);
        var first = Answer(h, 1, probe);
        var kept = h.Cores[1].SentLogCount;
        StateChunk? last = null;
        for (ulong seq = 1; seq <= 40; seq++)
        {
            MoreLoad(h, 1, firstSeq: seq);
            // Asking for the same chunk of the same checkpoint again, each time (within the serving rate).
            h.Now += TimeSpan.FromSeconds(1);
            h.Tick(1);
            var again = new StateRequest(2, 1, first.Certificate.Sequence, 1, []);
            last = Answer(h, 1, again with { Signature = h.Signer(2).Sign(Encoding.MessageEncoding.StateRequest(again)) });
        }
        // It was let go, and is offered the newest checkpoint from its first chunk instead.
        Assert.True(last!.Certificate.Sequence > first.Certificate.Sequence + 6, $"offered {last.Certificate.Sequence}");
        Assert.Equal(0, last.Index);
        // Kept at most for retention + W + K positions (a COMMIT each, a CHECKPOINT every K): 40
        // positions went by, so an unbounded log would hold some 60 messages more.
        Assert.True(h.Cores[1].SentLogCount <= kept + 2 * (6 + 2 + 2), $"the log stays bounded ({h.Cores[1].SentLogCount} against {kept})");
    }

    [Fact]
    public void Rule_8_only_replicas_can_ask_for_state_and_peers_answer_only_when_they_have_something_newer()
    {
        var (h, probe) = LaggingReplica(chunkSize: 64 * 1024);
        var unsigned = probe with { Signature = new byte[64] };
        Assert.Contains(h.Deliver(0, unsigned).OfType<Rejected>(), r => r.Reason == RejectReason.InvalidSignature);
        // Asking for more than the server has: no answer.
        var ahead = probe with { MinSequence = 1000 };
        ahead = ahead with { Signature = h.Signer(2).Sign(Encoding.MessageEncoding.StateRequest(ahead)) };
        Assert.DoesNotContain(h.Deliver(0, ahead).OfType<Send>(), s => s.Message is StateChunk);
    }
}

/// <summary>Crash recovery, PROTOCOL.md section 8: what a restarted core does with its durable state.</summary>
public sealed class RecoveryTests
{
    private static byte[] Put(string key) => KeyValueOperation.EncodePut(key, [1, 2, 3]);

    [Fact]
    public void A_replica_that_stored_nothing_starts_fresh_and_a_fresh_primary_proposes()
    {
        var h = new CoreHarness();
        var effects = h.Step(0, c => c.Restore(new RecoveredState(0, null, null, [], 1, [], 0), h.Now));
        Assert.DoesNotContain(effects, e => e is Send);
        var proposed = h.Request(0, h.NewClient().CreateRequest(1, Put("a")));
        Assert.Contains(CoreHarness.Intents(proposed), m => m is Prepare);
    }

    [Fact]
    public void A_restarted_primary_does_not_propose_again_in_its_view_and_asks_for_a_view_change()
    {
        var h = new CoreHarness();
        var client = h.NewClient();
        var request = client.CreateRequest(1, Put("a"));
        for (var i = 0; i < h.N; i++) h.Request(i, request);
        h.Flush();
        Assert.All(h.Cores, c => Assert.Equal(1UL, c.ExecutedSequence));

        // Replica 0 (the primary) restarts from its durable sent log and its USIG counter.
        var log = h.Sent<CertifiedMessage>(0).OrderBy(m => m.Ui.Counter).ToList();
        var restarted = new CoreHarness(seed: 7).Cores[0]; // same keys (same seed), fresh state
        var ready = restarted.Restore(new RecoveredState(0, null, null, [], 1, log, log[^1].Ui.Counter), h.Now);
        Assert.Contains(ready.Effects.OfType<Send>(), s => s.Message is ReqViewChange { NewView: 1 });
        var after = restarted.OnRequest(client.CreateRequest(2, Put("b")), h.Now);
        Assert.DoesNotContain(CoreHarness.Intents(after.Effects), m => m is Prepare);
        // Its own PREPARE is known again: peers' COMMITs for it are not rejected as unknown.
        Assert.Equal(1, restarted.UnexecutedBatches);
    }

    [Fact]
    public void A_restart_after_counters_the_log_never_got_announces_itself_with_a_checkpoint()
    {
        var h = new CoreHarness();
        var request = h.NewClient().CreateRequest(1, Put("a"));
        for (var i = 0; i < h.N; i++) h.Request(i, request);
        h.Flush();
        var log = h.Sent<CertifiedMessage>(1).OrderBy(m => m.Ui.Counter).ToList();
        var restarted = new CoreHarness(seed: 7).Cores[1];
        // The USIG issued two more counters whose messages never became durable.
        var ready = restarted.Restore(new RecoveredState(0, null, null, [], 1, log, log[^1].Ui.Counter + 2), h.Now);
        Assert.True(restarted.RestartedAfterCounterGap);
        // The stored log starts over after the gap, and its first new message is a CHECKPOINT.
        var write = Assert.Single(ready.Effects.OfType<WriteLog>()).Write;
        Assert.Equal(log[^1].Ui.Counter + 3, write.RestartAt);
        Assert.IsType<Checkpoint>(Assert.Single(write.Intents));
        Assert.Equal(log[^1].Ui.Counter + 3, write.FirstIntentCounter);
        Assert.Equal(log[^1].Ui.Counter + 2, restarted.LastAccepted(1));
        Assert.Equal(1, restarted.SentLogCount); // the CHECKPOINT, waiting to be certified
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_restart_after_a_gap_withholds_its_view_change_while_its_log_hides_commitments(bool gap)
    {
        var h = new CoreHarness();
        var request = h.NewClient().CreateRequest(1, Put("a"));
        for (var i = 0; i < h.N; i++) h.Request(i, request);
        h.Flush();
        // Replica 1 committed to batch 1, then crashed while changing to view 1; with a gap, its
        // USIG had issued two counters whose messages never reached its log.
        var log = h.Sent<CertifiedMessage>(1).OrderBy(m => m.Ui.Counter).ToList();
        Assert.Contains(log, m => m is Commit { Prepare.Sequence: 1 });
        var usig = h.Usig(1);
        if (gap) for (var k = 0; k < 2; k++) usig.CreateUi(new byte[32]);
        var restarted = new CoreHarness(seed: 7).Cores[1];
        var effects = restarted.Restore(new RecoveredState(1, null, null, [], 1, log, usig.Counter), h.Now).Effects.ToList();
        Assert.Equal(gap, restarted.RestartedAfterCounterGap);
        Assert.Equal(gap ? 1UL : 0UL, restarted.GapCommitHorizon);

        // Drive its own log: writes complete, the USIG certifies, until nothing is left to do.
        var created = new List<CertifiedMessage>();
        for (var round = 0; round < 10; round++)
        {
            var next = new List<Effect>();
            foreach (var write in effects.OfType<WriteLog>())
            {
                created.AddRange(write.Write.Intents);
                next.AddRange(restarted.OnLogWritten(h.Now).Effects);
            }
            foreach (var certify in effects.OfType<CertifyUis>())
                next.AddRange(restarted.OnUisIssued(usig.CreateUis(certify.FirstCounter, certify.Digests), h.Now).Effects);
            effects = next;
        }
        // Without a gap its VIEW-CHANGE shows the COMMIT; after one it would not, so none is sent
        // (its stable checkpoint, 0, is below the batch it committed to).
        Assert.Equal(!gap, created.OfType<ViewChange>().Any());
        Assert.Equal(gap ? 1 : 0, restarted.ViewChangesWithheld);
    }

    [Fact]
    public void A_restart_re_issues_the_uis_of_logged_intents_and_certifies_intents_never_certified_under_their_counters()
    {
        var h = new CoreHarness();
        // One client, so that its second request is proposed at once (the primary would wait
        // MaxBatchWait for the first batch's client before cutting another client's batch alone).
        var client = h.NewClient();
        foreach (var seq in new ulong[] { 1, 2, 3 })
        {
            var request = client.CreateRequest(seq, Put("a"));
            for (var i = 0; i < h.N; i++) h.Request(i, request);
            h.Flush();
        }
        // Replica 1's log: its messages, two with their UIs not yet durable (re-issued), then one
        // intent the USIG never certified (logged just before the crash; the USIG is one behind).
        var sent = h.Sent<CertifiedMessage>(1).OrderBy(m => m.Ui.Counter).ToList();
        Assert.True(sent.Count >= 3, "replica 1 sent a COMMIT for each batch");
        var never = sent[^1];
        var usigCounter = never.Ui.Counter - 1;
        var log = sent.Take(sent.Count - 3).Concat(sent.TakeLast(3).Select(m => m.WithUi(UniqueIdentifier.None))).ToList();
        var state = new RecoveredState(0, null, null, [], 1, log, usigCounter);

        var reissue = state.UisToReissue();
        Assert.Equal(new[] { usigCounter - 1, usigCounter }, reissue.Select(r => r.Counter));
        var reissued = reissue.Select(r => h.Usig(1).ReissueUi(r.Counter, r.Digest)).ToList();
        Assert.All(reissued, ui => Assert.NotNull(ui));

        var restarted = new CoreHarness(seed: 7).Cores[1];
        var ready = restarted.Restore(state.WithReissued(reissued), h.Now);
        Assert.False(restarted.RestartedAfterCounterGap);
        Assert.Equal(usigCounter, restarted.LastAccepted(1));
        // Nothing is cut from the stored log; the re-issued UIs are written.
        var write = Assert.Single(ready.Effects.OfType<WriteLog>()).Write;
        Assert.Null(write.RestartAt);
        Assert.Equal(new[] { usigCounter - 1, usigCounter }, write.Uis.Select(ui => ui.Counter));
        Assert.Equal(sent.Count, restarted.SentLogCount);
        // The intent is certified next, under the counter it was logged with, and sent unchanged.
        var certify = Assert.Single(ready.Effects.OfType<CertifyUis>());
        Assert.Equal(never.Ui.Counter, certify.FirstCounter);
        Assert.Equal(MessageEncoding.CertifiedDigest(never), Assert.Single(certify.Digests));
        var certified = restarted.OnUisIssued(h.Usig(1).CreateUis(certify.FirstCounter, certify.Digests), h.Now);
        var resent = Assert.Single(certified.Effects.OfType<Send>(), s => s.Message is CertifiedMessage).Message;
        Assert.Equal(never.Ui.Counter, ((CertifiedMessage)resent).Ui.Counter);
        Assert.Equal(MessageEncoding.CertifiedDigest(never), MessageEncoding.CertifiedDigest((CertifiedMessage)resent));
        Assert.Equal(never.Ui.Counter, restarted.LastAccepted(1));
    }
}
