using MinBft.Encoding;
using MinBft.Messages;

namespace MinBft.Protocol;

/// <summary>
/// View change (PROTOCOL.md section 7, with the carry-over rule of VIEW-CHANGE-DESIGN.md).
/// A backup that waits too long for a request suspects the primary (REQ-VIEW-CHANGE); f+1
/// suspicions move a replica to the next view (VIEW-CHANGE with its complete log); the new
/// primary proves the view with f+1 VIEW-CHANGEs (NEW-VIEW), from which every replica computes
/// the same carried-over history, executes what it misses, and announces the view's start.
/// </summary>
public sealed partial class ReplicaCore
{
    private bool _viewChanging;
    private bool _viewChangeDeferred;                 // VIEW-CHANGE waits for pending UIs
    private readonly Dictionary<int, long> _highestVote = [];   // per replica: highest view it asked for
    // Per peer: its signed REQ-VIEW-CHANGE behind that vote (a vote of a VIEW-CHANGE has none here).
    private readonly Dictionary<int, ReqViewChange> _voteRequests = [];
    private readonly SortedDictionary<long, Dictionary<int, ViewChange>> _viewChanges = [];
    private readonly HashSet<Sha256Digest> _validViewChanges = [];
    private bool _newViewSent;
    private TimeSpan? _viewChangeDeadline;
    private TimeSpan _viewChangeTimeout;
    private TimeSpan? _reqViewChangeSentAt;
    private long _reqViewChangeTarget;
    private bool _carryingOver;
    // Carried batches above the NEW-VIEW's checkpoint, by position: the new primary proposes
    // exactly these first, and backups accept nothing else at those positions.
    private readonly SortedDictionary<ulong, Request[]> _carried = [];
    private byte[] _genesisDigest = [];
    // Position the current view starts after (its carried history ends there); 0 in view 0.
    private ulong _viewBase;
    // VS(View) once f+1 view-start CHECKPOINTs at _viewBase arrived; the primary proposes after.
    private CheckpointCertificate? _viewStartCertificate;
    private readonly Dictionary<(long View, ulong Sequence, Sha256Digest Digest), Dictionary<int, Checkpoint>> _viewStartVotes = [];
    // VS certificates of the views whose messages are still in the sent log (VIEW-CHANGE needs them).
    private readonly SortedDictionary<long, CheckpointCertificate> _viewStartsKnown = [];

    // The request timer backs off like PBFT's: it doubles with each view change (up to 8x) and
    // resets once a request executes in the new view, so a network slower than the timeout
    // does not make correct replicas change view over and over.
    private int _requestTimeoutBackoff;

    private TimeSpan RequestTimeout => _tuning.RequestTimeout * (1 << _requestTimeoutBackoff);

    /// <summary>True between joining a view change and accepting its NEW-VIEW.</summary>
    public bool ViewChanging => _viewChanging;

    /// <summary>View changes this replica completed (NEW-VIEWs it entered).</summary>
    public long ViewChangesCompleted { get; private set; }

    // ----- suspicion: REQ-VIEW-CHANGE -----

    private void SuspectPrimary(long target)
    {
        if (target <= View && !_viewChanging) return;
        if (_reqViewChangeTarget >= target && _reqViewChangeSentAt is { } at && _now - at < _tuning.RetransmitInterval) return;
        _reqViewChangeTarget = Math.Max(_reqViewChangeTarget, target);
        _reqViewChangeSentAt = _now;
        var unsigned = new ReqViewChange(Id, View, _reqViewChangeTarget, []);
        var signed = unsigned with { Signature = _crypto.Signer.Sign(MessageEncoding.ReqViewChange(unsigned)) };
        Emit(new Send(null, signed));
        CountVote(Id, _reqViewChangeTarget);
        if (_viewChanging) RelayVoteRequests();
    }

    /// <summary>
    /// A replica changing view passes on, with its own, the signed suspicions of its peers that
    /// brought it there. A suspicion lives only in memory: a peer that asked for this view and then
    /// restarted has forgotten it, and the replicas that never received it would stay in the old
    /// view, where nothing makes them suspect a primary that works for them, while this replica
    /// waits alone for a NEW-VIEW (seed 209651: replica 2 asked for view 2, restarted, and replica
    /// 0 sat in view 2 for good). The signatures make a relayed suspicion count as its signer's.
    /// </summary>
    private void RelayVoteRequests()
    {
        foreach (var (replica, request) in _voteRequests)
            if (replica != Id && request.NewView >= View) Emit(new Send(null, request));
    }

    private void HandleReqViewChange(ReqViewChange request)
    {
        var from = request.ReplicaId;
        if (!AuthenticFromPeer(request, from, () => MessageEncoding.ReqViewChange(request), request.Signature, "REQ-VIEW-CHANGE")) return;
        if (request.NewView <= View) return; // about a view this replica already left
        if (request.NewView > View + _tuning.MaxViewLookahead)
        {
            Reject(from, RejectReason.Inconsistent, $"REQ-VIEW-CHANGE to view {request.NewView} is too far ahead");
            return;
        }
        if (request.NewView > _highestVote.GetValueOrDefault(from)) _voteRequests[from] = request;
        CountVote(from, request.NewView);
    }

    /// <summary>
    /// A replica moves to view t once f+1 distinct replicas asked for t or later: at least one of
    /// them is correct, so f faulty replicas can never force a view change alone. Counting "t or
    /// later" lets overlapping view changes (to v+1 and v+2) converge on one view.
    /// </summary>
    private void CountVote(int replica, long view)
    {
        if (_highestVote.GetValueOrDefault(replica) >= view) return;
        _highestVote[replica] = view;
        var votes = _highestVote.Values.OrderDescending().ToList();
        if (votes.Count < _settings.CommitQuorum) return;
        var target = votes[_settings.CommitQuorum - 1];
        if (target > View) StartViewChange(target);
    }

    // ----- joining: VIEW-CHANGE -----

    private void StartViewChange(long view)
    {
        ProtocolInvariantException.Check(view > View, "views only move forward");
        View = view;
        _viewChanging = true;
        _requestTimeoutBackoff = Math.Min(3, _requestTimeoutBackoff + 1);
        _newViewSent = false;
        if (_viewChangeTimeout == TimeSpan.Zero) _viewChangeTimeout = _tuning.ViewChangeTimeout;
        _viewChangeDeadline = _now + _viewChangeTimeout;
        ResetViewState();
        // The log must end right before the VIEW-CHANGE's counter: wait for pending UIs.
        if (_own.Uncertified > 0) _viewChangeDeferred = true;
        else SendViewChange();
    }

    private void SendViewChange()
    {
        _viewChangeDeferred = false;
        // Restarted after a counter gap: the log no longer holds what this replica committed to
        // before the gap, so its VIEW-CHANGE could let a NEW-VIEW drop a committed batch. It
        // abstains (as a crashed replica would) until its stable checkpoint covers all of that.
        if (ViewChangesWithheldUntil > 0)
        {
            ViewChangesWithheld++;
            return;
        }
        ProtocolInvariantException.Check(_own.Uncertified == 0, "a VIEW-CHANGE's log ends right before its own counter");
        // From the anchor at or below stable - W, even when memory keeps more for a peer's state transfer.
        var log = MessageEncoding.LogForm(_own.CertifiedMessages(_viewChangeLogFrom));
        var views = LoggedViews(log);
        var starts = _viewStartsKnown.Where(p => views.Contains(p.Key)).Select(p => p.Value).ToArray();
        RequestUiFor(new ViewChange(Id, View, StableCheckpoint, log, UniqueIdentifier.None, starts));
    }

    /// <summary>VIEW-CHANGEs not sent because a counter gap hid commitments (see <see cref="GapCommitHorizon"/>).</summary>
    public long ViewChangesWithheld { get; private set; }

    private static HashSet<long> LoggedViews(IEnumerable<CertifiedMessage> log)
    {
        var views = new HashSet<long>();
        foreach (var entry in log)
        {
            if (entry is Prepare p && p.View > 0) views.Add(p.View);
            if (entry is Commit c && c.View > 0) views.Add(c.View);
        }
        return views;
    }

    /// <summary>Forget the ordering state of the view being left; executed history stays.</summary>
    private void ResetViewState()
    {
        _carried.Clear();
        _installedThrough = 0;
        _proposalsSuspended = false;
        // Clients answered by an old view's primary are not this view's to wait for.
        _returning.Clear();
        _restoredOwnCommits.Clear();
        _prepares.Clear();
        _executionQueue.Clear();
        _lastPrepareCounter = 0;
        Array.Clear(_lastCommitted);
        Array.Clear(_lastCommittedPosition);
        _viewStartCertificate = null;
        // Orderings of the old view that did not execute are void; executed ones are in the client table.
        _highestOrderedSeq.Clear();
        // Requests waiting at an old primary become known requests: the new primary gets them.
        foreach (var (request, arrived) in _pending) RememberKnown(request);
        ClearPending();
        foreach (var known in _known.Values) known.Restart(_now);
    }

    /// <summary>A VIEW-CHANGE in its sender's stream (or ours, once certified).</summary>
    private Outcome ProcessViewChange(ViewChange viewChange, bool own)
    {
        if (viewChange.NewView < View || (viewChange.NewView == View && !_viewChanging)) return Outcome.Accepted; // stale
        if (!own && ValidateViewChange(viewChange) is { } invalid)
            return RejectOutcome(viewChange.ReplicaId, invalid.Reason, invalid.Detail);
        if (viewChange.NewView > View + _tuning.MaxViewLookahead)
            return RejectOutcome(viewChange.ReplicaId, RejectReason.Inconsistent, "VIEW-CHANGE too far ahead");
        // One VIEW-CHANGE per sender, its latest: a sender that moved on to a later view takes no
        // part in an earlier one (it would ignore that NEW-VIEW). This bounds what a Byzantine
        // replica can make us hold to one full log, not one per view up to the lookahead.
        foreach (var (view, held) in _viewChanges)
            if (view != viewChange.NewView && held.ContainsKey(viewChange.ReplicaId))
            {
                if (view > viewChange.NewView) return Outcome.Accepted; // superseded already
                held.Remove(viewChange.ReplicaId);
            }
        if (!_viewChanges.TryGetValue(viewChange.NewView, out var forView)) _viewChanges[viewChange.NewView] = forView = [];
        forView.TryAdd(viewChange.ReplicaId, viewChange);
        ProtocolInvariantException.Check(_viewChanges.Values.Sum(v => v.Count) <= N, "at most one VIEW-CHANGE held per replica");
        // A VIEW-CHANGE is also a vote: its sender saw f+1 suspicions of the old primary.
        if (!own) CountVote(viewChange.ReplicaId, viewChange.NewView);
        MaybeSendNewView();
        return Outcome.Accepted;
    }

    /// <param name="vc">A VIEW-CHANGE, checked for completeness and its certificates.</param>
    /// <param name="certifiedDigest">Its certified digest, when the caller hashed it already (a
    /// VIEW-CHANGE's log can be tens of MiB: hashed once per check, not twice).</param>
    private (RejectReason Reason, string Detail)? ValidateViewChange(ViewChange vc, byte[]? certifiedDigest = null)
    {
        var digest = Sha256Digest.From(certifiedDigest ?? MessageEncoding.CertifiedDigest(vc));
        if (_validViewChanges.Contains(digest)) return null;
        var sender = vc.ReplicaId;
        if (!IsReplica(sender) || vc.NewView < 1) return (RejectReason.Inconsistent, "VIEW-CHANGE sender or view");
        if (!ValidCertificate(vc.CheckpointCertificate, viewStart: null))
            return (RejectReason.InvalidUi, "VIEW-CHANGE checkpoint certificate");
        var starts = new HashSet<long>();
        foreach (var start in vc.ViewStarts)
        {
            if (!ValidCertificate(start, viewStart: start.Checkpoints.FirstOrDefault()?.View ?? -1))
                return (RejectReason.InvalidUi, "VIEW-CHANGE view-start certificate");
            starts.Add(start.Checkpoints[0].View);
        }

        // Completeness: contiguous counters from an anchor up to the VIEW-CHANGE's own.
        var log = vc.Log;
        if (log.Length == 0)
        {
            if (vc.Ui.Counter != 1) return (RejectReason.Inconsistent, "VIEW-CHANGE log empty but counters were used");
        }
        else
        {
            var first = log[0].Ui.Counter;
            var anchored = first == 1 ||
                (log[0] is Checkpoint { IsViewStart: false } anchor && anchor.Sequence + (ulong)_settings.Watermark <= vc.CheckpointCertificate.Sequence);
            if (!anchored) return (RejectReason.Inconsistent, "VIEW-CHANGE log does not start at a valid anchor");
            for (var i = 0; i < log.Length; i++)
                if (log[i].Ui.Counter != first + (ulong)i) return (RejectReason.Inconsistent, "VIEW-CHANGE log has a gap");
            if (first + (ulong)log.Length != vc.Ui.Counter) return (RejectReason.Inconsistent, "VIEW-CHANGE log is truncated");
        }
        foreach (var entry in log)
        {
            // One stream: counters are contiguous only under one USIG identity.
            if (entry.Ui.Epoch != vc.Ui.Epoch)
                return (RejectReason.Inconsistent, $"VIEW-CHANGE log entry {entry.Ui.Counter} is of USIG epoch {entry.Ui.Epoch}, not {vc.Ui.Epoch}");
            if (!_crypto.Ui.Verify(sender, entry.Ui, MessageEncoding.CertifiedDigest(entry)))
                return (RejectReason.InvalidUi, $"VIEW-CHANGE log entry {entry.Ui.Counter}");
            var prepare = Prepare.In(entry);
            if (prepare is null) continue;
            if (entry is Commit commit && commit.View != prepare.View)
                return (RejectReason.Inconsistent, "logged COMMIT and its PREPARE differ in view");
            if (prepare.PrimaryId != PrimaryOf(prepare.View)
                || !_crypto.Ui.Verify(prepare.PrimaryId, prepare.PrepareUi, MessageEncoding.CertifiedDigest(prepare)))
                return (RejectReason.InvalidUi, $"logged PREPARE of view {prepare.View}");
            if (!UnderLeaderIdentity(prepare))
                return (RejectReason.EpochNotForView, $"logged PREPARE of view {prepare.View} under USIG epoch {prepare.PrepareUi.Epoch}");
            if (prepare.View > 0 && !starts.Contains(prepare.View))
                return (RejectReason.Inconsistent, $"VIEW-CHANGE lacks the view-start certificate of view {prepare.View}");
        }
        _validViewChanges.Add(digest);
        return null;
    }

    /// <summary>A VIEW-CHANGE counts towards a NEW-VIEW's f+1 only if its sender's memory covers what
    /// an older USIG identity of the sender may have committed (USIG-ROTATION-DESIGN.md, rule 6).</summary>
    private bool Vouches(ViewChange vc) => _crypto.Ui.Epochs.Vouches(vc.ReplicaId, vc.Ui.Epoch, vc.CheckpointCertificate.Sequence);

    /// <summary>f+1 CHECKPOINTs from distinct replicas for one position and digest, each UI valid
    /// (for a view start: all view-start CHECKPOINTs of that view).</summary>
    private bool ValidCertificate(CheckpointCertificate certificate, long? viewStart)
    {
        if (certificate.Sequence == 0 && viewStart is null) return certificate.Checkpoints.Length == 0;
        var signers = new HashSet<int>();
        foreach (var cp in certificate.Checkpoints)
        {
            if (!IsReplica(cp.ReplicaId) || !signers.Add(cp.ReplicaId)) return false;
            if (cp.Sequence != certificate.Sequence || !cp.StateDigest.AsSpan().SequenceEqual(certificate.StateDigest)) return false;
            if (viewStart is { } view && (cp.View != view || !cp.IsViewStart)) return false;
            if (!_crypto.Ui.Verify(cp.ReplicaId, cp.Ui, MessageEncoding.CertifiedDigest(cp))) return false;
        }
        return signers.Count >= _settings.CommitQuorum;
    }

    // ----- the new primary: NEW-VIEW -----

    private void MaybeSendNewView()
    {
        if (!_viewChanging || _newViewSent || !IsPrimary || !MayLeadView || _viewChangeDeferred) return;
        if (!_viewChanges.TryGetValue(View, out var forView) || !forView.ContainsKey(Id)) return;
        // Only VIEW-CHANGEs whose sender's memory is whole count (a rotated replica's, below its
        // first checkpoint, do not); f+1 of them, our own first when it counts.
        var vouching = forView.Values.Where(Vouches).OrderBy(vc => vc.ReplicaId == Id ? -1 : vc.ReplicaId).ToList();
        if (vouching.Count < _settings.CommitQuorum) return;
        var chosen = vouching.Take(_settings.CommitQuorum).ToArray();
        _newViewSent = true;
        RequestUiFor(new NewView(Id, View, chosen, UniqueIdentifier.None));
    }

    /// <summary>A NEW-VIEW in the new primary's stream (or ours, once certified).</summary>
    private Outcome ProcessNewView(NewView newView, bool own)
    {
        if (newView.View < View || (newView.View == View && !_viewChanging)) return Outcome.Accepted; // stale or repeated
        if (newView.View > View + _tuning.MaxViewLookahead)
            return RejectOutcome(newView.PrimaryId, RejectReason.Inconsistent, "NEW-VIEW too far ahead");
        if (!own)
        {
            // Sent by reference: every VIEW-CHANGE it names must be held whole first.
            var (resolution, whole, held, reason, detail) = ResolveProof(newView);
            if (resolution == ProofResolution.Missing) return Outcome.Blocked;
            if (resolution == ProofResolution.Invalid) return RejectOutcome(newView.PrimaryId, reason, detail);
            newView = whole!;
            if (ValidateNewView(newView, held) is { } invalid)
                return RejectOutcome(newView.PrimaryId, invalid.Reason, invalid.Detail);
        }
        var proof = newView.Proof();
        var (checkpoint, history) = ComputeCarryOver(proof);
        // A replica behind the carried history's start needs a snapshot (state transfer).
        var start = history.Count > 0 ? history[0].Sequence : checkpoint.Sequence + 1;
        if (ExecutedSequence + 1 < start && ExecutedSequence < checkpoint.Sequence)
        {
            NoteBehind(checkpoint.Sequence);
            return Outcome.Blocked;
        }
        if (newView.View > View)
        {
            // f+1 VIEW-CHANGEs prove the view change is legitimate: join it directly.
            View = newView.View;
            ResetViewState();
        }
        EnterView(checkpoint, history);
        ForgetViewChangeCopies(proof);
        return Outcome.Accepted;
    }

    /// <param name="newView">A NEW-VIEW with every VIEW-CHANGE whole.</param>
    /// <param name="held">Per VIEW-CHANGE: resolved from this replica's own holdings, checked when
    /// it arrived (neither hashed nor verified again).</param>
    private (RejectReason Reason, string Detail)? ValidateNewView(NewView newView, bool[] held)
    {
        if (newView.PrimaryId != PrimaryOf(newView.View)) return (RejectReason.NotPrimary, "NEW-VIEW from a replica that is not the new primary");
        if (newView.Ui.Epoch != _crypto.Ui.Epochs.LeaderEpoch(newView.PrimaryId, newView.View))
            return (RejectReason.EpochNotForView, $"NEW-VIEW of view {newView.View} under USIG epoch {newView.Ui.Epoch}");
        var senders = new HashSet<int>();
        var vouching = 0;
        var proof = newView.Proof();
        for (var i = 0; i < proof.Length; i++)
        {
            var vc = proof[i];
            if (vc.NewView != newView.View || !senders.Add(vc.ReplicaId))
                return (RejectReason.Inconsistent, "NEW-VIEW holds a VIEW-CHANGE for another view or a repeated sender");
            if (held[i])
            {
                if (Vouches(vc)) vouching++;
                continue;
            }
            var digest = MessageEncoding.CertifiedDigest(vc);
            if (!_crypto.Ui.Verify(vc.ReplicaId, vc.Ui, digest))
                return (RejectReason.InvalidUi, "NEW-VIEW holds a forged VIEW-CHANGE");
            if (ValidateViewChange(vc, digest) is { } invalid) return (invalid.Reason, "NEW-VIEW: " + invalid.Detail);
            if (Vouches(vc)) vouching++;
        }
        if (vouching < _settings.CommitQuorum) return (RejectReason.Inconsistent, "NEW-VIEW has fewer than f+1 VIEW-CHANGEs that count");
        return null;
    }

    /// <summary>
    /// The carried-over history (VIEW-CHANGE-DESIGN.md): per view, the chain of the primary's
    /// PREPAREs in counter order from the view's proven start; per position, the candidate of the
    /// highest view; positions consecutive. Deterministic: every replica computes the same.
    /// </summary>
    private (CheckpointCertificate Checkpoint, List<Prepare> History) ComputeCarryOver(ViewChange[] viewChanges)
    {
        var checkpoint = viewChanges.Select(vc => vc.CheckpointCertificate).MaxBy(c => c.Sequence)!;
        var bases = new Dictionary<long, ulong> { [0] = 0 };
        foreach (var start in viewChanges.SelectMany(vc => vc.ViewStarts))
        {
            bases[start.Checkpoints[0].View] = start.Sequence;
            if (start.Sequence > checkpoint.Sequence) checkpoint = start;
        }
        var byView = new SortedDictionary<long, SortedDictionary<ulong, Prepare>>();
        foreach (var entry in viewChanges.SelectMany(vc => vc.Log))
        {
            var prepare = Prepare.In(entry);
            if (prepare is null) continue;
            if (!byView.TryGetValue(prepare.View, out var chain)) byView[prepare.View] = chain = [];
            chain.TryAdd(prepare.PrepareUi.Counter, prepare);
        }
        var candidates = new Dictionary<ulong, (long View, Prepare Prepare)>();
        foreach (var (view, chain) in byView)
        {
            if (!bases.TryGetValue(view, out var viewBase)) continue; // no proof where it starts
            ulong? last = null;
            foreach (var prepare in chain.Values)
            {
                if (last is null)
                {
                    // Stale positions (at or below the view's start) were never valid in it.
                    if (prepare.Sequence <= viewBase) continue;
                    // The chain may start mid-way only inside settled history.
                    if (prepare.Sequence != viewBase + 1 && prepare.Sequence > checkpoint.Sequence + 1) break;
                }
                else if (prepare.Sequence != last + 1)
                {
                    // Where correct backups got stuck; but a gap at or below the checkpoint is
                    // only a lagging sender's log reaching into settled history.
                    if (prepare.Sequence > checkpoint.Sequence + 1) break;
                }
                last = prepare.Sequence;
                if (!candidates.TryGetValue(prepare.Sequence, out var existing) || existing.View < view)
                    candidates[prepare.Sequence] = (view, prepare);
            }
        }
        // The longest run of consecutive positions through checkpoint + 1 (or ending at it).
        var history = new List<Prepare>();
        var low = checkpoint.Sequence + 1;
        while (low > 1 && candidates.ContainsKey(low - 1)) low--;
        for (var position = low; candidates.TryGetValue(position, out var candidate); position++) history.Add(candidate.Prepare);
        return (checkpoint, history);
    }

    /// <summary>
    /// Enter the view. Carried batches at or below the NEW-VIEW's checkpoint are settled (f+1
    /// replicas certified that state) and execute at once; those above it are NOT executed
    /// here: the new primary proposes them again, in order, as PREPAREs of this view, and they
    /// execute only once committed in this view by f+1 replicas, like any batch (PBFT's
    /// re-proposal). Executing them on the NEW-VIEW alone would be unsafe: a later view change
    /// among replicas that never processed this NEW-VIEW could carry another batch there.
    /// </summary>
    private void EnterView(CheckpointCertificate checkpoint, List<Prepare> history)
    {
        // Safety, asserted: every batch this replica executed was committed by f+1 replicas, so
        // any f+1 complete VIEW-CHANGEs carry it (or a stable checkpoint covers it). A replica may
        // be further only through a snapshot it installed and has not executed past: positions
        // ordered in this very view after its NEW-VIEW, certified by f+1 before the NEW-VIEW
        // reached this replica (seed 152322). No NEW-VIEW into this view can carry those.
        var end = Math.Max(checkpoint.Sequence, history.Count > 0 ? history[^1].Sequence : 0);
        var settledAbove = ExecutedSequence > end;
        ProtocolInvariantException.Check(!settledAbove || ExecutedSequence == _stateInstalledAt,
            $"the NEW-VIEW carries every batch this replica executed (executed {ExecutedSequence}, carried to {end})");
        _viewChanging = false;
        _viewChangeDeferred = false;
        _viewChangeDeadline = null;
        _viewChangeTimeout = _tuning.ViewChangeTimeout; // reset after a successful view change
        ViewChangesCompleted++;
        var start = checkpoint.Sequence;
        _carryingOver = true;
        foreach (var prepare in history)
        {
            if (prepare.Sequence <= ExecutedSequence) continue;
            if (prepare.Sequence > start || prepare.Sequence != ExecutedSequence + 1) break;
            var batch = new PreparedBatch(prepare, Sha256Digest.From(MessageEncoding.CertifiedDigest(prepare)), 0);
            foreach (var replica in Enumerable.Range(0, _settings.CommitQuorum)) batch.Committers.Add(replica);
            Execute(batch);
            if (ExecutedSequence == start && start > 0)
                ProtocolInvariantException.Check(Sha256Digest.From(StateDigest()) == Sha256Digest.From(checkpoint.StateDigest),
                    "the carried history reproduces the certified checkpoint state");
        }
        _carryingOver = false;
        ProtocolInvariantException.Check(ExecutedSequence >= start, "a replica enters a view only from its checkpoint on");

        // The batches the new primary must propose again, cut at the first one a correct backup
        // would refuse (judged against the state it would have there: deterministic).
        _carried.Clear();
        foreach (var prepare in history)
        {
            if (prepare.Sequence <= start) continue;
            if (prepare.Sequence > ExecutedSequence)
            {
                if (!CarriedBatchValid(prepare)) break;
            }
            _carried[prepare.Sequence] = prepare.Batch;
        }

        _viewBase = start;
        _lastPreparedSequence = _viewBase;
        _lastProposedSequence = _viewBase;
        // As after a snapshot installed in the view (TryInstall).
        if (settledAbove) SettleThroughSnapshot(ExecutedSequence);
        foreach (var view in _viewChanges.Keys.Where(v => v <= View).ToList()) _viewChanges.Remove(view);
        _validViewChanges.Clear();
        foreach (var key in _viewStartVotes.Keys.Where(k => k.View < View).ToList()) _viewStartVotes.Remove(key);
        // Announce where this view starts: f+1 of these (VS) let the primary propose. The digest
        // is the certified one (this replica may already be past that position).
        var digest = start == 0 ? _genesisDigest : checkpoint.StateDigest;
        _ownCheckpointDigests[start] = Sha256Digest.From(digest);
        if (ExecutedSequence == start) TakeSnapshot(); // the view start becomes a stable checkpoint peers may fetch
        RequestUiFor(new Checkpoint(Id, View, start, digest, UniqueIdentifier.None, IsViewStart: true));
        // A primary that holds positions of its own view only from a snapshot has lost track of
        // what it proposed there (as after TryInstall): it hands over.
        if (settledAbove && IsPrimary) SuspendProposals();
        if (IsPrimary)
            foreach (var known in _known.Values.ToList()) AddPending(known.Request);
    }

    /// <summary>Checked as a correct backup checks a PREPARE (ValidatePrepare): a batch that fails
    /// was never executed anywhere. Exactly the same checks, or a committed batch could be cut.</summary>
    private bool CarriedBatchValid(Prepare prepare)
    {
        var clients = new HashSet<string>(StringComparer.Ordinal);
        foreach (var request in prepare.Batch)
            if (!clients.Add(request.ClientId) || !VerifyRequest(request)) return false;
        return true;
    }

    /// <summary>View-start CHECKPOINTs: f+1 matching ones at this view's base form VS(View).</summary>
    private void RecordViewStartVote(Checkpoint checkpoint)
    {
        if (!checkpoint.IsViewStart || checkpoint.View < View) return;
        var key = (checkpoint.View, checkpoint.Sequence, Sha256Digest.From(checkpoint.StateDigest));
        if (!_viewStartVotes.TryGetValue(key, out var votes))
        {
            if (_viewStartVotes.Count >= 4 * N) return; // bounded: correct replicas send one per view
            _viewStartVotes[key] = votes = [];
        }
        votes[checkpoint.ReplicaId] = checkpoint;
        if (votes.Count < _settings.CommitQuorum) return;
        var certificate = new CheckpointCertificate(checkpoint.Sequence, checkpoint.StateDigest,
            votes.Values.OrderBy(c => c.ReplicaId).Take(_settings.CommitQuorum).ToArray());
        _viewStartsKnown[checkpoint.View] = certificate;
        if (checkpoint.View == View && !_viewChanging && checkpoint.Sequence == _viewBase) _viewStartCertificate = certificate;
    }

    /// <summary>Timers: the request timer (suspect the primary) and the view-change timer.</summary>
    private void ViewChangeTimers()
    {
        if (_viewChanging)
        {
            if (_viewChangeDeadline is { } deadline && _now >= deadline)
            {
                // No NEW-VIEW in time: try the next view, waiting twice as long this time.
                _viewChangeTimeout *= 2;
                _viewChangeDeadline = _now + _viewChangeTimeout;
                SuspectPrimary(View + 1);
            }
            else if (_reqViewChangeTarget >= View) SuspectPrimary(_reqViewChangeTarget); // rebroadcast
            return;
        }
        // The view's leader identity is retired (its USIG was rotated after it led here): nobody
        // can order in this view any more, so move on without waiting for a request to time out.
        if (_crypto.Ui.Epochs.LeaderEpoch(Primary, View) != _crypto.Ui.Epochs.Current(Primary))
        {
            SuspectPrimary(View + 1);
            return;
        }
        if (IsPrimary) return;
        foreach (var known in _known.Values)
        {
            if (_now - known.FirstSeen < RequestTimeout) continue;
            SuspectPrimary(View + 1);
            return;
        }
    }
}
