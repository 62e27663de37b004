using MinBft.Messages;
using MinBft.Protocol;

namespace MinBft.Tests.Simulation;

/// <summary>
/// Hosts one real core the way a grain would: applies each Ready's effects in order, runs a
/// USIG that certifies requested messages one at a time, and schedules the next tick. A
/// tampering replica runs the same core but corrupts, drops and replays what it sends.
/// </summary>
internal sealed class SimReplica(Simulation sim, int id, ReplicaCore core, SimUsig usig, bool tampering, bool badSnapshots = false)
{
    private readonly Queue<CertifiedMessage> _uiRequests = new();
    private readonly List<ReplicaMessage> _seen = [];
    private TimeSpan _usigFreeAt;
    private TimeSpan? _tickAt;

    public ReplicaCore Core { get; } = core;
    public bool Tampering { get; } = tampering;
    public bool BadSnapshots { get; } = badSnapshots;
    public SimUsig Usig => usig;

    /// <summary>Replaced by a restarted incarnation: its pending events do nothing.</summary>
    public bool Retired { get; set; }

    /// <summary>What survives a crash: the sent log (durable before send) and the stored checkpoint.</summary>
    public List<CertifiedMessage> DurableLog { get; init; } = [];
    public CheckpointStable? StoredCheckpoint { get; set; }

    public string Describe()
    {
        var c = Core;
        return $"replica {id}: view {c.View}{(c.ViewChanging ? " (changing)" : "")} executed {c.ExecutedSequence} stable {c.StableCheckpoint.Sequence} " +
               $"awaiting-ui {c.AwaitingUiCount} pending {c.PendingRequests} unexecuted {c.UnexecutedBatches} streams " +
               string.Join(" ", Enumerable.Range(0, sim.N).Select(j => $"{j}:{c.LastAccepted(j)}+{c.BufferedFrom(j)}"));
    }

    public void Apply(Ready ready)
    {
        foreach (var effect in ready.Effects)
        {
            switch (effect)
            {
                case RequestUi request:
                    _uiRequests.Enqueue(request.Message);
                    // The USIG serves requests one at a time, in order, each after a short delay
                    // (the durable counter write).
                    _usigFreeAt = (_usigFreeAt > sim.Now ? _usigFreeAt : sim.Now) + TimeSpan.FromTicks(sim.Rng.Next(1, 5000));
                    sim.Events.At(_usigFreeAt, IssueNextUi);
                    break;
                case PersistSent persist:
                    DurableLog.Add(persist.Message);
                    break;
                case CheckpointStable stable:
                    StoredCheckpoint = stable;
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

    private void IssueNextUi()
    {
        if (Retired) return; // the crash lost the request; the restarted core asks anew
        var message = _uiRequests.Dequeue();
        var ui = usig.CreateUi(MinBft.Encoding.MessageEncoding.CertifiedDigest(message));
        sim.Step(id, c => c.OnUiIssued(message.WithUi(ui), sim.Now));
    }

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
}
