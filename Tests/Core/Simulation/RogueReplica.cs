using MinBft.Encoding;
using MinBft.Messages;

namespace MinBft.Tests.Simulation;

/// <summary>
/// A Byzantine replica with no core: it holds its real USIG and signing key and sends anything
/// they can authenticate. As primary it equivocates (different batches to different backups);
/// as a backup it commits to mutated or skipped PREPAREs, claims the primary's role, uses wrong
/// views, withholds counters, replays others' messages and forges others' UIs. The USIG still
/// binds each counter to one message, which is all MinBFT needs.
/// </summary>
internal sealed class RogueReplica(Simulation sim, int id, ClusterKeys keys, SimulationOptions options)
{
    private readonly SimUsig _usig = keys.UsigFor(id);

    // The negative control: a second instance of this replica's USIG (same key, epoch, counter).
    private readonly SimUsig? _clone = options.ClonedUsig ? keys.UsigFor(id) : null;
    private readonly List<ViewChange> _viewChanges = [];
    private long _view; // the highest view it has heard of
    private readonly List<ReplicaMessage> _heard = [];
    private readonly List<Request> _requests = [];
    private readonly List<CertifiedMessage> _sent = [];
    private readonly List<Request> _ordered = [];
    private ulong _nextPosition = 1;

    public void Start() => sim.Events.After(TimeSpan.FromMilliseconds(5), Act);

    public void OnRequest(Request request)
    {
        if (_requests.Count < 256) _requests.Add(request);
    }

    public void OnMessage(ReplicaMessage message)
    {
        if (_heard.Count < 512) _heard.Add(message);
        switch (message)
        {
            case ViewChange vc:
                if (_viewChanges.Count < 128) _viewChanges.Add(vc);
                _view = Math.Max(_view, vc.NewView);
                break;
            case NewView nv:
                _view = Math.Max(_view, nv.View);
                break;
            case Prepare p when options.RogueInLaterViews && p.View >= _view:
                _view = p.View;
                _nextPosition = Math.Max(_nextPosition, p.Sequence + 1);
                break;
        }
        if (_clone is not null) return; // it certifies nothing else: both instances stay at one counter
        var rng = sim.Rng;
        switch (message)
        {
            case Prepare p when rng.NextDouble() < 0.7:
                CommitTo(p, rng);
                break;
            case Commit c when rng.NextDouble() < 0.3:
                CommitTo(c.Prepare, rng);
                break;
            case ViewChangeFetch fetch when rng.NextDouble() < 0.5 && _viewChanges.Count > 0:
                // Answer with any VIEW-CHANGE it heard, asked for or not: only the one a waiting
                // NEW-VIEW refers to may be kept.
                sim.Transmit(id, fetch.ReplicaId, new ViewChangeRelay(id, _viewChanges[rng.Next(_viewChanges.Count)]));
                break;
            case RetransmitRequest r when rng.NextDouble() < 0.5:
                // Answer honestly sometimes: a faulty replica may also behave.
                foreach (var m in _sent.Where(m => m.Ui.Counter >= r.FromCounter).Take(16)) sim.Transmit(id, r.ReplicaId, m);
                break;
        }
    }

    /// <summary>Periodic misbehaviour, independent of what arrives.</summary>
    private void Act()
    {
        var rng = sim.Rng;
        if (_clone is not null)
        {
            if (id == 0) EquivocateWithTheClone(rng);
            if (sim.Now < TimeSpan.FromSeconds(10)) sim.Events.After(TimeSpan.FromMilliseconds(rng.Next(5, 60)), Act);
            return;
        }
        if (id == 0 && _requests.Count > 0) Equivocate(rng, 0);
        if (options.RogueInLaterViews)
        {
            if (_view > 0 && _view % sim.N == id && _requests.Count > 0) Equivocate(rng, _view);
            if (rng.NextDouble() < 0.3) SendBogusNewView(rng);
        }
        if (options.RogueCheckpoints && rng.NextDouble() < 0.4) SendBogusCheckpoint(rng);
        if (rng.NextDouble() < 0.4) Impersonate(rng);
        if (rng.NextDouble() < 0.3)
        {
            // Spam suspicion: f faulty replicas alone must never move the view.
            var target = (long)rng.Next(1, 4);
            var unsigned = new ReqViewChange(id, target - 1, target, []);
            var signed = unsigned with { Signature = keys.SignerFor(id).Sign(MessageEncoding.ReqViewChange(unsigned)) };
            for (var to = 0; to < sim.N; to++) if (to != id) sim.Transmit(id, to, signed);
        }
        if (rng.NextDouble() < 0.1 && _sent.Count > 1)
        {
            // A VIEW-CHANGE whose log leaves out its sender's earlier messages.
            var truncated = _sent.Skip(_sent.Count / 2).Select(MessageEncoding.ForLog).ToArray();
            Broadcast(Certify(new ViewChange(id, rng.Next(1, 3), CheckpointCertificate.Genesis, truncated, UniqueIdentifier.None, [])), rng);
        }
        if (rng.NextDouble() < 0.3 && _heard.Count > 0)
        {
            var replayed = _heard[rng.Next(_heard.Count)];
            sim.Transmit(id, RandomPeer(rng), replayed);
        }
        if (rng.NextDouble() < 0.3 && _heard.OfType<CertifiedMessage>().LastOrDefault() is { } victim)
        {
            // Forge: someone else's message with an invented UI.
            var forged = victim.WithUi(victim.Ui with { Counter = victim.Ui.Counter + 1 + (ulong)rng.Next(3), Certificate = ForgedCertificate(rng) });
            sim.Transmit(id, RandomPeer(rng), forged);
        }
        if (rng.NextDouble() < 0.2 && _requests.Count > 0 && id != 0)
        {
            // A PREPARE from a replica that is not the primary: validly certified, still invalid.
            Broadcast(Certify(new Prepare(0, id, (ulong)rng.Next(1, 20), [_requests[rng.Next(_requests.Count)]], UniqueIdentifier.None)), rng);
        }
        if (sim.Now < TimeSpan.FromSeconds(10)) sim.Events.After(TimeSpan.FromMilliseconds(rng.Next(5, 60)), Act);
    }

    /// <summary>
    /// As primary: each round does one of: equivocate (two different batches, each shown to
    /// part of the backups), put a request no client signed in a certified batch, re-propose a
    /// request that was already ordered (at a taken position, or replayed at a fresh one), or
    /// propose honestly.
    /// </summary>
    private void Equivocate(Random rng, long view)
    {
        var pool = _requests.Where(r => !_ordered.Any(o => o.ClientId == r.ClientId && o.Seq >= r.Seq))
            .DistinctBy(r => r.ClientId).ToList();
        _requests.Clear();
        if (pool.Count == 0) return;
        switch (rng.Next(5))
        {
            case 0 when pool.Count > 1:
                var first = Certify(new Prepare(view, id, _nextPosition, pool.Take(pool.Count / 2).ToArray(), UniqueIdentifier.None));
                // Same position, different batch: USIG counters differ, so receivers see both in order.
                var second = Certify(new Prepare(view, id, _nextPosition, pool.Skip(pool.Count / 2).ToArray(), UniqueIdentifier.None));
                _nextPosition++;
                for (var to = 1; to < sim.N; to++) sim.Transmit(id, to, rng.Next(2) == 0 ? first : second);
                _ordered.AddRange(pool);
                break;
            case 1:
                Broadcast(Certify(new Prepare(view, id, _nextPosition, Tamper.MutateBatch(pool.ToArray(), rng), UniqueIdentifier.None)), rng);
                break;
            case 2 when _ordered.Count > 0:
                Broadcast(Certify(new Prepare(view, id, _nextPosition, [_ordered[rng.Next(_ordered.Count)]], UniqueIdentifier.None)), rng);
                break;
            case 3 when _ordered.Count > 0:
                // A replay at a fresh position: accepted, and it must neither run twice nor, once
                // the client's record is evicted, run again.
                Broadcast(Certify(new Prepare(view, id, _nextPosition++, [_ordered[rng.Next(_ordered.Count)], .. pool], UniqueIdentifier.None)), rng);
                _ordered.AddRange(pool);
                break;
            default:
                Broadcast(Certify(new Prepare(view, id, _nextPosition++, pool.ToArray(), UniqueIdentifier.None)), rng);
                _ordered.AddRange(pool);
                break;
        }
    }

    /// <summary>
    /// With a cloned USIG: two different PREPAREs for one position under ONE counter, each certified
    /// by one of the two instances, the first shown to the lower half of the backups, the second to
    /// the upper half. Each half sees a gap-free stream and commits; nothing a replica can check
    /// tells the two apart, which is why the USIG must be isolated.
    /// </summary>
    private void EquivocateWithTheClone(Random rng)
    {
        var pool = _requests.Where(r => !_ordered.Any(o => o.ClientId == r.ClientId && o.Seq >= r.Seq)).DistinctBy(r => r.ClientId).ToList();
        if (pool.Count < 2) return;
        _requests.Clear();
        var counter = _usig.Counter + 1;
        var first = new Prepare(0, id, _nextPosition, pool.Take(pool.Count / 2).ToArray(), UniqueIdentifier.None);
        var second = new Prepare(0, id, _nextPosition, pool.Skip(pool.Count / 2).ToArray(), UniqueIdentifier.None);
        first = (Prepare)first.WithUi(_usig.CreateUis(counter, [MessageEncoding.CertifiedDigest(first)])[0]);
        second = (Prepare)second.WithUi(_clone!.CreateUis(counter, [MessageEncoding.CertifiedDigest(second)])[0]);
        _nextPosition++;
        _ordered.AddRange(pool);
        for (var to = 1; to < sim.N; to++) sim.Transmit(id, to, to <= sim.N / 2 ? first : second);
    }

    /// <summary>
    /// Impersonate: a fresh PREPARE in the primary's name, or a COMMIT in another backup's,
    /// at exactly the counter the receivers expect next, with an invented certificate.
    /// Only the UI check stands between this and a forked history.
    /// </summary>
    private void Impersonate(Random rng)
    {
        var victimId = RandomPeer(rng);
        var next = _heard.OfType<CertifiedMessage>().Where(m => m.Sender == victimId).Select(m => m.Ui.Counter).DefaultIfEmpty(0UL).Max() + 1;
        var forgedUi = new UniqueIdentifier(ClusterKeys.Epoch, next, ForgedCertificate(rng));
        CertifiedMessage? forged = null;
        if (victimId == 0)
        {
            var batch = _requests.DistinctBy(r => r.ClientId).Take(3).ToArray();
            if (batch.Length > 0) forged = new Prepare(0, 0, (ulong)rng.Next(1, 10), batch, forgedUi);
        }
        else if (_heard.OfType<Prepare>().LastOrDefault() is { } prepare)
        {
            forged = new Commit(prepare.View, victimId, prepare, forgedUi);
        }
        if (forged is not null)
            for (var to = 0; to < sim.N; to++)
                if (to != id && to != victimId) sim.Transmit(id, to, forged);
    }

    private void CommitTo(Prepare prepare, Random rng)
    {
        var commit = new Commit(prepare.View, id, prepare, UniqueIdentifier.None);
        commit = rng.Next(7) switch
        {
            0 => commit with { View = commit.View + 1, Prepare = prepare with { View = prepare.View + 1 } },
            1 => commit with { Prepare = prepare with { Batch = Tamper.MutateBatch(prepare.Batch, rng) } },
            2 => commit with { Prepare = prepare with { PrepareUi = Tamper.ShiftCounter(prepare.PrepareUi, rng) } },
            3 => commit with { ReplicaId = 0 }, // a COMMIT claiming to be the primary's
            _ => commit,
        };
        var certified = Certify(commit);
        if (rng.NextDouble() < 0.15) return; // skip: certified but never sent, a gap forever
        Broadcast(certified, rng);
    }

    private CertifiedMessage Certify(CertifiedMessage message)
    {
        var certified = message.WithUi(_usig.CreateUi(MessageEncoding.CertifiedDigest(message)));
        _sent.Add(certified);
        return certified;
    }

    private void Broadcast(ReplicaMessage message, Random rng)
    {
        for (var to = 0; to < sim.N; to++)
            if (to != id && rng.NextDouble() < 0.85) sim.Transmit(id, to, message);
    }

    private int RandomPeer(Random rng)
    {
        var to = rng.Next(sim.N - 1);
        return to >= id ? to + 1 : to;
    }

    /// <summary>
    /// Bogus CHECKPOINTs, each certified by this replica's real USIG: a wrong state digest at a
    /// position correct replicas checkpoint (or just after one), a position far ahead of every
    /// stream, or a replay of a CHECKPOINT it heard. f+1 matching are needed for a stable
    /// checkpoint, so f rogues alone must never make one, nor make a correct replica fetch state.
    /// </summary>
    private void SendBogusCheckpoint(Random rng)
    {
        var heard = _heard.OfType<Checkpoint>().ToList();
        var highest = heard.Select(c => c.Sequence).DefaultIfEmpty(0UL).Max();
        switch (rng.Next(3))
        {
            case 0:
                var at = heard.Count > 0 && rng.Next(2) == 0 ? heard[rng.Next(heard.Count)].Sequence : highest + (ulong)rng.Next(1, 9);
                Broadcast(Certify(new Checkpoint(id, _view, at, RandomBytes(rng, 32), UniqueIdentifier.None, IsViewStart: rng.Next(4) == 0)), rng);
                break;
            case 1:
                Broadcast(Certify(new Checkpoint(id, _view, highest + 1_000 + (ulong)rng.Next(1_000), RandomBytes(rng, 32), UniqueIdentifier.None)), rng);
                break;
            case 2 when heard.Count > 0:
                sim.Transmit(id, RandomPeer(rng), heard[rng.Next(heard.Count)]);
                break;
        }
    }

    /// <summary>
    /// As the primary of a later view (one it leads, or the next it would): a NEW-VIEW that omits
    /// VIEW-CHANGEs it heard, lists them in another order (sent by reference), carries its own
    /// VIEW-CHANGE with a batch invented for the occasion, or mixes in VIEW-CHANGEs for other views.
    /// </summary>
    private void SendBogusNewView(Random rng)
    {
        var view = _view + 1;
        while (view % sim.N != id) view++;
        if (_view > 0 && _view % sim.N == id && rng.Next(2) == 0) view = _view;
        var heard = _viewChanges.Where(vc => vc.NewView == view).DistinctBy(vc => vc.ReplicaId).ToList();
        var log = new List<CertifiedMessage>();
        var variant = rng.Next(4);
        if (variant == 2 && _requests.Count > 0)
        {
            var invented = Certify(new Prepare(view - 1, id, _nextPosition + (ulong)rng.Next(3), [_requests[rng.Next(_requests.Count)]], UniqueIdentifier.None));
            log.Add(MessageEncoding.ForLog(invented));
        }
        var own = Certify(new ViewChange(id, view, CheckpointCertificate.Genesis, [.. log], UniqueIdentifier.None, []));
        ViewChange[] set = variant switch
        {
            0 => [.. heard.Take(Math.Max(0, heard.Count - 1)), (ViewChange)own],                     // omit one it heard
            1 => [.. heard.Append((ViewChange)own).Reverse()],                                      // reorder
            3 => [.. _viewChanges.Where(vc => vc.NewView != view).Take(sim.N), (ViewChange)own],     // other views' VIEW-CHANGEs
            _ => [(ViewChange)own, .. heard],                                                       // with an invented batch
        };
        // The reordered one goes by reference, as correct primaries send theirs: peers must fetch
        // its invented VIEW-CHANGE (from its stream, or from this replica, which may not answer).
        var newView = (NewView)Certify(new NewView(id, view, set, UniqueIdentifier.None));
        Broadcast(variant == 1 ? newView.ByReference() : newView, rng);
    }

    /// <summary>An invented UI certificate of the right length for the cluster's scheme. It draws
    /// 64 bytes whatever the scheme, so the random stream (and every recorded seed) is unchanged.</summary>
    private byte[] ForgedCertificate(Random rng) => RandomBytes(rng, 64).AsSpan(0, keys.UsigCertificateLength).ToArray();

    private static byte[] RandomBytes(Random rng, int length)
    {
        var bytes = new byte[length];
        rng.NextBytes(bytes);
        return bytes;
    }
}
