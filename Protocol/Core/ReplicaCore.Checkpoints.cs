using System.Security.Cryptography;
using MinBft.Encoding;
using MinBft.Messages;

namespace MinBft.Protocol;

/// <summary>
/// Checkpoints (PROTOCOL.md section 6). Every K executed batches a replica sends CHECKPOINT with
/// the digest of its application state and reply cache; f+1 matching ones (one correct replica
/// among them) form a stable checkpoint certificate, below which the replica forgets its log.
/// </summary>
public sealed partial class ReplicaCore
{
    // Votes per (position, digest): the CHECKPOINT of each replica that sent one.
    private readonly SortedDictionary<ulong, Dictionary<Sha256Digest, Dictionary<int, Checkpoint>>> _checkpointVotes = [];
    // This replica's own state digests at the positions it checkpointed.
    private readonly SortedDictionary<ulong, Sha256Digest> _ownCheckpointDigests = [];
    // This replica's own CHECKPOINT messages by position, with their USIG counters (log anchors).
    private readonly SortedDictionary<ulong, ulong> _ownCheckpointCounters = [];

    /// <summary>The latest stable checkpoint certificate (genesis until the first).</summary>
    public CheckpointCertificate StableCheckpoint { get; private set; } = CheckpointCertificate.Genesis;

    /// <summary>Peers' messages kept for relaying, over all peers.</summary>
    public int RelayLogCount => _streams.Sum(s => s.Accepted.Count);

    /// <summary>Accepted PREPAREs still held (GC'd below the stable checkpoint).</summary>
    public int PreparedBatchCount => _prepares.Count;

    /// <summary>Digest of everything a checkpoint covers: the application and the client table
    /// (what exactly-once and future evictions need), independent of which replica computes it.</summary>
    public byte[] StateDigest() =>
        DigestOf(_app.Digest(), _historyDigest, _clients.ExpiryHorizon,
            _clients.Records.Select(p => new SnapshotClient(p.Key, p.Value.LastExecutedSeq, p.Value.LastReply.View, p.Value.LastReply.RequestDigest, p.Value.LastReply.Result, p.Value.LastActive)).ToList());

    /// <summary>The checkpoint digest of an application digest, a history chain, the expiry horizon
    /// and a client table sorted by client id. Covering the history makes equal checkpoints mean
    /// equal histories.</summary>
    private static byte[] DigestOf(byte[] appDigest, byte[] history, ulong expiryHorizon, IReadOnlyList<SnapshotClient> clients)
    {
        var w = new CanonicalWriter(104 + clients.Count * 128).Tag(MessageTag.Checkpoint).Raw(appDigest).Raw(history).U64(expiryHorizon).I32(clients.Count);
        foreach (var c in clients) w.Text(c.ClientId).U64(c.Seq).U64(c.LastActive).Raw(c.RequestDigest).Raw(SHA256.HashData(c.Result));
        return SHA256.HashData(w.WrittenSpan);
    }

    /// <summary>After each execution: a checkpoint at every K-th position.</summary>
    private void MaybeCheckpoint()
    {
        var stableAlready = StableCheckpoint.Sequence == ExecutedSequence && !_ownSnapshots.ContainsKey(ExecutedSequence);
        // Not while executing a NEW-VIEW's carried history: a replica labels no position below
        // its view's start with that view (its view-start CHECKPOINT follows the carry-over).
        if (!_carryingOver && ExecutedSequence % (ulong)_settings.CheckpointInterval == 0) SendCheckpoint();
        if (stableAlready) StoreStableReachedLate();
    }

    /// <summary>
    /// f+1 peers certified this position before this replica executed it: their CHECKPOINTs count
    /// while the COMMITs ahead of them are still missing here, and a NEW-VIEW's carried history
    /// executes without CHECKPOINTs. MakeStable then had no snapshot of ours to store and did not
    /// check our state against the certificate; both happen now, or the log would stay untrimmed
    /// and a restart would resume from an older checkpoint until the next one became stable.
    /// </summary>
    private void StoreStableReachedLate()
    {
        var own = _ownCheckpointDigests.TryGetValue(ExecutedSequence, out var known) ? known : Sha256Digest.From(StateDigest());
        CheckStateMatchesCertificate(ExecutedSequence, own, StableCheckpoint.StateDigest);
        if (!_ownSnapshots.ContainsKey(ExecutedSequence)) TakeSnapshot();
        AnnounceStable();
    }

    /// <summary>A correct replica's state at a certified position is the one f+1 certified.</summary>
    private static void CheckStateMatchesCertificate(ulong sequence, Sha256Digest own, byte[] certified) =>
        ProtocolInvariantException.Check(own == Sha256Digest.From(certified),
            $"this replica's state at position {sequence} matches the f+1 that certified it");

    private void SendCheckpoint()
    {
        // After a restart, a CHECKPOINT this replica already sent (it is in its durable log)
        // is not sent again under a new counter. Its snapshot is taken all the same: the position
        // may become stable, and then that snapshot is what is stored and served.
        if (_restoredOwnCheckpoints.Remove(ExecutedSequence))
        {
            TakeSnapshot();
            return;
        }
        var digest = StateDigest();
        _ownCheckpointDigests[ExecutedSequence] = Sha256Digest.From(digest);
        TakeSnapshot();
        RequestUiFor(new Checkpoint(Id, View, ExecutedSequence, digest, UniqueIdentifier.None));
    }

    /// <summary>A CHECKPOINT, ours once certified or a peer's in stream order.</summary>
    private Outcome ProcessCheckpoint(Checkpoint checkpoint)
    {
        if (checkpoint.ReplicaId != Id && !checkpoint.IsViewStart) NoteRequesterProgress(checkpoint.ReplicaId, checkpoint.Sequence);
        CountCheckpointVote(checkpoint);
        return Outcome.Accepted;
    }

    /// <summary>
    /// A CHECKPOINT's vote toward a stable certificate. Also counted for a verified CHECKPOINT
    /// still waiting behind a gap in its sender's stream: a vote depends on nothing before it in
    /// the stream, and the gap may be one the sender already garbage-collected, which only a
    /// newer stable checkpoint lets this replica skip (re-anchoring, TryReanchor).
    /// </summary>
    private void CountCheckpointVote(Checkpoint checkpoint)
    {
        RecordViewStartVote(checkpoint);
        // Positions at or below the stable checkpoint are settled: nothing to learn. Votes far
        // beyond what this replica executed are not kept (a faulty replica could otherwise fill
        // memory with votes for positions that never become stable); the message still counts
        // as accepted in its sender's stream.
        if (checkpoint.Sequence <= StableCheckpoint.Sequence) return;
        if (checkpoint.Sequence > ExecutedSequence + 16 * (ulong)(_settings.CheckpointInterval + _settings.Watermark)) return;
        var digest = Sha256Digest.From(checkpoint.StateDigest);
        if (!_checkpointVotes.TryGetValue(checkpoint.Sequence, out var byDigest))
            _checkpointVotes[checkpoint.Sequence] = byDigest = [];
        if (!byDigest.TryGetValue(digest, out var votes)) byDigest[digest] = votes = [];
        votes[checkpoint.ReplicaId] = checkpoint;
        if (votes.Count >= _settings.CommitQuorum) MakeStable(checkpoint.Sequence, checkpoint.StateDigest, votes.Values);
    }

    private void MakeStable(ulong sequence, byte[] digest, IEnumerable<Checkpoint> votes)
    {
        if (_ownCheckpointDigests.TryGetValue(sequence, out var own)) CheckStateMatchesCertificate(sequence, own, digest);
        var proof = votes.OrderBy(c => c.ReplicaId).Take(_settings.CommitQuorum).ToArray();
        StableCheckpoint = new CheckpointCertificate(sequence, digest, proof);
        // Certified beyond what this replica executed: it is behind (state transfer if stuck).
        if (sequence > ExecutedSequence) NoteBehind(sequence);
        CollectGarbage();
        AnnounceStable();
    }

    /// <summary>Forget what the stable checkpoint makes unnecessary; memory stays bounded.</summary>
    private void CollectGarbage()
    {
        var stable = StableCheckpoint.Sequence;
        foreach (var position in _checkpointVotes.Keys.Where(p => p <= stable).ToList()) _checkpointVotes.Remove(position);
        foreach (var position in _ownCheckpointDigests.Keys.Where(p => p < stable).ToList()) _ownCheckpointDigests.Remove(position);
        foreach (var position in _ownSnapshots.Keys.Where(p => p < stable).ToList()) _ownSnapshots.Remove(position);
        foreach (var position in _restoredOwnCheckpoints.Where(p => p <= stable).ToList()) _restoredOwnCheckpoints.Remove(position);
        foreach (var (counter, batch) in _prepares.Where(p => p.Value.Executed && p.Value.Prepare.Sequence <= stable).ToList())
            _prepares.Remove(counter);

        // Relay logs: like our own, from each peer's CHECKPOINT at least W below the stable one,
        // or below the position a peer fetching state from us replays from (its pin).
        var retained = RetainedFrom();
        foreach (var stream in _streams)
        {
            if (retained < (ulong)_settings.Watermark) break;
            var peerAnchor = stream.CheckpointCounters.LastOrDefault(p => p.Key <= retained - (ulong)_settings.Watermark);
            if (peerAnchor.Value == 0 || stream.Accepted.Count == 0) continue;
            var cut = stream.Accepted.FindIndex(m => m.Ui.Counter >= peerAnchor.Value);
            stream.Accepted.RemoveRange(0, cut < 0 ? stream.Accepted.Count : cut);
            foreach (var position in stream.CheckpointCounters.Keys.Where(p => p < peerAnchor.Key).ToList()) stream.CheckpointCounters.Remove(position);
        }

        // The sent log must still hold everything a VIEW-CHANGE needs: it starts at one of our
        // own CHECKPOINTs at a position <= stable - W (messages before it refer to positions
        // at most W above it, so at most `stable`). A VIEW-CHANGE logs from there, however much
        // more memory keeps for a peer's state transfer.
        if (stable < (ulong)_settings.Watermark) return;
        var anchor = _ownCheckpointCounters.LastOrDefault(p => p.Key <= stable - (ulong)_settings.Watermark);
        if (anchor.Value == 0) return;
        var anchorMoved = anchor.Value > _viewChangeLogFrom;
        if (anchorMoved) _viewChangeLogFrom = anchor.Value;
        var kept = anchor;
        if (retained < stable)
            kept = retained >= (ulong)_settings.Watermark ? _ownCheckpointCounters.LastOrDefault(p => p.Key <= retained - (ulong)_settings.Watermark) : default;
        ProtocolInvariantException.Check(kept.Value <= anchor.Value, "memory keeps at least what a VIEW-CHANGE logs");
        if (kept.Value > _own.First) _own.KeepInMemoryFrom(kept.Value);
        // The durable log keeps what a restart from the stored checkpoint needs: it is cut at the
        // same anchor once the stored checkpoint covers this stable one (TrimDurableLog).
        if (anchorMoved)
        {
            _durableLogAnchors[stable] = anchor.Value;
            TrimDurableLog();
        }
        foreach (var position in _ownCheckpointCounters.Keys.Where(p => p < kept.Key).ToList()) _ownCheckpointCounters.Remove(position);
        var logged = LoggedViews(_own.CertifiedMessages());
        foreach (var view in _viewStartsKnown.Keys.Where(v => v != View && !logged.Contains(v)).ToList()) _viewStartsKnown.Remove(view);
    }

    // Where a VIEW-CHANGE's log starts: our CHECKPOINT at or below stable - W (see CollectGarbage).
    private ulong _viewChangeLogFrom;

    /// <summary>Where the durable log may start, by the stable checkpoint that made it so.</summary>
    private readonly SortedDictionary<ulong, ulong> _durableLogAnchors = [];

    private void TrimDurableLog()
    {
        ulong keepFrom = 0;
        foreach (var (stable, counter) in _durableLogAnchors.Where(p => p.Key <= StoredCheckpoint).ToList())
        {
            keepFrom = Math.Max(keepFrom, counter);
            _durableLogAnchors.Remove(stable);
        }
        if (keepFrom > 0) _own.KeepDurableFrom(keepFrom);
    }

    /// <summary>Position of the stable checkpoint the host has stored durably (0: none).</summary>
    public ulong StoredCheckpoint { get; private set; }

    /// <summary>Where this replica's VIEW-CHANGE log would start (its first kept message).</summary>
    public ulong SentLogFirstCounter => _own.First;

    /// <summary>This replica's own stream positions (counters): appended, durable, certified, UIs durable.</summary>
    public (ulong Appended, ulong Durable, ulong Certified, ulong UiDurable) OwnLogPositions =>
        (_own.Appended, _own.Durable, _own.Certified, _own.UiDurable);
}
