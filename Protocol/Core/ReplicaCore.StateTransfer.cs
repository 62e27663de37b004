using MinBft.Crypto;
using MinBft.Encoding;
using MinBft.Messages;

namespace MinBft.Protocol;

/// <summary>
/// State transfer (PROTOCOL.md section 8). A replica that is behind a stable checkpoint and
/// cannot close the gap by retransmission (its peers forgot that history) fetches the snapshot
/// at a stable checkpoint, in bounded chunks, from one peer at a time. Nothing the peer sends is
/// trusted: the snapshot is installed only if its digest is the one f+1 replicas certified, and
/// a peer that serves anything else is rejected, counted and not asked again for that checkpoint.
/// After installing, positions up to the checkpoint are settled: the replica rebuilds its view of
/// each peer's stream from that peer's CHECKPOINT anchors and asks for what follows.
/// </summary>
public sealed partial class ReplicaCore
{
    // Snapshots of this replica's own state at its checkpoints (served to peers once stable).
    private readonly SortedDictionary<ulong, EncodedSnapshot> _ownSnapshots = [];
    // The newest stable checkpoint waiting to be stored, and the one the host is storing.
    private StoreCheckpoint? _checkpointToStore;
    private StoreCheckpoint? _checkpointStoring;
    // Positions above the restored state whose CHECKPOINT this replica already sent before a restart.
    private readonly HashSet<ulong> _restoredOwnCheckpoints = [];
    // Peers that served a snapshot not matching its certificate, with that certificate's position.
    private readonly HashSet<(int Server, ulong Sequence)> _badServers = [];
    // Per requester: when the current serving window started and how many chunks went out in it.
    private readonly Dictionary<int, (TimeSpan Since, int Served)> _stateServed = [];
    private Transfer? _transfer;
    // Since when this replica has had evidence that it is behind, and how far it must get.
    private TimeSpan? _behindSince;
    private ulong _behindTarget;
    private TimeSpan? _stateProbeAt;
    private int _probesUnanswered;
    // A probe for a newer stable checkpoint went out in this episode of being behind: the replica is
    // fetching state from then (not only once a chunk is in), so a transfer whose snapshot fits one
    // chunk, installed the moment that chunk arrives, is still seen while it waits for it.
    private bool _fetchingState;
    // The highest view a state offer proved (f+1 view-start CHECKPOINTs), adopted on install.
    private long _offeredView;
    private CheckpointCertificate? _offeredViewStart;
    // Positions up to here in the current view were settled by an installed snapshot: their
    // PREPAREs and COMMITs only rebuild the counter chains, nothing executes again.
    private ulong _installedThrough;
    // The position of the last snapshot installed (from a peer or the store), across views: while
    // ExecutedSequence is still there, this replica holds its state only as f+1 certified it, and
    // executed none of the batches above what the last view change carried itself.
    private ulong _stateInstalledAt;

    // Per requester: what this replica keeps for a peer that is fetching state from it. Without it
    // a transfer that takes longer than one checkpoint interval restarts at every newer checkpoint
    // and never ends under load (the served snapshot and the logs after it were dropped). Like
    // etcd keeping entries after a snapshot for a slow follower, the served snapshot and every
    // log from RetainFrom on stay until the requester catches up, goes quiet, or falls further
    // behind than StateTransferRetention (bounded memory whatever a faulty requester does).
    private readonly Dictionary<int, StatePin> _statePins = [];

    private sealed class StatePin(CheckpointCertificate certificate, EncodedSnapshot snapshot, TimeSpan now)
    {
        public CheckpointCertificate Serving { get; set; } = certificate;
        public EncodedSnapshot? Snapshot { get; set; } = snapshot;
        public ulong RetainFrom { get; set; } = certificate.Sequence;
        public TimeSpan LastAsked { get; set; } = now;
    }

    /// <summary>Peers whose state transfer this replica is keeping history for.</summary>
    public int StatePinsHeld => _statePins.Count;

    private sealed class Transfer(int server, CheckpointCertificate certificate, int count, TimeSpan now)
    {
        public int Server { get; } = server;
        public CheckpointCertificate Certificate { get; } = certificate;
        public byte[]?[] Chunks { get; } = new byte[]?[count];
        // When each chunk was last asked for (null: not yet).
        public TimeSpan?[] AskedAt { get; } = new TimeSpan?[count];
        // Chunks below this one are all in.
        public int FirstMissing { get; set; }
        public int Received { get; set; }
        public TimeSpan LastProgress { get; set; } = now;
        public int Retries { get; set; }
        // The requester's own count of what it asked for per interval, as the server counts it:
        // the request this offer answered was the first of the window.
        public TimeSpan WindowStart { get; set; } = now;
        public int AskedInWindow { get; set; } = 1;
    }

    /// <summary>Snapshots installed from peers since this core started.</summary>
    public long StateTransfersCompleted { get; private set; }

    /// <summary>True while a snapshot is being fetched: from the first probe for a newer stable
    /// checkpoint until one is installed, the replica catches up by retransmission, or no peer has one.</summary>
    public bool StateTransferInProgress => _transfer is not null || _fetchingState;

    /// <summary>Snapshots held for serving (bounded: only at and above the stable checkpoint).</summary>
    public int SnapshotsHeld => _ownSnapshots.Count;

    private void TakeSnapshot()
    {
        var clients = _clients.Records
            .Select(p => new SnapshotClient(p.Key, p.Value.LastExecutedSeq, p.Value.LastReply.View, p.Value.LastReply.RequestDigest, p.Value.LastReply.Result, p.Value.LastActive))
            .ToList();
        _ownSnapshots[ExecutedSequence] = new StateSnapshot(ExecutedSequence, _historyDigest, _app.Snapshot(), clients, _clients.ExpiryHorizon).Encode();
    }

    /// <summary>Have the host keep a stable checkpoint whose snapshot we hold (the newest one waiting
    /// replaces an older one that was not handed out yet).</summary>
    private void AnnounceStable()
    {
        var stable = StableCheckpoint;
        if (stable.Sequence == 0 || !_ownSnapshots.TryGetValue(stable.Sequence, out var snapshot)) return;
        _checkpointToStore = new StoreCheckpoint(stable, snapshot, View, _viewStartsKnown.Values.ToArray());
    }

    /// <summary>The checkpoint handed to the host is durable: the durable log may now drop what it
    /// covers (see CollectGarbage).</summary>
    private void CheckpointStored()
    {
        var stored = _checkpointStoring ?? throw new ProtocolInvariantException("a checkpoint is stored only after it was handed out");
        _checkpointStoring = null;
        if (stored.Certificate.Sequence > StoredCheckpoint) StoredCheckpoint = stored.Certificate.Sequence;
        TrimDurableLog();
    }

    /// <summary>Evidence that this replica is behind (<paramref name="target"/>: a position known to exist).</summary>
    private void NoteBehind(ulong target)
    {
        if (_behindSince is null) _probesUnanswered = 0;
        _behindSince ??= _now;
        if (target > _behindTarget) _behindTarget = target;
    }

    /// <summary>The highest view this replica can prove started, with its proof (null for view 0).</summary>
    private (long View, CheckpointCertificate? Start) ProvenView()
    {
        if (!_viewChanging && (View == 0 || _viewStartCertificate is not null)) return (View, _viewStartCertificate);
        foreach (var (view, start) in _viewStartsKnown.Reverse())
            if (view <= View) return (view, start);
        return (0, null);
    }

    // ----- serving -----

    private void HandleStateRequest(StateRequest request)
    {
        var from = request.ReplicaId;
        if (!AuthenticFromPeer(request, from, () => MessageEncoding.StateRequest(request), request.Signature, "state request")) return;
        // The checkpoint this requester is fetching, kept for it, or else our newest stable one.
        CheckpointCertificate serving;
        EncodedSnapshot snapshot;
        if (_statePins.TryGetValue(from, out var pin) && pin.Snapshot is { } pinned
            && request.Sequence == pin.Serving.Sequence && pin.Serving.Sequence >= request.MinSequence)
        {
            (serving, snapshot) = (pin.Serving, pinned);
        }
        else
        {
            var stable = StableCheckpoint;
            if (stable.Sequence == 0 || stable.Sequence < request.MinSequence || !_ownSnapshots.TryGetValue(stable.Sequence, out var newest))
                return; // nothing newer than what the requester has: no answer is the answer
            (serving, snapshot) = (stable, newest);
        }
        // Bounded work per requester: a faulty replica cannot make us stream snapshots endlessly.
        var window = _stateServed.GetValueOrDefault(from);
        if (_now - window.Since >= _tuning.RetransmitInterval) window = (_now, 0);
        if (window.Served >= _tuning.MaxStateChunksPerInterval) return;
        _stateServed[from] = (window.Since, window.Served + 1);
        PinFor(from, serving, snapshot);

        var size = _tuning.StateChunkSize;
        var count = (int)Math.Max(1, (snapshot.Length + size - 1) / size);
        // A request for another checkpoint gets this one's first chunk: a new offer.
        var index = request.Sequence == serving.Sequence && request.Chunk < count ? request.Chunk : 0;
        var offset = (long)index * size;
        var data = snapshot.Slice(offset, (int)Math.Min(size, snapshot.Length - offset));
        var (view, start) = ProvenView();
        Emit(new Send(from, new StateChunk(Id, serving, view, start, index, count, data)));
    }

    /// <summary>Keep <paramref name="serving"/> and the history after it for <paramref name="requester"/>.
    /// History already kept for it stays kept: a requester that takes a newer offer may still be
    /// replaying from the older one.</summary>
    private void PinFor(int requester, CheckpointCertificate serving, EncodedSnapshot snapshot)
    {
        if (!_statePins.TryGetValue(requester, out var pin))
        {
            _statePins[requester] = new StatePin(serving, snapshot, _now);
            return;
        }
        pin.LastAsked = _now;
        if (pin.Serving.Sequence == serving.Sequence && pin.Snapshot is not null) return;
        pin.Serving = serving;
        pin.Snapshot = snapshot;
        pin.RetainFrom = Math.Min(pin.RetainFrom, serving.Sequence);
    }

    /// <summary>A requester's CHECKPOINT at <paramref name="position"/>: it has executed that far,
    /// so the history kept for it may start there; once it is level with us, nothing is kept.</summary>
    private void NoteRequesterProgress(int requester, ulong position)
    {
        if (!_statePins.TryGetValue(requester, out var pin) || position <= pin.RetainFrom) return;
        pin.RetainFrom = position;
        if (position >= pin.Serving.Sequence) pin.Snapshot = null; // installed, or passed by other means
        if (position >= StableCheckpoint.Sequence && _statePins.Remove(requester)) CollectGarbage(); // what it kept goes now, not at the next checkpoint
    }

    /// <summary>A requester that asked for nothing (chunks or retransmissions) for a while, or fell
    /// further behind than the retention bound, is no longer kept for.</summary>
    private void ExpireStatePins()
    {
        var released = false;
        foreach (var (requester, pin) in _statePins.ToList())
            if (_now - pin.LastAsked > 8 * _tuning.RetransmitInterval
                || StableCheckpoint.Sequence > pin.RetainFrom + (ulong)_tuning.StateTransferRetention)
                released |= _statePins.Remove(requester);
        if (released) CollectGarbage(); // what they kept goes now, not at the next checkpoint
    }

    /// <summary>The lowest position whose history some requester still needs (the stable one if none).</summary>
    private ulong RetainedFrom()
    {
        var from = StableCheckpoint.Sequence;
        foreach (var pin in _statePins.Values) from = Math.Min(from, pin.RetainFrom);
        return from;
    }

    // ----- fetching -----

    private void StateTransferTimers()
    {
        if (_statePins.Count > 0) ExpireStatePins();
        var interval = _tuning.RetransmitInterval;
        if (_transfer is { } t)
        {
            if (_now - t.LastProgress >= 2 * interval)
            {
                if (++t.Retries > 3)
                {
                    // The server went quiet: give up on it for now; the next probe finds another.
                    _transfer = null;
                    return;
                }
                t.LastProgress = _now;
            }
            AskForMissingChunks(t);
            return;
        }
        if (_behindSince is not { } since) return;
        if (ExecutedSequence >= _behindTarget && !IsStalled())
        {
            _behindSince = null; // caught up by ordinary means
            _fetchingState = false;
            return;
        }
        // Ordinary retransmission gets a chance first; then probe every other interval.
        if (_now - since < interval || (_stateProbeAt is { } probed && _now - probed < 2 * interval)) return;
        if (_probesUnanswered >= 5)
        {
            // No peer has a newer stable checkpoint: retransmission does the rest.
            _behindSince = null;
            _fetchingState = false;
            return;
        }
        _probesUnanswered++;
        _stateProbeAt = _now;
        _fetchingState = true;
        RequestChunk(null, 0, 0);
    }

    /// <summary>
    /// Asks the transfer's server for the chunks still missing, as many per retransmit interval as
    /// it serves (<see cref="ProtocolTuning.MaxStateChunksPerInterval"/>, a bound all replicas
    /// share). One chunk per round trip would pace the transfer by latency, and a request the
    /// server's cap dropped would wait for the give-up timer; asking for more than the cap only
    /// gets requests dropped. A chunk asked for an interval ago and not in (lost, or over the cap
    /// on a window the server counts from another instant) is asked for again.
    /// </summary>
    private void AskForMissingChunks(Transfer t)
    {
        var interval = _tuning.RetransmitInterval;
        if (_now - t.WindowStart >= interval)
        {
            t.WindowStart = _now;
            t.AskedInWindow = 0;
        }
        while (t.FirstMissing < t.Chunks.Length && t.Chunks[t.FirstMissing] is not null) t.FirstMissing++;
        // From the lowest missing chunk up: chunks asked for and not yet overdue are skipped, and
        // there are at most about two windows of them, so this scan stays short.
        for (var i = t.FirstMissing; i < t.Chunks.Length && t.AskedInWindow < _tuning.MaxStateChunksPerInterval; i++)
        {
            if (t.Chunks[i] is not null || (t.AskedAt[i] is { } asked && _now - asked < interval)) continue;
            t.AskedAt[i] = _now;
            t.AskedInWindow++;
            RequestChunk(t.Server, t.Certificate.Sequence, i);
        }
    }

    private void RequestChunk(int? server, ulong sequence, int chunk)
    {
        var unsigned = new StateRequest(Id, ExecutedSequence + 1, sequence, chunk, []);
        var signed = unsigned with { Signature = _crypto.Signer.Sign(MessageEncoding.StateRequest(unsigned)) };
        Emit(new Send(server, signed));
    }

    private void HandleStateChunk(StateChunk chunk)
    {
        if (MessageLimits.Check(chunk) is { } malformed)
        {
            Reject(SafeSender(chunk), RejectReason.Malformed, malformed);
            return;
        }
        var server = chunk.ReplicaId;
        if (!IsReplica(server) || server == Id)
        {
            Reject(server, RejectReason.UnknownSender, $"state chunk from {server}");
            return;
        }
        var certificate = chunk.Certificate;
        // Unsolicited or stale offers change nothing.
        if (_behindSince is null && _transfer is null) return;
        if (certificate.Sequence <= ExecutedSequence || _badServers.Contains((server, certificate.Sequence))) return;
        _probesUnanswered = 0;
        NoteOfferedView(chunk);

        var t = _transfer;
        if (t is null || certificate.Sequence > t.Certificate.Sequence)
        {
            // A new offer: the certificate must hold (f+1 matching CHECKPOINTs with valid UIs).
            if (!ValidCertificate(certificate, viewStart: null))
            {
                Reject(server, RejectReason.InvalidUi, $"state offer at {certificate.Sequence}: certificate");
                return;
            }
            _transfer = t = new Transfer(server, certificate, chunk.Count, _now);
        }
        else
        {
            if (server != t.Server || certificate.Sequence != t.Certificate.Sequence) return;
            // One server, one certificate: a change of either mid-way is a faulty server.
            if (chunk.Count != t.Chunks.Length || !certificate.StateDigest.AsSpan().SequenceEqual(t.Certificate.StateDigest))
            {
                FailTransfer(t, "chunk count or certificate changed mid-transfer");
                return;
            }
        }
        if (t.Chunks[chunk.Index] is null)
        {
            t.Chunks[chunk.Index] = chunk.Data;
            t.Received++;
            t.LastProgress = _now;
            t.Retries = 0;
        }
        if (t.Received < t.Chunks.Length)
        {
            AskForMissingChunks(t);
            return;
        }
        CompleteTransfer(t);
    }

    private void NoteOfferedView(StateChunk chunk)
    {
        // The view travels unsigned; only a view-start certificate at or below the offered
        // checkpoint makes it count (any f+1 view-start CHECKPOINTs prove the view began).
        if (chunk.View <= _offeredView || chunk.ViewStart is not { } start) return;
        if (start.Sequence > chunk.Certificate.Sequence || !ValidCertificate(start, viewStart: chunk.View)) return;
        _offeredView = chunk.View;
        _offeredViewStart = start;
    }

    private void FailTransfer(Transfer t, string why)
    {
        Reject(t.Server, RejectReason.InvalidSnapshot, $"snapshot at {t.Certificate.Sequence}: {why}");
        _badServers.Add((t.Server, t.Certificate.Sequence));
        _transfer = null;
        _stateProbeAt = null; // ask the others right away
    }

    private void CompleteTransfer(Transfer t)
    {
        var bytes = new byte[t.Chunks.Sum(c => (long)c!.Length)];
        var at = 0;
        foreach (var c in t.Chunks)
        {
            c!.CopyTo(bytes, at);
            at += c.Length;
        }
        if (StateSnapshot.TryDecode(bytes) is not { } snapshot || snapshot.Sequence != t.Certificate.Sequence)
        {
            FailTransfer(t, "malformed");
            return;
        }
        // Kept as this replica encodes it (the application's part is the one just decoded), so what
        // it stores and serves from here on never depends on how the server laid its bytes out.
        if (!TryInstall(snapshot, snapshot.Encode(), t.Certificate))
        {
            FailTransfer(t, "digest differs from the certified one");
            return;
        }
        _transfer = null;
        StateTransfersCompleted++;
        Emit(new StateInstalled(snapshot.Sequence, t.Server));
        // A batch right above the snapshot may already hold its commit quorum: its COMMITs came
        // while earlier positions were still missing (seed 40334: a restarted primary got every
        // COMMIT for its own PREPARE before the snapshot below it, and none would come again).
        TryExecute();
        AnnounceStable();
        // Keep ticking until the positions after the checkpoint arrive by retransmission.
        NoteBehind(ExecutedSequence + 1);
        // Rebuild every peer's stream from its anchors: ask the peer and the relays.
        for (var peer = 0; peer < N; peer++)
            if (peer != Id) AskRetransmission(peer, force: true, relays: true);
    }

    /// <summary>
    /// Replaces the application and reply cache with the snapshot if, and only if, its digest is
    /// the certified one; otherwise nothing changes. Ordering state above the checkpoint stays.
    /// </summary>
    private bool TryInstall(StateSnapshot snapshot, EncodedSnapshot encoded, CheckpointCertificate certificate)
    {
        ProtocolInvariantException.Check(snapshot.Sequence == certificate.Sequence, "a snapshot is installed at its certificate's position");
        ProtocolInvariantException.Check(snapshot.Sequence > ExecutedSequence, "state transfer only moves forward");
        var previous = _app.Snapshot();
        if (!_app.TryRestore(snapshot.Application)
            || !DigestOf(_app.Digest(), snapshot.History, snapshot.ExpiryHorizon, snapshot.Clients).AsSpan().SequenceEqual(certificate.StateDigest))
        {
            ProtocolInvariantException.Check(_app.TryRestore(previous), "the application restores its own snapshot");
            return false;
        }

        // The reply cache, re-signed by this replica (one root over all of it): a client counts
        // replies per replica.
        var replies = ReplyBatchSigner.Sign(_crypto.Signer, Id, snapshot.Clients.Select(c => new ReplyContent(c.View, c.ClientId, c.Seq, c.RequestDigest, c.Result, ReplyStatus.Executed, c.LastActive)).ToList());
        _clients.Restore(snapshot.Clients.Zip(replies, (c, reply) => (c.ClientId, new ClientRecord(c.Seq, reply, c.LastActive))), snapshot.ExpiryHorizon);
        foreach (var c in snapshot.Clients)
            if (_known.TryGetValue(c.ClientId, out var known) && known.Request.Seq <= c.Seq) ForgetKnown(c.ClientId);
        ExecutedSequence = snapshot.Sequence;
        _stateInstalledAt = snapshot.Sequence;
        _historyDigest = snapshot.History;
        _lastExecutionAt = _now;
        _ownCheckpointDigests[snapshot.Sequence] = Sha256Digest.From(certificate.StateDigest);
        _ownSnapshots[snapshot.Sequence] = encoded;
        if (certificate.Sequence > StableCheckpoint.Sequence)
        {
            StableCheckpoint = certificate;
            CollectGarbage();
        }

        // Ordering state: batches at or below the checkpoint are settled; those above it stay
        // (they are consecutive from the checkpoint on, as every accepted PREPARE is).
        foreach (var (counter, batch) in _prepares.Where(p => p.Value.Prepare.Sequence <= snapshot.Sequence).ToList()) _prepares.Remove(counter);
        var waiting = _executionQueue.Where(b => b.Prepare.Sequence > snapshot.Sequence).ToList();
        _executionQueue.Clear();
        foreach (var batch in waiting) _executionQueue.Enqueue(batch);
        // Orderings the snapshot settled are the client table's now; an evicted client's would
        // otherwise keep filtering its retransmissions, which must be ordered to be answered.
        _highestOrderedSeq.Clear();
        foreach (var batch in waiting)
            foreach (var request in batch.Prepare.Batch) NoteOrdered(request);

        // The view: the highest proven one offered, if it is not older than ours.
        if ((_offeredView > View || (_offeredView == View && _viewChanging && _offeredViewStart is not null))
            && (_offeredViewStart?.Sequence ?? 0) <= snapshot.Sequence)
            AdoptView(_offeredView, _offeredViewStart);
        if (!_viewChanging)
        {
            SettleThroughSnapshot(snapshot.Sequence);
            // A primary that restarted and may have led this view before (a view it adopted here,
            // which cleared the suspension its recovery put in place) has lost track of what it
            // proposed: it must not propose again in this view (a position could get two
            // batches); it hands over. A primary that only fell behind knows what it proposed (up
            // to the snapshot, all settled now) and goes on from there: handing over cost a view
            // change, and where nothing expires a request timer (CI, stop 42) the service stopped.
            if (IsPrimary && _viewAtRestart is { } restartedIn && View <= restartedIn
                && _lastProposedSequence <= snapshot.Sequence && _executionQueue.Count == 0) SuspendProposals();
        }
        _behindSince = null;
        _behindTarget = 0;
        _stateProbeAt = null;
        _fetchingState = false;
        return true;
    }

    /// <summary>Join a view that f+1 view-start CHECKPOINTs prove started at <paramref name="start"/>.</summary>
    private void AdoptView(long view, CheckpointCertificate? start)
    {
        ProtocolInvariantException.Check(view >= View, "views only move forward");
        ProtocolInvariantException.Check(view == 0 || start is not null, "a view other than 0 is adopted only with its start proven");
        View = view;
        ResetViewState();
        _viewChanging = false;
        _viewChangeDeferred = false;
        _viewChangeDeadline = null;
        _viewBase = start?.Sequence ?? 0;
        _viewStartCertificate = start;
        if (start is not null) _viewStartsKnown[view] = start;
        _lastPreparedSequence = _viewBase;
        _lastProposedSequence = _viewBase;
        foreach (var v in _viewChanges.Keys.Where(v => v <= View).ToList()) _viewChanges.Remove(v);
        _validViewChanges.Clear();
    }

    /// <summary>Positions of the current view up to <paramref name="position"/> are held from a
    /// snapshot: their PREPAREs and COMMITs only rebuild the counter chains (SettledByInstall).</summary>
    private void SettleThroughSnapshot(ulong position)
    {
        _lastPreparedSequence = Math.Max(_lastPreparedSequence, position);
        // A primary proposes every position of its view in order, from the view's first PREPARE
        // (which carries VS) on: carried positions it has not proposed again yet are still
        // proposed, settled here or not, because backups that did not install this snapshot
        // expect them (seed 83931: a new primary installed a snapshot before its first PREPARE,
        // skipped to the position after it, and no backup could ever accept that PREPARE).
        var proposedThrough = position;
        if (IsPrimary && _carried.Keys.Where(p => p > _lastProposedSequence && p <= position).DefaultIfEmpty().Min() is var first and > 0)
            proposedThrough = first - 1;
        _lastProposedSequence = Math.Max(_lastProposedSequence, proposedThrough);
        _installedThrough = position;
    }

    private void SuspendProposals()
    {
        _proposalsSuspended = true;
        SuspectPrimary(View + 1);
    }
}
