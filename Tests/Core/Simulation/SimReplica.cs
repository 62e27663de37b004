using MinBft.Messages;
using MinBft.Crypto;
using MinBft.Encoding;
using MinBft.Protocol;

namespace MinBft.Tests.Simulation;

/// <summary>
/// Hosts one real core the way the replica grain does: applies each Ready's effects as they come,
/// runs the three durable operations (log write, USIG batch, checkpoint store) one of each kind at
/// a time with seeded latencies, and reports each completion back to the core. What is durable
/// lives in <see cref="Journal"/>, <see cref="StoredCheckpoint"/> and the USIG's store, so a crash
/// at any moment, between any two of those writes, keeps exactly what the real host would keep.
/// A tampering replica runs the same core but corrupts, drops and replays what it sends.
/// </summary>
internal sealed class SimReplica(Simulation sim, int id, ReplicaCore core, SimUsig usig, bool tampering, bool badSnapshots = false)
{
    private readonly List<ReplicaMessage> _seen = [];
    private TimeSpan? _tickAt;

    public ReplicaCore Core { get; } = core;
    public bool Tampering { get; } = tampering;
    public bool BadSnapshots { get; } = badSnapshots;
    public SimUsig Usig => usig;

    /// <summary>Replaced by a restarted incarnation: its pending events do nothing.</summary>
    public bool Retired { get; set; }

    /// <summary>What survives a crash: the durable log and the stored checkpoint (and the USIG's store).</summary>
    public SimJournal Journal { get; init; } = new();

    /// <summary>HMAC runs: what the core verifies UIs with, filled by the replica's own USIG.</summary>
    public SimPreverifier? Preverifier { get; init; }
    public StoreCheckpoint? StoredCheckpoint { get; set; }

    public string Describe()
    {
        var c = Core;
        var own = c.OwnLogPositions;
        return $"replica {id}: view {c.View}{(c.ViewChanging ? " (changing)" : "")} executed {c.ExecutedSequence} stable {c.StableCheckpoint.Sequence} " +
               $"own appended {own.Appended} durable {own.Durable} certified {own.Certified} ui-durable {own.UiDurable} " +
               $"pending {c.PendingRequests} unexecuted {c.UnexecutedBatches} client records {c.ClientRecordCount} expiry horizon {c.ExpiryHorizon} streams " +
               string.Join(" ", Enumerable.Range(0, sim.N).Select(j => $"{j}:{c.LastAccepted(j)}+{c.BufferedFrom(j)}")) +
               $" {c.DescribeOrdering()} rejected [{string.Join(" ", c.Rejections.Select(r => $"{r.Key}:{r.Value}"))}]";
    }

    public void Apply(Ready ready)
    {
        foreach (var effect in ready.Effects)
        {
            switch (effect)
            {
                case WriteLog write:
                    // Durable only if the replica is still up when the write completes.
                    sim.Events.After(Latency(), () =>
                    {
                        if (!Alive) return;
                        Journal.Apply(write.Write);
                        if (sim.AfterDurableWrite(id)) sim.Step(id, c => c.OnLogWritten(sim.Now));
                    });
                    break;
                case CertifyUis certify:
                    if (certify.Kept is not null) sim.KeptBatches++;
                    sim.Events.After(Latency(), () =>
                    {
                        if (!Alive) return;
                        var uis = usig.CreateUis(certify.FirstCounter, certify.Digests, certify.Kept); // durable in the USIG from here on
                        if (!sim.AfterDurableWrite(id)) return;
                        // The UIs travel back to the replica: a crash before they arrive loses them in memory.
                        sim.Events.After(TimeSpan.FromTicks(sim.Rng.Next(1, 500)), () =>
                        {
                            if (Alive) sim.Step(id, c => c.OnUisIssued(uis, sim.Now));
                        });
                    });
                    break;
                case StoreCheckpoint store:
                    sim.Events.After(Latency(), () =>
                    {
                        if (!Alive) return;
                        StoredCheckpoint = store;
                        if (sim.AfterDurableWrite(id)) sim.Step(id, c => c.OnCheckpointStored(sim.Now));
                    });
                    break;
                case StateInstalled installed:
                    sim.OnInstalled(id, installed);
                    break;
                case Send send:
                    for (var to = 0; to < sim.N; to++)
                        if (to != id && (send.To is null || send.To == to)) Send(to, send.Message);
                    break;
                case ForwardRequest forward:
                    sim.TransmitRequest(forward.To, forward.Request);
                    break;
                case SendReply reply:
                    if (Tampering && sim.TamperReplies && sim.Rng.NextDouble() < 0.7)
                    {
                        sim.TransmitReply(ForgeReply(reply.Reply, sim.Rng));
                        if (sim.Rng.Next(2) == 0) break; // and sometimes withholds the genuine one
                    }
                    sim.TransmitReply(reply.Reply);
                    break;
                case Executed executed:
                    sim.OnExecuted(id, executed);
                    break;
                case Rejected rejected:
                    sim.OnRejected(id, rejected);
                    break;
            }
        }
        if (ready.NextTick is { } next && (_tickAt is null || next < _tickAt || _tickAt < sim.Now))
        {
            _tickAt = next;
            sim.Events.At(next, () =>
            {
                if (_tickAt != next || Retired) return; // superseded by an earlier tick, or a restart
                _tickAt = null;
                sim.Step(id, c => c.OnTick(sim.Now));
            });
        }
    }

    private bool Alive => !Retired && !sim.IsDown(id);

    /// <summary>A durable write's latency: up to half a millisecond.</summary>
    private TimeSpan Latency() => TimeSpan.FromTicks(sim.Rng.Next(1, 5000));

    private void Send(int to, ReplicaMessage message)
    {
        if (BadSnapshots && message is StateChunk chunk)
        {
            sim.Transmit(id, to, Tamper.CorruptChunk(chunk, sim.Rng));
            return;
        }
        if (!Tampering)
        {
            sim.Transmit(id, to, message);
            return;
        }
        _seen.Add(message);
        var rng = sim.Rng;
        var roll = rng.NextDouble();
        if (roll < 0.15) return; // withhold: peers see a gap and must ask again
        if (roll < 0.45)
        {
            sim.Transmit(id, to, Tamper.Mutate(message, rng));
            if (rng.NextDouble() < 0.5) return;
        }
        sim.Transmit(id, to, message);
        if (rng.NextDouble() < 0.2 && _seen.Count > 0) sim.Transmit(id, to, _seen[rng.Next(_seen.Count)]); // replay
    }

    /// <summary>
    /// A forged REPLY, validly signed with this replica's own key: a made-up result (the same bytes
    /// at every tampering replica, so f of them agree), the client's next seq, or another client's
    /// current request. Only f+1 matching replies from distinct replicas may complete a request.
    /// </summary>
    private Reply ForgeReply(Reply genuine, Random rng)
    {
        var (clientId, seq, digest) = (genuine.ClientId, genuine.Seq, genuine.RequestDigest);
        switch (rng.Next(3))
        {
            case 1:
                seq = genuine.Seq + 1;
                break;
            case 2 when sim.CurrentRequestOfAnotherClient(genuine.ClientId, rng) is { } other:
                (clientId, seq, digest) = (other.ClientId, other.Seq, MessageEncoding.RequestDigest(other));
                break;
        }
        var content = new ReplyContent(genuine.View, clientId, seq, digest, "FORGED BY f REPLICAS"u8.ToArray(), genuine.Status, genuine.Position);
        return ReplyBatchSigner.Sign(sim.SignerFor(id), id, [content])[0];
    }
}
