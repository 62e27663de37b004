using System.Diagnostics;
using MinBft.Application;
using MinBft.Encoding;
using MinBft.Messages;
using MinBft.Protocol;
using MinBft.Tests.Simulation;
using Xunit.Abstractions;

namespace MinBft.Tests.Protocol;

/// <summary>
/// A flood of new client identities (issue 11): more identities than the client table holds, each
/// running one request. The table stays at its cap, the snapshot stays under the bound that
/// CLIENT-SESSIONS-DESIGN.md states, and so does the memory the replica keeps.
/// </summary>
public sealed class ClientFloodTests(ITestOutputHelper output)
{
    /// <summary>Client ids cost an attacker nothing, so this test does not pay for 120,000 Ed25519
    /// signatures either: its request verifier accepts every well-formed request. Everything else is
    /// the production core.</summary>
    private sealed class AcceptEveryRequest : IRequestVerifier
    {
        public bool Verify(Request request) => true;
    }

    [Fact]
    public void A_flood_of_new_identities_keeps_the_client_table_at_its_cap_and_snapshot_and_memory_under_the_bound()
    {
        const int Cap = ProtocolSettings.DefaultMaxClientRecords, Identities = Cap + Cap / 5, BatchSize = 512;
        var keys = ClusterKeys.Create(1, new Random(11), hmac: false);
        var usig = keys.UsigFor(0);
        var settings = new ProtocolSettings
        {
            N = 1, ReplicaId = 0, MaxClientRecords = Cap,
            Tuning = new() { MaxBatchSize = BatchSize, MaxBatchWait = TimeSpan.Zero, MaxPendingRequests = BatchSize * 2 },
            UsigReissueWindow = SimUsig.ReissueWindow, UsigMaxBatch = SimUsig.MaxBatch,
        };
        var now = TimeSpan.FromSeconds(1);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var heapBefore = GC.GetTotalMemory(forceFullCollection: true);
        var core = new ReplicaCore(settings, keys.CryptoFor(0) with { Requests = new AcceptEveryRequest() }, new KeyValueStateMachine());

        EncodedSnapshot? lastSnapshot = null;
        var replies = 0L;
        var expired = 0L;
        void Complete(Ready ready)
        {
            // The host's part, done at once: log writes, USIG batches and checkpoint stores complete.
            foreach (var effect in ready.Effects)
            {
                switch (effect)
                {
                    case WriteLog: Complete(core.OnLogWritten(now)); break;
                    case CertifyUis certify: Complete(core.OnUisIssued(usig.CreateUis(certify.FirstCounter, certify.Digests), now)); break;
                    case StoreCheckpoint store:
                        lastSnapshot = store.Snapshot;
                        Complete(core.OnCheckpointStored(now));
                        break;
                    case SendReply reply:
                        replies++;
                        if (reply.Reply.Status == ReplyStatus.Expired) expired++;
                        break;
                }
            }
        }

        var clock = Stopwatch.StartNew();
        var rng = new Random(5);
        var publicKey = new byte[MessageLimits.PublicKeyLength];
        var signature = new byte[MessageLimits.SignatureLength];
        var read = KeyValueOperation.EncodeGet("k");
        for (var sent = 0; sent < Identities; sent += BatchSize)
        {
            var requests = new List<Request>(BatchSize);
            for (var i = sent; i < Math.Min(Identities, sent + BatchSize); i++)
            {
                var id = new byte[32];
                rng.NextBytes(id);
                // The worst case: each signs a position just proven (any replier could tell it one),
                // so every identity is admitted and takes a record.
                requests.Add(new Request(Convert.ToHexStringLower(id), publicKey, 1, read, signature, Incarnation: core.ExecutedSequence));
            }
            Complete(core.OnRequests(requests, now));
            now += TimeSpan.FromMilliseconds(1);
            Complete(core.OnTick(now));
        }
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var heapAfter = GC.GetTotalMemory(forceFullCollection: true);
        output.WriteLine($"{Identities} identities in {clock.Elapsed.TotalSeconds:F1} s: {core.ExecutedSequence} batches, {replies} replies ({expired} Expired), " +
                         $"{core.ClientRecordCount} records, horizon {core.ExpiryHorizon}, {core.ClientEvictions} evictions, " +
                         $"last snapshot {lastSnapshot?.Length / 1e6:F1} MB, heap grew {(heapAfter - heapBefore) / 1e6:F1} MB");

        Assert.Equal(Identities, replies);
        Assert.Equal(0, expired); // new identities with fresh incarnations are all admitted
        Assert.Equal(Cap, core.ClientRecordCount);
        Assert.Equal(Identities - Cap, core.ClientEvictions);
        Assert.True(core.ExpiryHorizon > 0);
        // The bound of CLIENT-SESSIONS-DESIGN.md. Snapshot: per record its fixed fields (125 bytes
        // with the id) and the result. Memory: per record about 750 bytes of objects (id, record,
        // cached reply with its Merkle path, two index entries) and the result, plus the snapshots
        // held for peers (at and above the stable checkpoint). These results are a few bytes.
        Assert.NotNull(lastSnapshot);
        Assert.InRange(lastSnapshot.Length, Cap * 100L, Cap * (125L + 16)); // the last checkpoint may precede a full table
        GC.KeepAlive(core);
        Assert.InRange(heapAfter - heapBefore, Cap * 500L, Cap * 800L + 3L * lastSnapshot.Length);
    }
}
