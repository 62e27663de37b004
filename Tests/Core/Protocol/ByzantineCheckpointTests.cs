using MinBft.Application;
using MinBft.Messages;
using MinBft.Protocol;

namespace MinBft.Tests.Protocol;

/// <summary>
/// Bogus CHECKPOINTs from the f Byzantine replicas of an f = 2 cluster (issue 11): a wrong state
/// digest, a position far ahead of the stream, and a replay of an old one. A stable checkpoint
/// needs f+1 matching CHECKPOINTs, so f replicas alone can neither make one nor make a correct
/// replica fetch or install state; the correct replicas' own checkpoints still become stable.
/// </summary>
public sealed class ByzantineCheckpointTests
{
    private static readonly int[] Correct = [0, 1, 2];
    private static readonly int[] Byzantine = [3, 4];

    private static byte[] Put(string key, string value) => KeyValueOperation.EncodePut(key, System.Text.Encoding.UTF8.GetBytes(value));

    /// <summary>Correct replicas 0..2 order <paramref name="requests"/> requests among themselves
    /// (f+1 = 3 is a commit quorum), K = 2, so they checkpoint every two batches.</summary>
    private static CoreHarness Run(int requests)
    {
        var h = new CoreHarness(f: 2, tune: s => s with
        {
            CheckpointInterval = 2, Watermark = 8,
            Tuning = s.Tuning with { MaxInFlightBatches = 1, MaxBatchSize = 1 },
        });
        var client = h.NewClient();
        for (ulong seq = 1; seq <= (ulong)requests; seq++)
        {
            var request = client.CreateRequest(seq, Put("k" + seq, "v" + seq));
            foreach (var i in Correct) h.Request(i, request);
            h.Flush(Correct);
        }
        return h;
    }

    private static void DeliverToCorrect(CoreHarness h, CertifiedMessage message)
    {
        foreach (var i in Correct) h.Deliver(i, message);
    }

    [Theory]
    [InlineData("wrong state digest")]
    [InlineData("ahead of the stream")]
    public void Matching_bogus_checkpoints_from_f_replicas_never_become_stable_nor_start_a_state_transfer(string attack)
    {
        var h = Run(requests: 4);
        var before = h.Cores.Take(3).Select(c => (c.StableCheckpoint.Sequence, Digest: Convert.ToHexString(c.StableCheckpoint.StateDigest), c.ExecutedSequence)).ToList();
        Assert.All(before, b => Assert.Equal(4UL, b.Sequence));

        // Both Byzantine replicas agree on the same lie, each certified by its own (real) USIG.
        var (sequence, digest) = attack switch
        {
            "wrong state digest" => (6UL, Enumerable.Repeat((byte)0xAB, 32).ToArray()),
            _ => (1_000UL, Enumerable.Repeat((byte)0xCD, 32).ToArray()),
        };
        foreach (var b in Byzantine) DeliverToCorrect(h, h.Certify(b, new Checkpoint(b, 0, sequence, digest, UniqueIdentifier.None)));
        h.Now += TimeSpan.FromSeconds(5); // timers fire: nothing may move on f CHECKPOINTs alone
        foreach (var i in Correct) h.Tick(i);

        for (var i = 0; i < Correct.Length; i++)
        {
            var core = h.Cores[i];
            Assert.Equal(before[i].Sequence, core.StableCheckpoint.Sequence);
            Assert.Equal(before[i].ExecutedSequence, core.ExecutedSequence);
            Assert.False(core.StateTransferInProgress, $"replica {i} started a state transfer on f CHECKPOINTs");
            Assert.Empty(h.Outbox[i].OfType<StateInstalled>());
        }

        // The correct replicas go on; their own checkpoint at 6 becomes stable with the true digest.
        var client = h.NewClient();
        for (ulong seq = 1; seq <= 2; seq++)
        {
            var request = client.CreateRequest(seq, Put("after" + seq, "x"));
            foreach (var i in Correct) h.Request(i, request);
            h.Flush(Correct);
        }
        foreach (var i in Correct)
        {
            var core = h.Cores[i];
            Assert.Equal(6UL, core.StableCheckpoint.Sequence);
            Assert.False(core.StableCheckpoint.StateDigest.AsSpan().SequenceEqual(digest), "a stable checkpoint took the Byzantine digest");
            Assert.All(core.StableCheckpoint.Checkpoints, c => Assert.Contains(c.ReplicaId, Correct));
        }
    }

    [Fact]
    public void A_replayed_old_checkpoint_is_rejected_and_changes_nothing()
    {
        var h = Run(requests: 4);
        // Replica 3 took part honestly in nothing; it replays replica 1's first CHECKPOINT as
        // received (its own UI, so it authenticates), to replica 0 which already accepted it.
        var old = h.Sent<Checkpoint>(1).OrderBy(c => c.Sequence).First();
        var stable = h.Cores[0].StableCheckpoint;
        var rejections = h.Cores[0].Rejections.Values.Sum();
        var effects = h.Deliver(0, old);
        Assert.Same(stable, h.Cores[0].StableCheckpoint);
        Assert.DoesNotContain(effects, e => e is Send or StoreCheckpoint or StateInstalled);
        Assert.True(h.Cores[0].Rejections.Values.Sum() > rejections, "the replay is counted as rejected");
    }
}
