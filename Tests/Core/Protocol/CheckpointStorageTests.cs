using MinBft.Application;
using MinBft.Messages;
using MinBft.Protocol;

namespace MinBft.Tests.Protocol;

/// <summary>
/// When a replica hands its stable checkpoint to the host to store (StoreCheckpoint): the stored
/// checkpoint is what a restart resumes from and what lets the durable log be trimmed.
/// </summary>
public sealed class CheckpointStorageTests
{
    private static byte[] Put(string key, string value) => KeyValueOperation.EncodePut(key, System.Text.Encoding.UTF8.GetBytes(value));

    /// <summary>
    /// f+1 peers' CHECKPOINTs can make a position stable before this replica executed it: their
    /// votes count while the COMMITs ahead of them in the peers' streams are still missing here.
    /// Then there is no snapshot to store yet; once this replica executes the position and its
    /// own state is the certified one, it stores that checkpoint, not only the next one (a local
    /// cluster's primary once kept none for 60 s).
    /// </summary>
    [Fact]
    public void A_checkpoint_certified_before_this_replica_executed_it_is_stored_once_it_does()
    {
        const ulong interval = 2;
        var h = new CoreHarness(tune: s => s with { CheckpointInterval = (int)interval, Watermark = 8 });
        var client = h.NewClient();
        // The primary (0) proposes two positions; only the backups hear each other.
        for (ulong seq = 1; seq <= interval; seq++)
        {
            var request = client.CreateRequest(seq, Put("k" + seq, "v" + seq));
            for (var i = 0; i < h.N; i++) h.Request(i, request);
            h.Now += TimeSpan.FromMilliseconds(10);
            h.Tick(0); // its batch wait is over: the second position is proposed too
            foreach (var prepare in h.Sent<Prepare>(0).Where(p => p.Sequence == seq))
                for (var backup = 1; backup < h.N; backup++) h.Deliver(backup, prepare);
            h.Flush(1, 2);
        }
        Assert.All(h.Cores.Skip(1), c => Assert.Equal(interval, c.StableCheckpoint.Sequence));
        Assert.Equal(0UL, h.Cores[0].ExecutedSequence);

        // The backups' CHECKPOINTs reach the primary before their COMMITs: stable, nothing to store.
        var early = new List<Effect>();
        for (var backup = 1; backup < h.N; backup++)
            foreach (var checkpoint in h.Sent<Checkpoint>(backup).Where(c => c.Sequence == interval))
                early.AddRange(h.Deliver(0, checkpoint));
        Assert.Equal(interval, h.Cores[0].StableCheckpoint.Sequence);
        Assert.Equal(0UL, h.Cores[0].ExecutedSequence);
        Assert.DoesNotContain(early, e => e is StoreCheckpoint);

        // The COMMITs arrive: the primary executes both positions and stores that checkpoint.
        var late = new List<Effect>();
        for (var backup = 1; backup < h.N; backup++)
            foreach (var commit in h.Sent<Commit>(backup))
                late.AddRange(h.Deliver(0, commit));
        Assert.Equal(interval, h.Cores[0].ExecutedSequence);
        var stored = Assert.Single(late.OfType<StoreCheckpoint>());
        Assert.Equal(interval, stored.Certificate.Sequence);
        Assert.Equal(interval, h.Cores[0].StoredCheckpoint);
    }
}
