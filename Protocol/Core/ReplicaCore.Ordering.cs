using MinBft.Encoding;
using MinBft.Messages;

namespace MinBft.Protocol;

/// <summary>
/// Normal-case ordering (PROTOCOL.md section 4): the primary's PREPARE, the backups' COMMITs
/// (each carrying its PREPARE), the f+1 commit rule, and this replica's own USIG stream.
/// </summary>
public sealed partial class ReplicaCore
{
    // Accepted PREPAREs of the current view, by the primary's counter.
    private readonly SortedDictionary<ulong, PreparedBatch> _prepares = [];
    // Counter of the last PREPARE accepted in this view (0: none yet).
    private ulong _lastPrepareCounter;
    // Position (history sequence number) of the last PREPARE accepted in this view; starts at
    // the view's base (0 in view 0).
    private ulong _lastPreparedSequence;
    // Per replica: counter of the last PREPARE it committed to in this view (consecutive check).
    private readonly ulong[] _lastCommitted;
    // ... and the position of that PREPARE.
    private readonly ulong[] _lastCommittedPosition;
    // Per client: highest seq ordered in this view and not executed yet (executed seqs are in the
    // client table). A local filter only, for the primary's batches and a backup's forwarding: a
    // PREPARE is not judged by it, since the client table can evict what a lagging backup still
    // holds (CLIENT-SESSIONS-DESIGN.md); execution decides exactly-once. Bounded by the requests
    // in flight.
    private readonly Dictionary<string, ulong> _highestOrderedSeq = new(StringComparer.Ordinal);

    /// <summary>Messages of this replica's own stream kept in memory (certified ones are kept for
    /// retransmission and VIEW-CHANGE; the rest wait to become durable and certified).</summary>
    public int SentLogCount => _own.Count;

    /// <summary>Messages created and not certified yet (waiting for the durable log or the USIG).</summary>
    public int AwaitingUiCount => _own.Uncertified;

    // Set after a restart or state transfer left this primary unsure of what it proposed.
    private bool _proposalsSuspended;
    // PREPARE counters this backup already sent a COMMIT for before a restart (in its durable log):
    // committing again under a new counter would break its consecutive-commit chain at peers.
    private readonly HashSet<ulong> _restoredOwnCommits = [];

    private ulong HighestOrderedSeq(string clientId) => Math.Max(_highestOrderedSeq.GetValueOrDefault(clientId), _clients.LastExecutedSeq(clientId));

    private void NoteOrdered(Request request)
    {
        if (request.Seq > HighestOrderedSeq(request.ClientId)) _highestOrderedSeq[request.ClientId] = request.Seq;
    }

    // ----- PREPARE -----

    private Outcome ProcessPrepare(Prepare prepare, byte[] digest)
    {
        if (prepare.View < View) return Outcome.Accepted; // authentic but stale: part of the stream, no effect
        if (prepare.View > View || _viewChanging) return Outcome.Blocked;  // wait until this replica is in that view
        // In the stream, so under the primary's current identity; it must be the one that leads this view.
        if (!UnderLeaderIdentity(prepare))
            return RejectOutcome(prepare.PrimaryId, RejectReason.EpochNotForView, $"PREPARE of view {prepare.View} under USIG epoch {prepare.PrepareUi.Epoch}");
        if (SettledByInstall(prepare))
        {
            // At or below an installed snapshot: nothing to execute, only the chain to rebuild.
            if (prepare.PrimaryId != Primary) return RejectOutcome(prepare.PrimaryId, RejectReason.NotPrimary, "settled PREPARE not from the primary");
            _lastPrepareCounter = Math.Max(_lastPrepareCounter, prepare.PrepareUi.Counter);
            return Outcome.Accepted;
        }
        if (ValidatePrepare(prepare) is { } invalid) return RejectOutcome(prepare.PrimaryId, invalid.Reason, invalid.Detail);
        if (BeyondWatermark(prepare)) return Outcome.Blocked;
        AcceptPrepare(prepare, digest);
        return Outcome.Accepted;
    }

    /// <summary>Checks a PREPARE of the current view without changing any state.</summary>
    private (RejectReason Reason, string Detail)? ValidatePrepare(Prepare prepare)
    {
        if (prepare.PrimaryId != PrimaryOf(prepare.View))
            return (RejectReason.NotPrimary, $"replica {prepare.PrimaryId} is not primary of view {prepare.View}");
        // Positions are consecutive in the primary's stream: a PREPARE for a taken or skipped
        // position (an equivocating primary re-using one) is invalid.
        if (prepare.Sequence != _lastPreparedSequence + 1)
            return (RejectReason.InvalidBatch, $"position {prepare.Sequence}, expected {_lastPreparedSequence + 1}");
        if (View > 0 && prepare.Sequence == _viewBase + 1)
        {
            // The first PREPARE of a view proves where the view starts (VS): f+1 view-start
            // CHECKPOINTs at this view's base, with the state this replica has there.
            if (prepare.ViewStart is not { } start || start.Sequence != _viewBase
                || !_ownCheckpointDigests.TryGetValue(_viewBase, out var own) || own != Sha256Digest.From(start.StateDigest)
                || !ValidCertificate(start, viewStart: View))
                return (RejectReason.InvalidBatch, "first PREPARE of the view without a valid view-start certificate");
        }
        else if (prepare.ViewStart is not null)
            return (RejectReason.InvalidBatch, "view-start certificate on a PREPARE that does not start a view");
        if (_carried.TryGetValue(prepare.Sequence, out var carried))
        {
            // A carried position: exactly the batch the NEW-VIEW carries there (validated then).
            if (carried.Length != prepare.Batch.Length)
                return (RejectReason.InvalidBatch, $"position {prepare.Sequence} must carry the NEW-VIEW's batch");
            for (var i = 0; i < carried.Length; i++)
                if (!MessageEncoding.RequestDigest(carried[i]).AsSpan().SequenceEqual(MessageEncoding.RequestDigest(prepare.Batch[i])))
                    return (RejectReason.InvalidBatch, $"position {prepare.Sequence} must carry the NEW-VIEW's batch");
            return null;
        }
        var clients = new HashSet<string>(StringComparer.Ordinal);
        foreach (var request in prepare.Batch)
        {
            if (!clients.Add(request.ClientId))
                return (RejectReason.InvalidBatch, "two requests of one client in a batch");
            if (!VerifyRequest(request))
                return (RejectReason.InvalidBatch, "request signature");
        }
        return null;
    }

    /// <summary>A PREPARE of this view for a position an installed snapshot already covers.</summary>
    private bool SettledByInstall(Prepare prepare) =>
        prepare.View == View && !_viewChanging && prepare.Sequence > _viewBase && prepare.Sequence <= _installedThrough;

    /// <summary>A backup that executed less than the primary waits rather than run ahead.</summary>
    private bool BeyondWatermark(Prepare prepare) => prepare.Sequence > ExecutedSequence + (ulong)_settings.Watermark;

    private void AcceptPrepare(Prepare prepare, byte[] digest)
    {
        var counter = prepare.PrepareUi.Counter;
        ProtocolInvariantException.Check(counter > _lastPrepareCounter, "PREPAREs are accepted in counter order");
        ProtocolInvariantException.Check(prepare.Sequence == _lastPreparedSequence + 1, "PREPAREs take consecutive positions");
        ProtocolInvariantException.Check(prepare.View == View, "only PREPAREs of the current view are recorded");
        var batch = new PreparedBatch(prepare, Sha256Digest.From(digest), _lastPrepareCounter);
        _prepares.Add(counter, batch);
        if (prepare.Sequence <= ExecutedSequence)
        {
            // A carried batch this replica already executed: it commits to it again in this view
            // (others may need the quorum) but does not execute it twice. Its requests are settled
            // (the client table answers for them), so they are not noted as ordered.
            batch.Executed = true;
        }
        else
        {
            _executionQueue.Enqueue(batch);
            foreach (var request in prepare.Batch) NoteOrdered(request);
        }
        _lastPrepareCounter = counter;
        _lastPreparedSequence = prepare.Sequence;
        if (prepare.ViewStart is { } viewStart) _viewStartsKnown[prepare.View] = viewStart;
        // The PREPARE is the primary's own commitment.
        RecordCommitment(batch, prepare.PrimaryId);
        if (!IsPrimary)
        {
            if (_restoredOwnCommits.Remove(counter)) RecordCommitment(batch, Id); // sent before a restart
            else
            {
                var commit = new Commit(View, Id, prepare, UniqueIdentifier.None);
                RequestUiFor(commit, MessageEncoding.CommitDigest(commit, digest));
            }
        }
        TryExecute();
    }

    // ----- COMMIT -----

    private Outcome ProcessCommit(Commit commit, byte[] prepareDigest)
    {
        var sender = commit.ReplicaId;
        if (commit.View < View) return Outcome.Accepted;
        if (commit.View > View || _viewChanging) return Outcome.Blocked;
        if (sender == PrimaryOf(commit.View))
            return RejectOutcome(sender, RejectReason.CommitFromPrimary, "the primary's PREPARE is its commit");
        var prepare = commit.Prepare;
        if (prepare.View != commit.View)
            return RejectOutcome(sender, RejectReason.Inconsistent, "COMMIT and PREPARE views differ");
        if (prepare.PrimaryId != PrimaryOf(prepare.View))
            return RejectOutcome(sender, RejectReason.NotPrimary, "embedded PREPARE not from the primary");

        var primary = prepare.PrimaryId;
        if (!UnderLeaderIdentity(prepare))
            return RejectOutcome(sender, RejectReason.EpochNotForView, $"embedded PREPARE of view {prepare.View} under USIG epoch {prepare.PrepareUi.Epoch}");
        // This view's leader identity is retired (its USIG was rotated): its PREPAREs are another
        // stream's and can never enter the primary's current one, so this view orders nothing
        // more. The COMMIT is stale, as if of an older view: counted nowhere, and its sender's
        // stream moves on (blocking it would keep this replica from the NEW-VIEW behind it: seed
        // 140000). What it committed is history its VIEW-CHANGE carries (USIG-ROTATION-DESIGN.md).
        if (prepare.PrepareUi.Epoch != _crypto.Ui.Epochs.Current(primary)) return Outcome.Accepted;
        var primaryStream = _streams[primary];
        var counter = prepare.PrepareUi.Counter;
        var digest = prepareDigest;

        if (counter != 0 && counter <= primaryStream.LastAccepted)
        {
            // The PREPARE is already known here: the embedded copy must be that very one.
            if (!_prepares.TryGetValue(counter, out var known) && prepare.Sequence <= StableCheckpoint.Sequence)
            {
                // A late COMMIT for a batch below the stable checkpoint, forgotten here: settled
                // history. Keep the sender's commit chain moving; nothing else can change. A
                // correct replica commits to ever higher positions within a view: one that goes
                // back would rewind its chain and could then commit twice to a later PREPARE
                // (seed 50097: a Byzantine replica's COMMITs p3, p2, p3).
                if (prepare.Sequence <= _lastCommittedPosition[sender])
                    return RejectOutcome(sender, RejectReason.NonConsecutiveCommit, $"commit to position {prepare.Sequence} after {_lastCommittedPosition[sender]}");
                NoteCommitted(sender, counter, prepare.Sequence);
                return Outcome.Accepted;
            }
            if (known is null && primary == Id && RelearnOwnPrepare(counter, digest)) known = _prepares[counter];
            if (known is null && primary != Id && counter > _lastPrepareCounter && prepare.Sequence > ExecutedSequence)
                return AcceptSkippedPrepare(sender, prepare, digest);
            if (known is null)
                return RejectOutcome(sender, RejectReason.ConflictingPrepare, $"no PREPARE {counter} in view {View}");
            if (known.Digest != Sha256Digest.From(digest))
                return RejectOutcome(sender, RejectReason.ConflictingPrepare, $"PREPARE {counter} differs");
            if (known.Committers.Contains(sender))
                return RejectOutcome(sender, RejectReason.NonConsecutiveCommit, $"a second commit to {counter}");
            if (!ChainsOn(sender, known.PreviousPrepareCounter, known.Prepare.Sequence))
                return RejectOutcome(sender, RejectReason.NonConsecutiveCommit, $"commit to {counter} after {_lastCommitted[sender]}");
            RecordCommitment(known, sender);
            TryExecute();
            return Outcome.Accepted;
        }

        // The PREPARE is new here: its own UI is checked under the primary's key (the carrier
        // may be Byzantine), and it is processed before its carrier.
        if (primary == Id || !_crypto.Ui.Verify(primary, prepare.PrepareUi, digest))
            return RejectOutcome(sender, RejectReason.InvalidUi, $"embedded PREPARE {counter}");
        if (counter > primaryStream.NextExpected)
        {
            // A gap in the primary's stream: keep the PREPARE, ask for what is missing, and let
            // the COMMIT wait for it.
            BufferMessage(primary, prepare, MessageDigests.OfPrepare(digest));
            AskRetransmission(primary, force: false);
            return Outcome.Blocked;
        }
        if (SettledByInstall(prepare))
        {
            // Settled by an installed snapshot: the PREPARE takes its place in the primary's
            // stream and the sender's commit chain moves on; nothing executes.
            _lastPrepareCounter = Math.Max(_lastPrepareCounter, counter);
            Advance(primary, prepare);
            NoteCommitted(sender, counter, prepare.Sequence);
            return Outcome.Accepted;
        }
        return AcceptEmbeddedPrepare(sender, prepare, digest, advanceStream: true);
    }

    /// <summary>
    /// A PREPARE of this view that the primary's stream went past without recording it: it waited
    /// beyond the watermark while the stream was re-anchored at a later CHECKPOINT of the primary
    /// (state transfer), so no later PREPARE can follow it and the replica would stall here for
    /// good (seed 205579). Its UI makes it the primary's only message under that counter, so it
    /// is taken from the COMMIT with every check of an in-order PREPARE; the stream stays where
    /// it is.
    /// </summary>
    private Outcome AcceptSkippedPrepare(int sender, Prepare prepare, byte[] digest)
    {
        if (!_crypto.Ui.Verify(prepare.PrimaryId, prepare.PrepareUi, digest))
            return RejectOutcome(sender, RejectReason.InvalidUi, $"embedded PREPARE {prepare.PrepareUi.Counter}");
        return AcceptEmbeddedPrepare(sender, prepare, digest, advanceStream: false);
    }

    /// <summary>
    /// A PREPARE first seen inside a COMMIT, its UI already checked under the primary's key: it
    /// passes every check of a PREPARE received directly (position, view start, the watermark),
    /// and the carrier's commit chain must lead to it, before it is accepted and counts the
    /// carrier's commitment. <paramref name="advanceStream"/> is false only for a PREPARE the
    /// primary's stream already went past (<see cref="AcceptSkippedPrepare"/>).
    /// </summary>
    private Outcome AcceptEmbeddedPrepare(int sender, Prepare prepare, byte[] digest, bool advanceStream)
    {
        var counter = prepare.PrepareUi.Counter;
        if (ValidatePrepare(prepare) is { } invalid)
            return RejectOutcome(sender, invalid.Reason, "embedded: " + invalid.Detail);
        if (BeyondWatermark(prepare)) return Outcome.Blocked;
        if (!ChainsOn(sender, _lastPrepareCounter, prepare.Sequence))
            return RejectOutcome(sender, RejectReason.NonConsecutiveCommit, $"commit to {counter} after {_lastCommitted[sender]}");
        AcceptPrepare(prepare, digest);
        if (advanceStream) Advance(prepare.PrimaryId, prepare);
        RecordCommitment(_prepares[counter], sender);
        TryExecute();
        return Outcome.Accepted;
    }

    /// <summary>
    /// Our COMMIT counts toward its batch's quorum once it is durable, before the USIG certifies
    /// it: a restart certifies every durable intent under its logged counter (OwnLog.Restore), and
    /// a VIEW-CHANGE waits until its log is certified, so the COMMIT reaches every view change this
    /// replica joins. Executing here then costs one synced write, not two.
    /// </summary>
    private void OnOwnIntentsDurable(IReadOnlyList<CertifiedMessage> intents)
    {
        foreach (var intent in intents)
            if (intent is Commit commit) RecordOwnCommitment(commit);
        TryExecute();
    }

    private void RecordOwnCommitment(Commit commit)
    {
        if (commit.View != View || !_prepares.TryGetValue(commit.Prepare.PrepareUi.Counter, out var batch) || batch.Committers.Contains(Id)) return;
        RecordCommitment(batch, Id);
    }

    private void RecordCommitment(PreparedBatch batch, int replica)
    {
        ProtocolInvariantException.Check(batch.Committers.Add(replica), "a replica commits to a PREPARE once");
        NoteCommitted(replica, batch.Counter, batch.Prepare.Sequence);
    }

    private void NoteCommitted(int replica, ulong counter, ulong position)
    {
        _lastCommitted[replica] = counter;
        _lastCommittedPosition[replica] = position;
    }

    /// <summary>
    /// The consecutive-commit rule: a backup's COMMIT must follow the PREPARE it committed to
    /// last. One exception: right above settled history (the position below at or below the
    /// stable checkpoint), a commit to a higher position than the sender's last is accepted
    /// whatever that last one was, where a commitment changes nothing. Two cases need it: a
    /// replica that installed a snapshot never committed to the batches it skipped; and a replica
    /// whose snapshot settled the PREPARE below does not know that PREPARE's counter (seed 153370:
    /// a restarted primary installed 66 and took back its own PREPARE at 67 from its log, with no
    /// counter for the one at 66, and refused every backup's COMMIT to it, for ever).
    /// </summary>
    private bool ChainsOn(int sender, ulong previousPrepareCounter, ulong position) =>
        previousPrepareCounter == _lastCommitted[sender]
        || (position > _lastCommittedPosition[sender] && position - 1 <= StableCheckpoint.Sequence);

    // ----- this replica's own USIG stream -----

    /// <summary>A new message of ours: it takes the next counter now (an intent), and is sent once
    /// it is durable and certified (see <see cref="OwnLog"/>).</summary>
    private void RequestUiFor(CertifiedMessage message) => RequestUiFor(message, MessageEncoding.CertifiedDigest(message));

    private void RequestUiFor(CertifiedMessage message, byte[] digest) => _own.Append(message, Sha256Digest.From(digest));

    /// <summary>Our message <paramref name="certified"/>, with the digest its intent was certified under.</summary>
    private void HandleOwnCertified(CertifiedMessage certified, Sha256Digest digest)
    {
        var own = _streams[Id];
        ProtocolInvariantException.Check(certified.Ui.Counter == own.LastAccepted + 1,
            $"own USIG counters are sequential (expected {own.LastAccepted + 1}, got {certified.Ui.Counter})");
        own.LastAccepted = certified.Ui.Counter;

        // Persist before send holds by construction: its intent is durable (the USIG certifies
        // only intents durable in the journal or kept with their counters) and its UI can be
        // re-issued until it is durable too.
        Emit(new Send(null, certified));

        if (certified.Ui.Counter <= _own.RestoredIntentsThrough)
        {
            // Logged before a restart, certified only now: Restore took what it says into account,
            // as for the certified log; a PREPARE and a CHECKPOINT needed their counter for that.
            switch (certified)
            {
                case Prepare prepare:
                    RestoreOwnPrepare(prepare);
                    break;
                case Checkpoint { IsViewStart: false } checkpoint:
                    _ownCheckpointCounters[checkpoint.Sequence] = checkpoint.Ui.Counter;
                    break;
            }
            return;
        }

        switch (certified)
        {
            case Prepare prepare when prepare.View == View:
                // Our own PREPARE: its requests were checked when they entered the batch. A
                // snapshot installed while its UI was pending may already cover its position:
                // then, as for a peer's settled PREPARE, only the counter chain moves on.
                if (SettledByInstall(prepare)) _lastPrepareCounter = Math.Max(_lastPrepareCounter, prepare.PrepareUi.Counter);
                else AcceptPrepare(prepare, digest.ToArray());
                break;
            case Commit commit:
                // Counted once durable (OnOwnIntentsDurable; a kept one is durable only now),
                // unless the PREPARE came back since.
                RecordOwnCommitment(commit);
                TryExecute();
                break;
            case Checkpoint checkpoint:
                // Only regular CHECKPOINTs anchor the log: one is sent right after executing its
                // position, so what came before refers to positions at most W above it. A
                // view-start CHECKPOINT names the view's base, which may lie below what the
                // replica had executed and committed to when it sent it.
                if (!checkpoint.IsViewStart) _ownCheckpointCounters[checkpoint.Sequence] = checkpoint.Ui.Counter;
                ProcessCheckpoint(checkpoint);
                break;
            case ViewChange viewChange:
                ProcessViewChange(viewChange, own: true);
                break;
            case NewView newView:
                ProcessNewView(newView, own: true);
                break;
        }
    }

    /// <summary>This replica's sent messages with counters from <paramref name="from"/> on.</summary>
    private IEnumerable<CertifiedMessage> SentFrom(ulong from, int max) => _own.CertifiedFrom(from, max);

    /// <summary>
    /// A primary that restarted and rejoined its view by state transfer no longer holds the PREPAREs
    /// it sent above the snapshot, and its peers' COMMITs to them would be refused forever (seed
    /// 130076). The COMMIT names one by counter: if that counter is, in our own sent log, a PREPARE
    /// with the committed digest, next in the view's chain, it is ours, and it is taken back.
    /// </summary>
    private bool RelearnOwnPrepare(ulong counter, ReadOnlySpan<byte> digest)
    {
        if (_viewChanging || counter <= _lastPrepareCounter) return false;
        if (_own.CertifiedFrom(counter, 1).FirstOrDefault() is not Prepare logged || logged.Ui.Counter != counter) return false;
        if (logged.View != View || logged.Sequence != _lastPreparedSequence + 1) return false;
        var loggedDigest = MessageEncoding.CertifiedDigest(logged);
        if (!loggedDigest.AsSpan().SequenceEqual(digest)) return false;
        AcceptPrepare(logged, loggedDigest);
        _lastProposedSequence = Math.Max(_lastProposedSequence, logged.Sequence);
        return true;
    }
}
