using System.Security.Cryptography;
using MinBft.Application;
using MinBft.Protocol;

namespace MinBft.Tests.Protocol;

/// <summary>
/// What a checkpoint costs the replicated service. A CHECKPOINT needs the state's digest and the
/// snapshot peers may fetch; both come from one encoding of the state, not one each, because
/// that encoding grows with the state however light the load.
/// </summary>
public sealed class CheckpointCostTests
{
    private static byte[] Put(string key, string value) => KeyValueOperation.EncodePut(key, System.Text.Encoding.UTF8.GetBytes(value));

    [Fact]
    public void Each_checkpoint_encodes_the_application_state_once_and_stores_that_encoding()
    {
        const int requests = 8, interval = 2;
        var h = new CoreHarness(tune: s => s with
        {
            CheckpointInterval = interval, Watermark = 8,
            Tuning = s.Tuning with { MaxInFlightBatches = 1, MaxBatchSize = 1 },
        });
        // A core digests the empty state when it is made (where views starting at 0 begin).
        var atStart = h.Apps.Select(a => a.SnapshotEncodings).ToArray();
        var client = h.NewClient();
        for (ulong seq = 1; seq <= requests; seq++)
        {
            var request = client.CreateRequest(seq, Put("k" + seq, "v" + seq));
            for (var i = 0; i < h.N; i++) h.Request(i, request);
            h.Flush();
        }

        for (var i = 0; i < h.N; i++)
        {
            Assert.Equal((ulong)requests, h.Cores[i].ExecutedSequence);
            Assert.Equal((ulong)requests, h.Cores[i].StableCheckpoint.Sequence);
            Assert.Equal(requests / interval, h.Apps[i].SnapshotEncodings - atStart[i]);

            // The snapshot kept for the newest checkpoint is the state the digest covered.
            var stored = h.Outbox[i].OfType<StoreCheckpoint>().Last(s => s.Certificate.Sequence == requests);
            var snapshot = StateSnapshot.TryDecode(stored.Snapshot);
            Assert.NotNull(snapshot);
            var fresh = new KeyValueStateMachine();
            Assert.True(fresh.TryRestore(snapshot.Application));
            Assert.Equal(requests, fresh.Count);
            Assert.Equal(SHA256.HashData(snapshot.Application), h.Apps[i].Digest());
        }
    }
}
