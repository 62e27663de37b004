using MinBft.Encoding;
using MinBft.Messages;

namespace MinBft.Protocol;

/// <summary>What a replica kept durably, handed to a fresh core after a restart.</summary>
/// <param name="View">The view stored with the log (the replica may have been changing to it).</param>
/// <param name="Certificate">The latest stable checkpoint the replica stored (null: none yet).</param>
/// <param name="Snapshot">The encoded <see cref="StateSnapshot"/> at that checkpoint.</param>
/// <param name="ViewStarts">View-start certificates the replica knew when it stored the checkpoint.</param>
/// <param name="LogFirstCounter">Counter of the first entry of the durable log.</param>
/// <param name="Log">The durable log, gap-free from <paramref name="LogFirstCounter"/>: messages whose UI
/// is durable, then perhaps intents whose UI is not (<c>Ui.IsNone</c>).</param>
/// <param name="UsigCounter">The USIG's last issued counter, read after the restart.</param>
public sealed record RecoveredState(
    long View,
    CheckpointCertificate? Certificate,
    EncodedSnapshot? Snapshot,
    IReadOnlyList<CheckpointCertificate> ViewStarts,
    ulong LogFirstCounter,
    IReadOnlyList<CertifiedMessage> Log,
    ulong UsigCounter)
{
    /// <summary>The last counter whose UI the stored log holds (its certified prefix, before any
    /// re-issue): UIs after it that <see cref="WithReissued"/> put in place are written again.</summary>
    public ulong StoredUisThrough { get; init; } = LogFirstCounter - 1 + (ulong)Log.TakeWhile(m => !m.Ui.IsNone).Count();

    /// <summary>The first log entry that came from the messages the USIG kept with its last batch,
    /// not from the journal (0: none; see <see cref="WithKept"/>).</summary>
    public ulong KeptFrom { get; init; }

    /// <summary>
    /// The log with the messages the USIG kept with its last batch (<paramref name="kept"/>, decoded
    /// intents certified at counters <c>UsigCounter - kept.Count + 1 .. UsigCounter</c>) appended
    /// where the journal ends: a batch is certified while its journal write is in flight only if
    /// the USIG keeps it, so a crash between the two writes loses none of it
    /// (USIG-KEPT-MESSAGES-DESIGN.md). Unchanged when the journal reaches the USIG's counter, or
    /// when the kept batch does not start at or before the journal's end (a gap it cannot fill).
    /// The host calls this before <see cref="UisToReissue"/>: the kept messages' UIs are re-issued
    /// like those of logged intents, which also checks that each one is the message certified.
    /// </summary>
    public RecoveredState WithKept(IReadOnlyList<CertifiedMessage> kept)
    {
        var next = LogFirstCounter + (ulong)Log.Count;
        if (kept.Count == 0 || next > UsigCounter || (ulong)kept.Count > UsigCounter) return this;
        var firstKept = UsigCounter - (ulong)kept.Count + 1;
        if (firstKept > next) return this;
        return this with { Log = [.. Log, .. kept.Skip((int)(next - firstKept))], KeptFrom = next };
    }

    /// <summary>
    /// Intents the USIG certified (their counter is at most the USIG's) whose UI never became
    /// durable: the host asks the USIG to re-issue each (it does only for the very digest it
    /// certified, within its window), then hands the UIs back with <see cref="WithReissued"/>.
    /// </summary>
    public IReadOnlyList<(ulong Counter, byte[] Digest)> UisToReissue()
    {
        var reissue = new List<(ulong, byte[])>();
        for (var i = 0; i < Log.Count; i++)
        {
            var counter = LogFirstCounter + (ulong)i;
            if (counter > UsigCounter) break;
            if (Log[i].Ui.IsNone) reissue.Add((counter, MessageEncoding.CertifiedDigest(Log[i])));
        }
        return reissue;
    }

    /// <summary>The log with the re-issued UIs in place, in the order of <see cref="UisToReissue"/>;
    /// a null (the USIG refused) ends the recovered part there.</summary>
    public RecoveredState WithReissued(IReadOnlyList<UniqueIdentifier?> uis)
    {
        var log = Log.ToList();
        var next = 0;
        for (var i = 0; i < log.Count && next < uis.Count; i++)
        {
            if (!log[i].Ui.IsNone) continue;
            if (uis[next++] is not { } ui) break;
            log[i] = log[i].WithUi(ui);
        }
        return this with { Log = log };
    }
}

/// <summary>
/// Crash recovery (PROTOCOL.md section 8). A restarted replica resumes from its own durable
/// state: the stored stable checkpoint (snapshot and certificate), its view, and its sent log.
/// It does not replay history: positions up to the checkpoint are settled, and what follows
/// comes from the peers' streams (anchored at their CHECKPOINTs) or, if they have moved past
/// what it can catch up on, from a newer snapshot by state transfer.
/// Its own stream continues at the USIG's counter. Counters the USIG issued for messages that
/// never became durable (so were never sent) leave a gap that peers cannot fill; the replica's
/// first message after such a gap is a CHECKPOINT, at which peers re-anchor its stream once it
/// is W below their stable checkpoint.
/// </summary>
public sealed partial class ReplicaCore
{
    // The view stored when this replica restarted (null: it never did). In views up to it, it may
    // have led and proposed before the crash with no record of what; see TryInstall.
    private long? _viewAtRestart;

    /// <summary>True when the restart found USIG counters that never reached the sent log.</summary>
    public bool RestartedAfterCounterGap { get; private set; }

    /// <summary>After a gap: the highest position this replica's own PREPAREs and COMMITs from
    /// before the gap may have committed it to. Its log restarts after the gap, so a VIEW-CHANGE
    /// could not show those commitments; it sends none until its stable checkpoint reaches here.</summary>
    public ulong GapCommitHorizon { get; private set; }

    /// <summary><see cref="GapCommitHorizon"/> while the stable checkpoint is below it (VIEW-CHANGEs
    /// are withheld until then); 0 otherwise.</summary>
    public ulong ViewChangesWithheldUntil => StableCheckpoint.Sequence < GapCommitHorizon ? GapCommitHorizon : 0;

    /// <summary>Restore a fresh core from durable state; the first input after construction.</summary>
    public Ready Restore(RecoveredState state, TimeSpan now)
    {
        Begin(now);
        ProtocolInvariantException.Check(ExecutedSequence == 0 && _streams[Id].LastAccepted == 0 && _own.Count == 0,
            "only a fresh core is restored");
        // The durable log: a certified prefix, then intents; each of ours, at consecutive counters.
        var log = state.Log;
        if (state.LogFirstCounter < 1) throw new InvalidDataException($"replica {Id}: the stored log starts at counter 0");
        var certified = 0;
        for (var i = 0; i < log.Count; i++)
        {
            var counter = state.LogFirstCounter + (ulong)i;
            if (log[i].Sender != Id || (!log[i].Ui.IsNone && log[i].Ui.Counter != counter))
                throw new InvalidDataException($"replica {Id}: the stored log is not this replica's gap-free stream (entry {counter})");
            if (log[i].Ui.IsNone) continue;
            if (certified != i) throw new InvalidDataException($"replica {Id}: the stored log has a UI at {counter} after an intent without one");
            certified++;
        }
        var lastLogged = state.LogFirstCounter + (ulong)certified - 1;
        if (state.UsigCounter < lastLogged)
            throw new InvalidDataException($"replica {Id}: the USIG is at counter {state.UsigCounter}, behind the stored log ({lastLogged}): wrong USIG or store");
        var prefix = log.Take(certified).ToList();
        CheckRestoredEpochs(prefix);

        // A replica that never used its USIG and stored nothing starts fresh: nothing to resume.
        if (state.UsigCounter == 0 && log.Count == 0 && state.Certificate is not { Sequence: > 0 } && state.View == 0) return End();
        _viewAtRestart = state.View;

        // 1. The application and reply cache at the stored checkpoint (certified by f+1).
        // The view starts it stored with its checkpoint, and those its own log carries: the first
        // PREPARE of a view holds VS(view), and a view start learnt after the checkpoint was
        // stored is needed all the same (a VIEW-CHANGE whose log has that view's messages is
        // invalid without it: seed 130063).
        var logged = log.Select(m => Prepare.In(m)?.ViewStart).OfType<CheckpointCertificate>();
        foreach (var start in state.ViewStarts.Concat(logged))
            if (start.Checkpoints.Length > 0 && !_viewStartsKnown.ContainsKey(start.Checkpoints[0].View) && ValidCertificate(start, viewStart: start.Checkpoints[0].View))
                _viewStartsKnown[start.Checkpoints[0].View] = start;
        if (state.Certificate is { Sequence: > 0 } certificate)
        {
            if (!ValidCertificate(certificate, viewStart: null) || state.Snapshot is null
                || StateSnapshot.TryDecode(state.Snapshot) is not { } snapshot || snapshot.Sequence != certificate.Sequence)
                throw new InvalidDataException($"replica {Id}: the stored checkpoint at {certificate.Sequence} is not valid");
            // The view to resume in: the highest one proven to start at or below the checkpoint.
            var proven = _viewStartsKnown.Where(p => p.Value.Sequence <= certificate.Sequence).Select(p => ((long, CheckpointCertificate?))(p.Key, p.Value))
                .DefaultIfEmpty((0L, null)).MaxBy(p => p.Item1);
            _offeredView = proven.Item1;
            _offeredViewStart = proven.Item2;
            if (!TryInstall(snapshot, state.Snapshot, certificate))
                throw new InvalidDataException($"replica {Id}: the stored snapshot at {certificate.Sequence} does not match its certificate");
        }
        else if (_viewStartsKnown.Where(p => p.Value.Sequence == 0 && p.Key <= state.View).Select(p => p.Key).DefaultIfEmpty(0).Max() is > 0 and var genesisView)
        {
            // No checkpoint yet, but a view proven to start at position 0: resume in it (as
            // TryInstall does for a view proven at the stored checkpoint).
            AdoptView(genesisView, _viewStartsKnown[genesisView]);
        }

        // 2. Our own stream resumes after the USIG's last counter. Intents it never certified
        // were never sent, but they were decided (a backup executes once its COMMIT is durable):
        // they are certified first, under the counters they were logged with. Counters the USIG
        // certified whose UIs are lost (never re-issuable) are a gap nobody can fill: the stored
        // log starts over after them.
        _streams[Id].LastAccepted = state.UsigCounter;
        RestartedAfterCounterGap = state.UsigCounter != lastLogged;
        if (RestartedAfterCounterGap)
        {
            // A batch that f+1 committed with one of these messages (or counted one of our
            // durable COMMITs) must reach the next view through another VIEW-CHANGE: this
            // replica's would omit it (seed 60031).
            GapCommitHorizon = log.Select(m => m switch
            {
                Prepare p => p.Sequence,
                Commit c => c.Prepare.Sequence,
                _ => 0UL,
            }).DefaultIfEmpty(0UL).Max();
            _own.Restore(state.UsigCounter + 1, [], [], 0, state.UsigCounter, counterGap: true);
        }
        else _own.Restore(state.LogFirstCounter, log, log.Select(m => Sha256Digest.From(MessageEncoding.CertifiedDigest(m))).ToList(), certified,
            Math.Min(state.StoredUisThrough, lastLogged), counterGap: false, keptFrom: state.KeptFrom);

        // 3. What we already said (or decided to say) above the checkpoint is not said again under
        // new counters. After a gap, only what was certified before it counts.
        var restored = RestartedAfterCounterGap ? prefix : log;
        foreach (var message in restored)
        {
            switch (message)
            {
                case Checkpoint cp when !cp.IsViewStart: // regular ones only anchor the log (see HandleOwnCertified)
                    // An intent's counter anchors the log once it is certified (HandleOwnCertified).
                    if (!RestartedAfterCounterGap && !cp.Ui.IsNone) _ownCheckpointCounters[cp.Sequence] = cp.Ui.Counter;
                    if (cp.Sequence > ExecutedSequence)
                    {
                        _ownCheckpointDigests[cp.Sequence] = Sha256Digest.From(cp.StateDigest);
                        _restoredOwnCheckpoints.Add(cp.Sequence);
                    }
                    break;
                case Commit commit when commit.View == View && !_viewChanging && commit.Prepare.Sequence > ExecutedSequence:
                    _restoredOwnCommits.Add(commit.Prepare.PrepareUi.Counter);
                    break;
                case Prepare prepare when !prepare.Ui.IsNone:
                    RestoreOwnPrepare(prepare); // an intent is taken back once certified
                    break;
            }
        }

        // 4. Announce ourselves and catch up.
        if (!_viewChanging && IsPrimary) SuspendProposals(); // what it proposed before is not known here
        if (RestartedAfterCounterGap)
        {
            var digest = StateDigest();
            _ownCheckpointDigests[ExecutedSequence] = Sha256Digest.From(digest);
            RequestUiFor(new Checkpoint(Id, View, ExecutedSequence, digest, UniqueIdentifier.None));
        }
        if (state.View > View)
        {
            StartViewChange(state.View); // we had joined a view change before the crash
            // ...or completed it as the new primary, with a view start nothing stored proves (at
            // position 0 there is no checkpoint to keep). A second NEW-VIEW for one view would
            // give it a second chain of PREPAREs (seed 130051): hand the view over instead.
            if (IsPrimary && restored.Any(m => m is NewView newView && newView.View == View))
            {
                _newViewSent = true;
                SuspectPrimary(View + 1);
            }
        }
        NoteBehind(ExecutedSequence + 1);
        for (var peer = 0; peer < N; peer++)
            if (peer != Id) AskRetransmission(peer, force: true, relays: true);
        return End();
    }

    /// <summary>Our own PREPARE from the stored log: peers commit to it and will send those COMMITs
    /// again, so the batch is ours to execute (we never receive our own messages).</summary>
    private void RestoreOwnPrepare(Prepare prepare)
    {
        if (prepare.View != View || _viewChanging || prepare.PrimaryId != Id) return;
        if (prepare.Sequence <= ExecutedSequence)
        {
            if (prepare.Sequence > _viewBase) _lastPrepareCounter = Math.Max(_lastPrepareCounter, prepare.PrepareUi.Counter);
        }
        else if (prepare.Sequence == _lastPreparedSequence + 1 && prepare.PrepareUi.Counter > _lastPrepareCounter)
        {
            _lastProposedSequence = prepare.Sequence;
            AcceptPrepare(prepare, MessageEncoding.CertifiedDigest(prepare));
        }
    }

    /// <summary>
    /// The stored log against the manifest's USIG identities (USIG-ROTATION-DESIGN.md, rule 4): our
    /// own messages must be of our current epoch (a rotated replica restarts empty), and every
    /// PREPARE we kept must be under the identity that leads its view. One that is not means the
    /// rotation's first view was chosen too low: that view had PREPAREs of the old identity.
    /// </summary>
    private void CheckRestoredEpochs(IEnumerable<CertifiedMessage> prefix)
    {
        var epochs = _crypto.Ui.Epochs;
        foreach (var message in prefix)
        {
            if (message.Ui.Epoch != epochs.Current(Id))
                throw new InvalidDataException($"replica {Id}: the stored log is of USIG epoch {message.Ui.Epoch}, the manifest's current one is {epochs.Current(Id)}: " +
                    "a replica whose USIG was rotated restarts empty (remove its journal and checkpoint store)");
            var prepare = Prepare.In(message);
            if (prepare is not null && !UnderLeaderIdentity(prepare))
                throw new InvalidDataException($"replica {Id}: replica {prepare.PrimaryId} led view {prepare.View} under USIG epoch {prepare.PrepareUi.Epoch}, " +
                    $"which the manifest does not allow there: rotate again with a first view above every view the cluster used (status shows them)");
        }
    }
}
