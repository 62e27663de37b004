using MinBft.Crypto;
using MinBft.Application;
using MinBft.Encoding;
using MinBft.Messages;
using MinBft.Protocol;

namespace MinBft.Tests.Simulation;

/// <summary>
/// n replicas of the real core with real crypto on an in-memory network that the seed
/// controls: drops, duplicates, delays and reorders, plus faulty replicas that tamper with,
/// replay, forge and equivocate. After every event it checks agreement, integrity and that
/// no rejected input changed a correct replica's state; at the end, results and liveness.
/// </summary>
public sealed class Simulation
{
    private readonly SimulationOptions _options;
    private readonly Random _rng;
    private readonly EventQueue _events = new();
    private readonly ClusterKeys _keys;
    // Kept messages (SimulationOptions.KeptMessages): one codec for the run, as one serializer per silo.
    private readonly SimKeptMessageCodec? _keptCodec;
    private readonly SimReplica?[] _replicas;
    private readonly RogueReplica?[] _rogues;
    private readonly List<SimClient> _clients = [];
    private readonly Dictionary<string, SimClient> _clientsById = new(StringComparer.Ordinal);
    private readonly Queue<string> _trace = new();
    private readonly Dictionary<ulong, (int Replica, byte[] Digest)> _agreed = [];
    private readonly List<(int Replica, IReadOnlyList<Request> Requests)> _longestHistory = [];
    // Per replica, what it executed at each position (null: covered by an installed snapshot).
    private readonly Dictionary<int, List<IReadOnlyList<Request>?>> _histories = [];
    private readonly ProtocolSettings?[] _settings;
    private readonly HashSet<Sha256Digest> _issuedRequests = [];
    private readonly Dictionary<int, HashSet<(string, ulong)>> _executedPairs = [];

    public Simulation(int seed, SimulationOptions options)
    {
        Seed = seed;
        _options = options;
        _rng = new Random(seed);
        _keys = ClusterKeys.Create(options.N, _rng, options.HmacUsig);
        _keptCodec = options.KeptMessages ? new SimKeptMessageCodec() : null;
        _replicas = new SimReplica?[options.N];
        _rogues = new RogueReplica?[options.N];
        _settings = new ProtocolSettings?[options.N];
        for (var i = 0; i < options.N; i++)
        {
            if (options.RogueReplicas.Contains(i))
            {
                _rogues[i] = new RogueReplica(this, i, _keys, options);
                continue;
            }
            var settings = new ProtocolSettings
            {
                N = options.N,
                ReplicaId = i,
                Tuning = new()
                {
                    MaxBatchSize = options.MaxBatchSize,
                    MaxBatchWait = TimeSpan.FromMilliseconds(1),
                    MaxInFlightBatches = 4,
                    RetransmitInterval = TimeSpan.FromMilliseconds(100),
                    IdleRetransmitInterval = TimeSpan.FromMilliseconds(800),
                    ReorderBufferPerSender = 64,
                    ReorderWindow = 1024,
                    RequestTimeout = TimeSpan.FromMilliseconds(500),
                    ViewChangeTimeout = TimeSpan.FromMilliseconds(400),
                    StateChunkSize = options.StateChunkSize,
                    MaxStateChunksPerInterval = options.MaxStateChunksPerInterval,
                },
                CheckpointInterval = options.CheckpointInterval,
                Watermark = options.Watermark,
                MaxClientRecords = options.MaxClientRecords,
                UsigReissueWindow = SimUsig.ReissueWindow,
                UsigMaxBatch = SimUsig.MaxBatch,
                UsigMaxKeptBytes = options.KeptMessages ? SimUsig.MaxKeptBytes : 0,
            };
            _settings[i] = settings;
            var usig = _keys.UsigFor(i);
            var preverifier = _keys.Hmac ? new SimPreverifier(this, i, usig, _keys.Epochs) : null;
            var core = new ReplicaCore(settings, _keys.CryptoFor(i, preverifier), new KeyValueStateMachine(), _keptCodec);
            _replicas[i] = new SimReplica(this, i, core, usig, options.TamperingReplicas.Contains(i), options.BadSnapshotServers.Contains(i))
            {
                Preverifier = preverifier,
            };
            _histories[i] = [];
            _executedPairs[i] = [];
        }
        for (var c = 0; c < options.Clients; c++)
        {
            var client = new SimClient(this, _keys.NewClient(_rng), options.RequestsPerClient);
            _clients.Add(client);
            _clientsById[client.Id] = client;
        }
    }

    public int Seed { get; }
    internal Random Rng => _rng;
    internal TimeSpan Now => _events.Now;
    internal int N => _options.N;
    internal int F => _options.F;
    internal EventQueue Events => _events;
    internal IReplicaSignatureVerifier ReplicaVerifier => _keys.ReplicaVerifier;

    /// <summary>Checks the replies every simulated client gets (one signature check per batch).</summary>
    internal ReplyAuthenticator Replies => _replies ??= new ReplyAuthenticator(_keys.ReplicaVerifier);

    private ReplyAuthenticator? _replies;

    public Dictionary<RejectReason, long> Rejections { get; } = [];
    public long EventsProcessed => _events.Processed;
    public long RequestsCompleted => _clients.Sum(c => c.Completed.Count);

    /// <summary>Requests whose clients accepted an Expired result.</summary>
    public long ExpiredAccepted => _clients.Sum(c => c.Expired);

    /// <summary>A digest of everything observable about the run: equal for equal seeds.</summary>
    public string RunFingerprint()
    {
        var w = new MinBft.Encoding.CanonicalWriter().I64(_events.Processed).I64(Now.Ticks);
        foreach (var (sequence, (replica, digest)) in _agreed.OrderBy(p => p.Key)) w.U64(sequence).I32(replica).Bytes(digest);
        foreach (var replica in _replicas)
            if (replica is not null) w.Text(replica.Core.StateFingerprint());
        foreach (var (reason, count) in Rejections.OrderBy(p => p.Key)) w.I32((int)reason).I64(count);
        return Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(w.WrittenSpan));
    }
    public ulong MaxExecuted => _replicas.Where(r => r is { Tampering: false }).Max(r => r!.Core.ExecutedSequence);

    private bool IsCorrect(int replica) => _replicas[replica] is { Tampering: false };
    private bool IsCrashed(int replica) =>
        _options.Crashes.Any(c => c.Replica == replica && Now >= c.At)
        || _options.Restarts.Any(r => r.Replica == replica && Now >= r.Down && Now < r.Up)
        || (_options.Rotation is { } rotation && rotation.Replica == replica && Now >= rotation.Down && Now < rotation.Up)
        || (_downUntil.TryGetValue(replica, out var up) && Now < up);

    /// <summary>The replica is crashed (for now or for good): its process does nothing.</summary>
    internal bool IsDown(int replica) => IsCrashed(replica);

    // Replicas crashed by CrashAfterWrite, until their restart.
    private readonly Dictionary<int, TimeSpan> _downUntil = [];
    private readonly Dictionary<int, int> _durableWrites = [];

    /// <summary>
    /// Called right after one of a replica's durable writes (log, USIG batch, checkpoint) took
    /// effect. With <see cref="SimulationOptions.CrashAfterWrite"/> the replica crashes at exactly
    /// that point, before it learns that the write completed; false then.
    /// </summary>
    internal bool AfterDurableWrite(int replica)
    {
        var count = _durableWrites[replica] = _durableWrites.GetValueOrDefault(replica) + 1;
        if (_options.CrashAfterWrite is not { } crash || crash.Replica != replica || crash.Write != count) return true;
        Trace($"replica {replica} crashes right after its durable write #{count}");
        _downUntil[replica] = Now + crash.Downtime;
        _events.At(Now + crash.Downtime, () => Restart(replica));
        return false;
    }

    private bool IsIsolated(int replica) =>
        _options.Isolations.Any(i => i.Replica == replica && Now >= i.From && Now < i.To)
        || _cutOffs.Any(i => i.Replica == replica && Now >= i.From && Now < i.To);

    // Isolations decided during the run (CutOffPrimariesAfterRotation): asynchrony, not faults.
    private readonly List<(int Replica, TimeSpan From, TimeSpan To)> _cutOffs = [];

    /// <summary>Cuts off the primary most running correct replicas follow, for a second.</summary>
    private void CutOffPrimary()
    {
        if (RotatedReplicaLed) return;
        var primaries = Enumerable.Range(0, N).Where(i => IsCorrect(i) && !IsCrashed(i)).Select(i => _replicas[i]!.Core.Primary).ToList();
        if (primaries.Count == 0) return;
        var primary = primaries.GroupBy(p => p).OrderByDescending(g => g.Count()).ThenBy(g => g.Key).First().Key;
        _cutOffs.Add((primary, Now, Now + TimeSpan.FromSeconds(1)));
        Trace($"primary {primary} is cut off for a second");
    }

    /// <summary>Snapshots installed by state transfer, over all correct replicas.</summary>
    /// <summary>VIEW-CHANGE fetches sent, and relayed copies accepted, by replicas' current cores
    /// (a NEW-VIEW travels by reference; coverage of the fetch path).</summary>
    public long ViewChangeFetches => _replicas.Sum(r => r?.Core.ViewChangeFetchesSent ?? 0);

    public long RelayedViewChanges => _replicas.Sum(r => r?.Core.RelayedViewChangesAccepted ?? 0);

    public long StateTransfers => _replicas.Where(r => r is { Tampering: false }).Sum(r => r!.Core.StateTransfersCompleted);

    /// <summary>One replica's core (tests look at its counters).</summary>
    internal ReplicaCore CoreOf(int replica) => _replicas[replica]!.Core;

    /// <summary>The highest view a correct, running replica reached.</summary>
    public long MaxView => Enumerable.Range(0, N).Where(i => IsCorrect(i) && !IsCrashed(i)).Max(i => _replicas[i]!.Core.View);

    /// <summary>The lowest view any correct, running replica is in.</summary>
    public long MinView => Enumerable.Range(0, N).Where(i => IsCorrect(i) && !IsCrashed(i)).Min(i => _replicas[i]!.Core.View);
    private bool InFaultyPeriod => Now < _options.FaultyPeriod;

    // The trace a failure writes keeps this many last lines (MINBFT_TRACE_LINES for a longer look).
    private static readonly int TraceLines =
        int.TryParse(Environment.GetEnvironmentVariable("MINBFT_TRACE_LINES"), out var lines) && lines > 0 ? lines : 20000;

    internal void Trace(string line)
    {
        _trace.Enqueue($"{Now.TotalMilliseconds,9:F3}ms {line}");
        if (_trace.Count > TraceLines) _trace.Dequeue();
    }

    // ----- network -----

    /// <summary>Replica-to-replica traffic, subject to the seed's faults.</summary>
    internal void Transmit(int from, int to, ReplicaMessage message)
    {
        if (message is Prepare { PrepareUi.Epoch: > ClusterKeys.Epoch } && _options.Rotation?.Replica == from) RotatedReplicaLed = true;
        foreach (var delay in Deliveries())
            _events.After(delay, () => DeliverToReplica(from, to, message));
    }

    internal void TransmitRequest(int to, Request request)
    {
        foreach (var delay in Deliveries())
            _events.After(delay, () => DeliverRequest(to, request));
    }

    /// <summary>Replica <paramref name="replica"/>'s real signing key (a tampering replica forging replies holds its own).</summary>
    internal IReplicaSigner SignerFor(int replica) => _keys.SignerFor(replica);

    internal bool TamperReplies => _options.TamperReplies;

    /// <summary>The current request of a client other than <paramref name="clientId"/>, if any is waiting.</summary>
    internal Request? CurrentRequestOfAnotherClient(string clientId, Random rng)
    {
        var others = _clients.Where(c => c.Id != clientId && c.Current is not null).ToList();
        return others.Count == 0 ? null : others[rng.Next(others.Count)].Current;
    }

    internal void TransmitReply(Reply reply)
    {
        if (!_clientsById.TryGetValue(reply.ClientId, out var client)) return;
        foreach (var delay in Deliveries())
            _events.After(delay, () => client.OnReply(reply));
    }

    private IEnumerable<TimeSpan> Deliveries()
    {
        var maxDelayTicks = Math.Max(1, _options.MaxDelay.Ticks);
        TimeSpan Delay() => TimeSpan.FromTicks(_rng.NextInt64(0, maxDelayTicks) + TimeSpan.TicksPerMillisecond / 10);
        if (!InFaultyPeriod)
        {
            yield return Delay();
            yield break;
        }
        if (_rng.NextDouble() < _options.DropRate) yield break;
        yield return Delay();
        if (_rng.NextDouble() < _options.DuplicateRate) yield return Delay();
    }

    private void DeliverToReplica(int from, int to, ReplicaMessage message)
    {
        if (IsCrashed(to)) return;
        if (IsIsolated(to) || IsIsolated(from)) return;
        Trace($"{from}->{to} {Describe(message)}");
        if (_rogues[to] is { } rogue) { rogue.OnMessage(message); return; }
        // HMAC: the replica's own USIG verifies the message's UI claims first, as the grain has it do.
        _replicas[to]!.Preverifier?.Prepare(message);
        Step(to, core => core.OnMessage(message, Now));
    }

    /// <summary>Claims the replicas' USIGs verified for their hosts (HMAC runs).</summary>
    public long PreverifiedClaims => _replicas.Sum(r => r?.Preverifier?.Asked ?? 0);

    private void DeliverRequest(int to, Request request)
    {
        if (IsIsolated(to)) return;
        Trace($"client->{to} request {request.ClientId[..6]}#{request.Seq}");
        if (_rogues[to] is { } rogue) { rogue.OnRequest(request); return; }
        Step(to, core => core.OnRequest(request, Now));
    }

    /// <summary>Runs one input on a replica's core and checks the properties around it.</summary>
    internal void Step(int replica, Func<ReplicaCore, Ready> input)
    {
        var node = _replicas[replica]!;
        if (IsCrashed(replica)) return; // a crashed replica does nothing, ever again
        // "No rejected message changed a replica's state": when a step accepted nothing (no
        // stream advanced) and only rejected, the replicated state must be exactly as before.
        var before = IsCorrect(replica) ? node.Core.StateFingerprint() : null;
        var acceptedBefore = AcceptedCount(node.Core);
        // Every step ends by letting a primary cut a batch whose time has come (MaxBatchWait
        // passed, or the pipeline freed), whatever the input was; that is its own action, not the
        // input's, so a step that proposed is not held to this check (seed 95007 of the later-view
        // campaign: a duplicate COMMIT arrived just as a batch's wait ran out).
        var proposedBefore = node.Core.LastProposedSequence;
        Ready ready;
        try
        {
            ready = input(node.Core);
        }
        catch (ProtocolInvariantException e)
        {
            Fail($"INVARIANT at replica {replica}: {e.Message}");
            throw;
        }
        if (before is not null && ready.Effects.Count > 0 && ready.Effects.All(e => e is Rejected)
            && AcceptedCount(node.Core) == acceptedBefore && node.Core.LastProposedSequence == proposedBefore)
        {
            var after = node.Core.StateFingerprint();
            if (after != before)
                Fail($"replica {replica}: a rejected input changed its state ({string.Join("; ", ready.Effects)})");
        }
        node.Apply(ready);
        if (_options.MemoryBound is { } bound && IsCorrect(replica))
        {
            var core = node.Core;
            var held = Math.Max(Math.Max(core.SentLogCount, core.RelayLogCount / Math.Max(1, N - 1)), Math.Max(core.PreparedBatchCount, core.BufferedMessages));
            if (held > MaxHeld) MaxHeld = held;
            if (held > bound)
                Fail($"MEMORY: replica {replica} holds {core.SentLogCount} sent, {core.PreparedBatchCount} prepared, " +
                     $"{core.BufferedMessages} buffered (bound {bound}) at position {core.ExecutedSequence}; streams: " +
                     string.Join(", ", Enumerable.Range(0, N).Select(j => $"{j}: accepted {core.LastAccepted(j)} buffered {core.BufferedFrom(j)}")));
        }
    }

    /// <summary>The most log entries or buffered messages any correct replica held at once.</summary>
    public int MaxHeld { get; private set; }

    private ulong AcceptedCount(ReplicaCore core)
    {
        ulong sum = 0;
        for (var i = 0; i < N; i++) sum += core.LastAccepted(i);
        return sum;
    }

    // ----- observations from replicas -----

    internal void OnRejected(int replica, Rejected rejected)
    {
        if (!IsCorrect(replica)) return;
        if (rejected.Reason != RejectReason.Duplicate) Trace($"  replica {replica} rejects from {rejected.From}: {rejected.Reason} {rejected.Detail}");
        Rejections[rejected.Reason] = Rejections.GetValueOrDefault(rejected.Reason) + 1;
    }

    internal void OnExecuted(int replica, Executed executed)
    {
        if (!IsCorrect(replica)) return;
        Trace($"  replica {replica} executes #{executed.Sequence} (view {executed.View}, primary counter {executed.PrimaryCounter})");
        var history = _histories[replica];
        if ((ulong)history.Count + 1 != executed.Sequence)
            Fail($"replica {replica} executed sequence {executed.Sequence} after {history.Count}");
        history.Add(executed.Requests);
        if (_agreed.TryGetValue(executed.Sequence, out var first))
        {
            if (!first.Digest.AsSpan().SequenceEqual(executed.BatchDigest))
                Fail($"AGREEMENT: replicas {first.Replica} and {replica} executed different batches as #{executed.Sequence}");
        }
        else
        {
            _agreed[executed.Sequence] = (replica, executed.BatchDigest);
            _longestHistory.Add((replica, executed.Requests));
        }
        var executedHere = _executedPairs[replica];
        foreach (var request in executed.Requests)
        {
            // Integrity: only requests a client signed are ordered ...
            if (!_issuedRequests.Contains(Sha256Digest.From(MessageEncoding.RequestDigest(request))))
                Fail($"INTEGRITY: replica {replica} executed a request no client issued ({request.ClientId[..6]}#{request.Seq})");
        }
        foreach (var request in executed.Applied)
        {
            // ... and each (client, seq) runs in the application once, whatever a primary re-orders
            // or replays, and whatever the client table evicted meanwhile.
            if (!executedHere.Add((request.ClientId, request.Seq)))
                Fail($"INTEGRITY: replica {replica} executed {request.ClientId[..6]}#{request.Seq} twice");
        }
    }

    internal void OnInstalled(int replica, StateInstalled installed)
    {
        Trace($"  replica {replica} installed the snapshot at {installed.Sequence} from {installed.From}");
        if (!IsCorrect(replica)) return;
        var history = _histories[replica];
        if ((ulong)history.Count >= installed.Sequence)
            Fail($"replica {replica} installed a snapshot at {installed.Sequence}, not beyond what it executed ({history.Count})");
        while ((ulong)history.Count < installed.Sequence) history.Add(null);
    }

    /// <summary>
    /// A crashed replica comes back: a fresh core restored from what it kept durably (sent log,
    /// stored checkpoint, view) and its USIG's counter. Sometimes the USIG had certified a few
    /// messages that never became durable, so were never sent: their counters are burned.
    /// </summary>
    private void Restart(int replica) => Restart(replica, rotated: false, burn: true);

    /// <param name="rotated">The replica's USIG was rotated: it restarts empty (no log, no stored
    /// checkpoint) with a fresh USIG under its new identity.</param>
    /// <param name="burn">Sometimes burn USIG counters before the restart (a fault of its own: a
    /// manifest roll's restarts are not faults, so they burn none).</param>
    private void Restart(int replica, bool rotated, bool burn)
    {
        var old = _replicas[replica]!;
        old.Retired = true;
        _downUntil.Remove(replica);
        var usig = rotated ? _keys.UsigFor(replica) : old.Usig;
        // Sometimes a fault outside the protocol: the USIG certified digests that were never
        // logged (a host bug, another caller). Those counters are a gap the restart must survive.
        var burned = burn && !rotated && _rng.NextDouble() < 0.25 ? _rng.Next(1, 3) : 0;
        for (var k = 0; k < burned; k++)
        {
            var digest = new byte[32];
            _rng.NextBytes(digest);
            usig.CreateUi(digest);
        }
        var counter = usig.Counter;
        // Exactly what the host does: read the durable log, have the USIG re-issue the UIs that
        // did not become durable, and hand it all to a fresh core.
        var journal = rotated ? new SimJournal() : old.Journal;
        var stored = rotated ? null : old.StoredCheckpoint;
        var state = new RecoveredState(journal.View, stored?.Certificate, stored?.Snapshot, stored?.ViewStarts ?? [], journal.First, journal.Entries.ToList(), counter);
        // What the USIG kept with its last batch, for counters the journal did not reach.
        if (_keptCodec is not null && !rotated) state = state.WithKept(usig.Kept.Select(m => _keptCodec.Decode(m)).ToList());
        var reissue = state.UisToReissue();
        state = state.WithReissued(reissue.Select(r => usig.ReissueUi(r.Counter, r.Digest)).ToList());
        var preverifier = _keys.Hmac ? new SimPreverifier(this, replica, usig, _keys.Epochs) : null;
        preverifier?.Prepare(UiClaims.Of(state));
        var core = new ReplicaCore(_settings[replica]!, _keys.CryptoFor(replica, preverifier), new KeyValueStateMachine(), _keptCodec);
        var fresh = new SimReplica(this, replica, core, usig, tampering: false) { Journal = journal, StoredCheckpoint = stored, Preverifier = preverifier };
        _replicas[replica] = fresh;
        Trace($"replica {replica} restarts{(rotated ? $" EMPTY under USIG epoch {_keys.EpochOf(replica)}" : "")}: stored checkpoint {stored?.Certificate.Sequence ?? 0}, log {journal.First}+{journal.Entries.Count}" +
              (state.KeptFrom != 0 ? $", kept from {state.KeptFrom}" : "") + ", " +
              $"{reissue.Count} UIs re-issued, USIG at {counter} ({burned} burned)");
        Step(replica, c => c.Restore(state, Now));
        if (state.KeptFrom != 0 && !core.RestartedAfterCounterGap) RestartsFromKept++;
        // Intent logging's promise: without counters burned outside the protocol, every counter the
        // USIG issued is recovered, and the restarted replica's stream has no gap.
        if (burned == 0 && core.RestartedAfterCounterGap)
            Fail($"RECOVERY: replica {replica} restarted with a gap in its stream though every USIG counter went to a logged intent");
        // Its history restarts at the restored checkpoint; what it executes next must agree again.
        var history = _histories[replica];
        var restored = (int)core.ExecutedSequence;
        if (history.Count < restored) Fail($"replica {replica} restored position {restored} beyond what it executed ({history.Count})");
        history.RemoveRange(restored, history.Count - restored);
        _executedPairs[replica] = history.Where(b => b is not null).SelectMany(b => b!).Select(r => (r.ClientId, r.Seq)).ToHashSet();
        RestartsDone++;
    }

    /// <summary>Restarts that happened in this run.</summary>
    public int RestartsDone { get; private set; }

    /// <summary>Restarts that took messages back from what the USIG kept (the journal had not
    /// reached the USIG's counter).</summary>
    public int RestartsFromKept { get; private set; }

    /// <summary>USIG batches that kept their messages (certified while the journal wrote them).</summary>
    public int KeptBatches { get; internal set; }

    /// <summary>
    /// The operator's part of a USIG rotation, once the replica is down: read the highest view and
    /// executed position from the running replicas (status), rotate with a first view and first
    /// checkpoint above them, and roll the new manifest to every other correct replica: each
    /// restarts once, at a random moment, down for a moment.
    /// </summary>
    private void RotateUsig(int replica, TimeSpan up)
    {
        var running = Enumerable.Range(0, N).Where(i => i != replica && IsCorrect(i) && !IsCrashed(i)).ToList();
        // Any first view above the views used is safe; the README's "+ n" is the operator's margin.
        // Drawn from 1..n above, so that in some seeds the new identity soon leads a view.
        var firstView = (running.Count == 0 ? 0 : running.Max(i => _replicas[i]!.Core.View)) + 1 + _rng.Next(N);
        var firstCheckpoint = (running.Count == 0 ? 0 : running.Max(i => _replicas[i]!.Core.ExecutedSequence)) + (ulong)_options.Watermark;
        RotatedReplicaWasPrimary = running.Count > 0 && running.All(i => _replicas[i]!.Core.Primary == replica);
        _keys.Rotate(replica, _rng, firstView, firstCheckpoint);
        UsigRotatedAtView = firstView;
        Trace($"USIG {replica} rotated to epoch {_keys.EpochOf(replica)}: first view {firstView}, first checkpoint {firstCheckpoint}");
        var window = (int)Math.Max(1, (up - Now).TotalMilliseconds + 500);
        foreach (var other in Enumerable.Range(0, N).Where(i => i != replica && IsCorrect(i)).OrderBy(_ => _rng.Next()).ToList())
        {
            var at = Now + TimeSpan.FromMilliseconds(_rng.Next(1, window));
            var back = at + TimeSpan.FromMilliseconds(_rng.Next(1, 200));
            _events.At(at, () =>
            {
                Trace($"replica {other} stops to take the new manifest");
                _downUntil[other] = back;
            });
            _events.At(back, () => Restart(other, rotated: false, burn: false));
        }
    }

    /// <summary>Every running correct replica saw the rotated replica as its primary when it was rotated.</summary>
    public bool RotatedReplicaWasPrimary { get; private set; }

    /// <summary>The rotated replica sent PREPAREs under its new identity (it led a view after the rotation).</summary>
    public bool RotatedReplicaLed { get; private set; }

    /// <summary>The first view of the rotated USIG's new identity (0: no rotation yet).</summary>
    public long UsigRotatedAtView { get; private set; }

    internal void OnClientIssued(Request request) =>
        _issuedRequests.Add(Sha256Digest.From(MessageEncoding.RequestDigest(request)));

    internal void BroadcastRequest(Request request)
    {
        for (var r = 0; r < N; r++) TransmitRequest(r, request);
    }

    // ----- the run -----

    public void Run()
    {
        foreach (var client in _clients) client.Start();
        for (var i = 0; i < N; i++)
            if (_rogues[i] is { } rogue) rogue.Start();
        foreach (var (replica, _, up) in _options.Restarts) _events.At(up, () => Restart(replica));
        if (_options.Rotation is { } rotation)
        {
            _events.At(rotation.Down + TimeSpan.FromMilliseconds(1), () => RotateUsig(rotation.Replica, rotation.Up));
            _events.At(rotation.Up, () => Restart(rotation.Replica, rotated: true, burn: false));
            if (_options.CutOffPrimariesAfterRotation)
                for (var k = 0; k < 3; k++)
                    _events.At(rotation.Up + TimeSpan.FromMilliseconds(300 + 1500 * k), CutOffPrimary);
        }

        var deadline = _options.FaultyPeriod + _options.LivenessBound;
        const long maxEvents = 2_000_000;
        while (_events.NextTime is { } next && next <= deadline)
        {
            if (ClientsDoneAt is null && _clients.All(c => c.Done))
            {
                ClientsDoneAt = Now;
                ExecutedWhenClientsDone = _replicas.Select(r => r?.Core.ExecutedSequence ?? 0).ToArray();
            }
            if (_clients.All(c => c.Done) && next > _options.FaultyPeriod) break;
            _events.RunNext();
            if (_events.Processed > maxEvents) Fail($"more than {maxEvents} events: the run does not settle");
        }

        if (_options.RequireCatchUp) CatchUp(deadline + _options.LivenessBound);
        CheckClientResults();
        if (_options.ExpectLiveness)
        {
            var late = _clients.Where(c => !c.Done).ToList();
            if (late.Count > 0)
                Fail($"LIVENESS: {late.Count} client(s) incomplete {_options.LivenessBound.TotalSeconds}s after faults stopped " +
                     $"({string.Join(", ", late.Select(c => $"{c.Id[..6]}: {c.Completed.Count}/{c.Target}"))})\n" +
                     string.Join("\n", _replicas.Where(r => r is not null).Select(r => r!.Describe())));
        }
    }

    /// <summary>Runs on until every running correct replica reached the highest executed position.</summary>
    private void CatchUp(TimeSpan deadline)
    {
        bool CaughtUp()
        {
            var live = Enumerable.Range(0, N).Where(i => IsCorrect(i) && !IsCrashed(i)).Select(i => _replicas[i]!.Core).ToList();
            var max = live.Max(c => c.ExecutedSequence);
            return live.All(c => c.ExecutedSequence == max && c.StateDigest().AsSpan().SequenceEqual(live[0].StateDigest()));
        }
        while (!CaughtUp())
        {
            if (_events.NextTime is not { } next || next > deadline)
                Fail("CATCH-UP: not every running replica reached the highest executed position in time\n" +
                     string.Join("\n", _replicas.Where(r => r is not null).Select(r => r!.Describe())));
            _events.RunNext();
        }
        CaughtUpAt = Now;
        // Each of them also stores its stable checkpoint: that is what its log is trimmed to and
        // what a restart resumes from (a primary once kept none after its checkpoint became
        // stable before it executed that position).
        bool Stored() => Enumerable.Range(0, N).Where(i => IsCorrect(i) && !IsCrashed(i))
            .All(i => (_replicas[i]!.StoredCheckpoint?.Certificate.Sequence ?? 0) >= _replicas[i]!.Core.StableCheckpoint.Sequence);
        while (!Stored())
        {
            if (_events.NextTime is not { } next || next > deadline)
                Fail("CHECKPOINT STORE: a running replica never stored its stable checkpoint\n" +
                     string.Join("\n", Enumerable.Range(0, N).Where(i => _replicas[i] is not null)
                         .Select(i => $"replica {i}: stable {_replicas[i]!.Core.StableCheckpoint.Sequence}, stored {_replicas[i]!.StoredCheckpoint?.Certificate.Sequence ?? 0}")));
            _events.RunNext();
        }
    }

    /// <summary>When the last client completed its last request, and where each replica's
    /// execution stood then (whether a lagging replica caught up while the load lasted).</summary>
    public TimeSpan? ClientsDoneAt { get; private set; }
    public ulong[] ExecutedWhenClientsDone { get; private set; } = [];

    /// <summary>When every running correct replica had caught up (RequireCatchUp runs).</summary>
    public TimeSpan CaughtUpAt { get; private set; }

    /// <summary>
    /// Every result a client accepted is one the agreed history gives when replayed on a fresh
    /// state machine, with a client table of its own written from the rules of
    /// CLIENT-SESSIONS-DESIGN.md (not the core's code): the client-visible history is the
    /// replicated one (linearizable, since a request executes between its invocation and its
    /// completion). A request ordered more than once may have had several outcomes (executed,
    /// then Expired after an eviction); the client must have accepted one of them.
    /// </summary>
    private void CheckClientResults()
    {
        var reference = new KeyValueStateMachine();
        var outcomes = new Dictionary<(string, ulong), List<(ReplyStatus, byte[])>>();
        var records = new Dictionary<string, (ulong Seq, ulong LastActive)>(StringComparer.Ordinal);
        ulong horizon = 0, position = 0;
        foreach (var (_, batch) in _longestHistory)
        {
            position++;
            foreach (var request in batch)
            {
                (ReplyStatus, byte[]) outcome;
                if (records.TryGetValue(request.ClientId, out var record))
                {
                    if (request.Seq <= record.Seq) continue;
                    outcome = request.Incarnation <= position ? (ReplyStatus.Executed, Run(request)) : (ReplyStatus.Expired, []);
                }
                else if (request.Incarnation >= horizon && request.Incarnation <= position)
                    outcome = (ReplyStatus.Executed, Run(request));
                else
                    outcome = (ReplyStatus.Expired, []);
                if (outcome.Item1 == ReplyStatus.Executed) records[request.ClientId] = (request.Seq, position);
                var key = (request.ClientId, request.Seq);
                if (!outcomes.TryGetValue(key, out var list)) outcomes[key] = list = [];
                list.Add(outcome);
            }
            while (records.Count > _options.MaxClientRecords)
            {
                var evict = records.OrderBy(r => r.Value.LastActive).ThenBy(r => r.Key, StringComparer.Ordinal).First();
                records.Remove(evict.Key);
                horizon = Math.Max(horizon, evict.Value.LastActive + 1);
            }
        }
        foreach (var client in _clients)
            foreach (var (seq, status, result) in client.Completed)
            {
                if (!outcomes.TryGetValue((client.Id, seq), out var possible))
                    Fail($"client {client.Id[..6]} accepted a result for #{seq}, which no correct replica executed");
                else if (!possible.Any(o => o.Item1 == status && o.Item2.AsSpan().SequenceEqual(result)))
                    Fail($"client {client.Id[..6]} accepted a wrong result for #{seq} ({status})");
            }

        byte[] Run(Request request) => request.Operation.Length == 0 ? [] : reference.Apply(request.Operation);
    }

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    internal void Fail(string what)
    {
        // The whole trace goes to a file (it can be long); the message keeps the last events.
        var traceFile = Path.Combine(Path.GetTempPath(), $"minbft-seed-{Seed}.trace");
        try { File.WriteAllLines(traceFile, _trace); }
        catch (IOException) { traceFile = "(trace file not written)"; }
        throw new SimulationFailure(
            $"{what}\nseed={Seed} ({_options})\nreplay: MINBFT_SEED={Seed} dotnet test --filter <the failing test>\n" +
            $"full trace: {traceFile}\nlast events:\n  {string.Join("\n  ", _trace.Skip(Math.Max(0, _trace.Count - 300)))}");
    }

    internal static string Describe(ReplicaMessage message) => message switch
    {
        Prepare p => $"PREPARE v{p.View} s{p.Sequence} c{p.PrepareUi.Counter} [{string.Join(' ', p.Batch.Select(r => $"{r.ClientId[..6]}#{r.Seq}"))}]{(p.ViewStart is null ? "" : " +VS")}",
        Commit c => $"COMMIT v{c.View} from {c.ReplicaId} c{c.CommitUi.Counter} -> p{c.Prepare.PrepareUi.Counter}",
        RetransmitRequest r => $"RETRANSMIT? {r.ReplicaId}->{r.TargetId} from c{r.FromCounter}",
        ReqViewChange r => $"REQ-VIEW-CHANGE from {r.ReplicaId} {r.CurrentView}->{r.NewView}",
        ViewChange v => $"VIEW-CHANGE from {v.ReplicaId} to v{v.NewView} c{v.ViewChangeUi.Counter} log={v.Log.Length} cp={v.CheckpointCertificate.Sequence}",
        NewView n => $"NEW-VIEW v{n.View} from {n.PrimaryId} c{n.NewViewUi.Counter}",
        StateRequest r => $"STATE-REQUEST from {r.ReplicaId} min s{r.MinSequence} s{r.Sequence} chunk {r.Chunk}",
        StateChunk c => $"STATE-CHUNK from {c.ReplicaId} s{c.Certificate.Sequence} {c.Index + 1}/{c.Count} view {c.View}",
        Checkpoint c => $"CHECKPOINT from {c.ReplicaId} v{c.View} s{c.Sequence}{(c.IsViewStart ? " start" : "")} c{c.CheckpointUi.Counter}",
        _ => message.GetType().Name,
    };
}
