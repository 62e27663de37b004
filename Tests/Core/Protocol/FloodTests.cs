using MinBft.Application;
using MinBft.Encoding;
using MinBft.Messages;
using MinBft.Protocol;

namespace MinBft.Tests.Protocol;

/// <summary>
/// Floods (issue 11): buffers are bounded in bytes, not only in count. A Byzantine replica with
/// a real USIG filling a peer's reorder buffer with maximum-size messages, maximum-size requests
/// from many clients at a primary, and PREPAREs over the batch byte limit.
/// </summary>
public sealed class FloodTests
{
    /// <summary>The largest operation a client may send (the key-value machine answers it with an
    /// error result; the protocol neither knows nor cares).</summary>
    private static byte[] MaxSizePut(int i)
    {
        var op = new byte[MessageLimits.MaxOperationLength];
        BitConverter.TryWriteBytes(op, i);
        return op;
    }

    /// <summary>As many maximum-size requests as fit in one PREPARE.</summary>
    private static Request[] MaxSizeBatch(CoreHarness h)
    {
        var requests = new List<Request>();
        long bytes = 0;
        while (true)
        {
            var request = h.NewClient().CreateRequest(1, MaxSizePut(requests.Count));
            if (bytes + MessageLimits.RequestBytes(request) > MessageLimits.MaxBatchBytes) return requests.ToArray();
            bytes += MessageLimits.RequestBytes(request);
            requests.Add(request);
        }
    }

    [Fact]
    public void A_Byzantine_replica_filling_a_peers_reorder_buffer_with_maximum_size_messages_stays_within_the_byte_bound()
    {
        const long budget = 2L * 1024 * 1024;
        var h = new CoreHarness(tune: s => s with { Tuning = s.Tuning with { ReorderBufferBytesPerSender = budget } });
        const int rogue = 2, victim = 1;
        var batch = MaxSizeBatch(h);
        var one = MessageLimits.ApproximateBytes(new Prepare(0, rogue, 1, batch, UniqueIdentifier.None));
        Assert.True(one * 40 > budget * 3, "the flood is several times the budget");

        // Counter 1 is certified and withheld: everything after it waits behind the gap.
        h.Certify(rogue, new Checkpoint(rogue, 0, 0, new byte[32], UniqueIdentifier.None));
        for (ulong s = 1; s <= 40; s++)
            h.Deliver(victim, h.Certify(rogue, new Prepare(0, rogue, s, batch, UniqueIdentifier.None)));

        var core = h.Cores[victim];
        Assert.InRange(core.BufferedBytesFrom(rogue), one, budget);
        Assert.Equal((int)(budget / one), core.BufferedFrom(rogue));
        Assert.True(core.RejectionCount(RejectReason.ReorderBufferFull) >= 40 - budget / one);

        // The correct replicas still order among themselves (f+1 = 2 is a quorum).
        var client = h.NewClient();
        var request = client.CreateRequest(1, KeyValueOperation.EncodePut("a", [1]));
        h.Request(0, request);
        h.Request(victim, request);
        h.Now += TimeSpan.FromMilliseconds(10);
        h.Tick(0);
        h.Flush(0, victim);
        Assert.Equal(1UL, h.Cores[0].ExecutedSequence);
        Assert.Equal(1UL, core.ExecutedSequence);
        Assert.InRange(core.BufferedBytesFrom(rogue), one, budget);
    }

    [Fact]
    public void A_Byzantine_replica_sending_view_changes_for_every_view_ahead_has_only_its_latest_held()
    {
        // Each of its VIEW-CHANGEs is valid (complete log, real USIG): without a bound a replica
        // would hold one per view up to the lookahead, each as large as a full log.
        var h = new CoreHarness();
        var log = new List<CertifiedMessage>();
        for (var view = 1; view <= 10; view++)
        {
            var viewChange = h.Certify(2, new ViewChange(2, view, CheckpointCertificate.Genesis, [.. log], UniqueIdentifier.None, []));
            var effects = h.Deliver(0, viewChange);
            Assert.DoesNotContain(effects.OfType<Rejected>(), r => r.From == 2);
            Assert.Equal(1, h.Cores[0].HeldViewChanges);
            log.Add(MessageEncoding.ForLog(viewChange));
        }
        Assert.Equal(0, h.Cores[0].View); // one replica's VIEW-CHANGEs are one vote, not f+1
    }

    [Fact]
    public void A_large_message_next_in_line_is_kept_even_when_it_alone_exceeds_the_byte_bound()
    {
        var h = new CoreHarness(tune: s => s with { Tuning = s.Tuning with { ReorderBufferBytesPerSender = 1024 } });
        const int rogue = 2, victim = 1;
        var batch = MaxSizeBatch(h);
        var gap = h.Certify(rogue, new Checkpoint(rogue, 0, 0, new byte[32], UniqueIdentifier.None));
        var big = h.Certify(rogue, new Prepare(0, rogue, 1, batch, UniqueIdentifier.None));
        var bigger = h.Certify(rogue, new Prepare(0, rogue, 2, batch, UniqueIdentifier.None));
        h.Deliver(victim, bigger);
        h.Deliver(victim, big);
        // The lower counter displaces the higher one; one message stays, whatever its size.
        Assert.Equal(1, h.Cores[victim].BufferedFrom(rogue));
        Assert.Equal(MessageLimits.ApproximateBytes(big), h.Cores[victim].BufferedBytesFrom(rogue));
        h.Deliver(victim, gap);
        Assert.Equal(0, h.Cores[victim].BufferedFrom(rogue));
        Assert.Equal(0, h.Cores[victim].BufferedBytesFrom(rogue));
    }

    [Fact]
    public void A_prepare_over_the_batch_byte_limit_is_refused_as_malformed()
    {
        var h = new CoreHarness();
        var batch = MaxSizeBatch(h).Append(h.NewClient().CreateRequest(1, MaxSizePut(99))).ToArray();
        Assert.True(MessageLimits.BatchBytes(batch) > MessageLimits.MaxBatchBytes);
        Assert.Equal("batch too large in bytes", MessageLimits.Check(new Prepare(0, 0, 1, batch, UniqueIdentifier.None)));

        h.Deliver(1, h.Certify(0, new Prepare(0, 0, 1, batch, UniqueIdentifier.None)));
        Assert.Equal(1, h.Cores[1].RejectionCount(RejectReason.Malformed));
        Assert.Equal(0UL, h.Cores[1].ExecutedSequence);
        Assert.Empty(h.Sent<Commit>(1));
    }

    [Fact]
    public void Maximum_size_requests_from_many_clients_are_cut_into_prepares_within_the_byte_limit_and_all_execute()
    {
        var h = new CoreHarness(tune: s => s with { Tuning = s.Tuning with { MaxBatchSize = 64 } });
        var requests = Enumerable.Range(0, 12).Select(i => h.NewClient().CreateRequest(1, MaxSizePut(i))).ToList();
        foreach (var request in requests)
            for (var i = 0; i < h.N; i++) h.Request(i, request);
        for (var round = 0; round < 20 && h.Cores.Any(c => c.ExecutedSequence < (ulong)h.Sent<Prepare>(0).Count || h.Cores[0].PendingRequests > 0); round++)
        {
            h.Now += TimeSpan.FromMilliseconds(10);
            h.Tick(0);
            h.Flush();
        }
        var prepares = h.Sent<Prepare>(0);
        Assert.True(prepares.Count >= 4, $"12 maximum-size requests need several PREPAREs, got {prepares.Count}");
        Assert.All(prepares, p => Assert.InRange(MessageLimits.BatchBytes(p.Batch), 1, MessageLimits.MaxBatchBytes));
        Assert.Equal(12, prepares.Sum(p => p.Batch.Length));
        Assert.All(h.Cores, c => Assert.Equal((ulong)prepares.Count, c.ExecutedSequence));
    }

    [Fact]
    public void Requests_waiting_at_a_primary_are_bounded_in_bytes_and_the_rest_is_refused_as_overloaded()
    {
        var h = new CoreHarness(tune: s => s with
        {
            Tuning = s.Tuning with { MaxInFlightBatches = 1, MaxPendingRequestBytes = MessageLimits.MaxBatchBytes },
        });
        h.AutoIssueUi = false; // the first PREPARE waits for its UI, so later requests stay pending
        var requests = Enumerable.Range(0, 10).Select(i => h.NewClient().CreateRequest(1, MaxSizePut(i))).ToList();
        foreach (var request in requests) h.Request(0, request);

        var primary = h.Cores[0];
        var fit = (int)(MessageLimits.MaxBatchBytes / MessageLimits.RequestBytes(requests[0]));
        Assert.Equal(fit, primary.PendingRequests);
        Assert.InRange(primary.PendingRequestBytes, 1, MessageLimits.MaxBatchBytes);
        Assert.Equal(10 - 1 - fit, primary.RejectionCount(RejectReason.Overloaded));
    }

    [Fact]
    public void A_backup_forwards_a_request_the_primary_leaves_unordered_at_doubling_intervals_not_every_interval()
    {
        // A slow primary must not get every request it is still ordering again each interval
        // from every backup: that flood once kept a starved primary from ordering anything.
        var h = new CoreHarness(tune: s => s with { Tuning = s.Tuning with { RequestTimeout = TimeSpan.FromMinutes(5), ViewChangeTimeout = TimeSpan.FromMinutes(5) } });
        var interval = h.Cores[1].Settings.Tuning.RetransmitInterval;
        var request = h.NewClient().CreateRequest(1, MaxSizePut(0));
        var seen = h.Now;
        h.Request(1, request); // the backup alone: the primary never gets the request from the client

        var forwards = new List<TimeSpan>();
        var step = interval / 8;
        while (h.Now - seen < interval * 40)
        {
            h.Now += step;
            foreach (var forward in h.Tick(1).OfType<ForwardRequest>())
            {
                Assert.Equal(0, forward.To);
                Assert.Same(request, forward.Request);
                forwards.Add(h.Now - seen);
            }
        }

        // After 1, 3, 7, 15, 23, 31, 39 intervals: each wait twice the last, at most 8 intervals.
        Assert.True(forwards.Count is >= 6 and <= 8, $"{forwards.Count} forwards in 40 intervals: {string.Join(", ", forwards)}");
        Assert.InRange(forwards[0], interval, interval + step);
        var gaps = forwards.Zip(forwards.Skip(1), (a, b) => b - a).ToList();
        for (var i = 0; i < gaps.Count; i++)
        {
            var expected = interval * (1 << Math.Min(i + 1, 3));
            Assert.InRange(gaps[i], expected, expected + step);
        }
    }
}
