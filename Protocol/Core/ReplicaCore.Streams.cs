using MinBft.Encoding;
using MinBft.Messages;

namespace MinBft.Protocol;

/// <summary>
/// The in-order acceptance rule (PROTOCOL.md section 4): a UI-certified message from j is
/// processed only when its counter is lastAccepted[j] + 1. Lower is a duplicate; higher waits
/// in a bounded per-sender buffer while the gap is asked for again. Orleans gives no FIFO
/// links, so arriving early is normal, not an attack.
/// </summary>
public sealed partial class ReplicaCore
{
    private enum Outcome { Accepted, Blocked, Rejected }

    private readonly Dictionary<(int Requester, int Stream), TimeSpan> _retransmitServedAt = [];

    private void HandleCertified(CertifiedMessage message)
    {
        // Bounds first: nothing large is hashed or verified before this.
        if (MessageLimits.Check(message) is { } malformed)
        {
            Reject(SafeSender(message), RejectReason.Malformed, malformed);
            return;
        }
        var sender = message.Sender;
        if (!IsReplica(sender) || sender == Id)
        {
            // A message "from us" that we did not create locally is forged or replayed.
            Reject(sender, RejectReason.UnknownSender, $"sender {sender}");
            return;
        }
        var stream = _streams[sender];
        var counter = message.Ui.Counter;
        if (counter == 0)
        {
            Reject(sender, RejectReason.InvalidUi, "counter 0");
            return;
        }
        if (message.Ui.Epoch != _crypto.Ui.Epochs.Current(sender))
        {
            // A rotated USIG's old identity certifies history only: its counters are another
            // stream's, and the replica restarted empty under the new one. Dropped unverified:
            // it cannot change anything (USIG-ROTATION-DESIGN.md, rule 2).
            Reject(sender, RejectReason.StaleEpoch, $"{message.GetType().Name} epoch {message.Ui.Epoch}");
            return;
        }
        if (counter <= stream.LastAccepted || stream.Buffer.ContainsKey(counter))
        {
            // Cheap and safe to drop unverified: it cannot change anything. Only a message with
            // a valid UI enters the buffer, and a USIG never certifies two messages per counter.
            Reject(sender, RejectReason.Duplicate, $"counter {counter}");
            return;
        }
        var anchor = message is Checkpoint cp && IsAnchor(cp);
        if (counter - stream.LastAccepted > (ulong)_tuning.ReorderWindow && !anchor)
        {
            Reject(sender, RejectReason.ReorderBufferFull, $"counter {counter} beyond window");
            AskRetransmission(sender, force: false);
            // Far behind a peer's stream: perhaps behind its checkpoints too.
            NoteBehind(ExecutedSequence + 1);
            return;
        }
        var digests = MessageDigests.Of(message);
        if (!_crypto.Ui.Verify(sender, message.Ui, digests.Certified))
        {
            Reject(sender, RejectReason.InvalidUi, $"{message.GetType().Name} counter {counter}");
            return;
        }
        if (anchor && counter > stream.NextExpected)
        {
            // The sender's CHECKPOINT at least W below our stable checkpoint: everything it sent
            // before is settled history (see TryReanchor), so its stream may resume here. This
            // is how a restarted or state-transferred replica picks up each peer's stream.
            stream.ReleaseBelow(counter);
            stream.LastAccepted = counter - 1;
            ReanchoredStreams++;
        }

        if (counter == stream.NextExpected)
        {
            var outcome = Process(message, digests);
            if (outcome == Outcome.Accepted) Advance(sender, message);
            else if (outcome == Outcome.Blocked) BufferMessage(sender, message, digests);
            // Rejected: counted by Process; the stream does not advance.
        }
        else
        {
            BufferMessage(sender, message, digests);
            AskRetransmission(sender, force: false);
            // Its vote may be what lets this replica skip a gap the sender garbage-collected.
            if (message is Checkpoint early) CountCheckpointVote(early);
        }
        Drain();
    }

    /// <summary>Dispatch a verified, next-in-order message to its protocol handler.</summary>
    private Outcome Process(CertifiedMessage message, MessageDigests digests) => message switch
    {
        Prepare prepare => ProcessPrepare(prepare, digests.PrepareDigest),
        Commit commit => ProcessCommit(commit, digests.PrepareDigest),
        Checkpoint checkpoint => ProcessCheckpoint(checkpoint),
        ViewChange viewChange => ProcessViewChange(viewChange, own: false),
        NewView newView => ProcessNewView(newView, own: false),
        _ => RejectOutcome(message.Sender, RejectReason.Unsupported, message.GetType().Name),
    };

    private Outcome RejectOutcome(int? from, RejectReason reason, string detail)
    {
        Reject(from, reason, detail);
        return Outcome.Rejected;
    }

    private void Advance(int sender, CertifiedMessage message)
    {
        var stream = _streams[sender];
        var counter = message.Ui.Counter;
        ProtocolInvariantException.Check(counter == stream.LastAccepted + 1, "streams advance one counter at a time");
        stream.LastAccepted = counter;
        stream.Release(counter);
        KeepForRelay(stream, message);
    }

    private void KeepForRelay(PeerStream stream, CertifiedMessage message)
    {
        // Only a contiguous run can be relayed; a re-anchored stream starts a new run.
        if (stream.Accepted.Count > 0 && stream.Accepted[^1].Ui.Counter + 1 != message.Ui.Counter) stream.Accepted.Clear();
        stream.Accepted.Add(message);
        if (message is Checkpoint { IsViewStart: false } cp) stream.CheckpointCounters[cp.Sequence] = cp.Ui.Counter;
    }

    private void BufferMessage(int sender, CertifiedMessage message, MessageDigests digests)
    {
        var stream = _streams[sender];
        var counter = message.Ui.Counter;
        if (stream.Buffer.ContainsKey(counter)) return;
        var bytes = MessageLimits.ApproximateBytes(message);
        // Bounded in count and in bytes: a Byzantine sender's valid UIs on maximum-size messages
        // must not fill memory. Keep the lowest counters, they are the ones needed next;
        // evicting the highest loses nothing for good, the sender retransmits it on request.
        // The lowest one is always kept, however large, so a large message in order still passes.
        while (stream.Buffer.Count > 0
               && (stream.Buffer.Count >= _tuning.ReorderBufferPerSender || stream.BufferedBytes + bytes > _tuning.ReorderBufferBytesPerSender))
        {
            var highest = stream.HighestBuffered;
            if (counter > highest)
            {
                Reject(sender, RejectReason.ReorderBufferFull, $"counter {counter} ({bytes} bytes)");
                return;
            }
            stream.Release(highest);
            Reject(sender, RejectReason.ReorderBufferFull, $"evicted counter {highest}");
        }
        stream.Hold(message, digests);
        ProtocolInvariantException.Check(stream.Buffer.Count <= _tuning.ReorderBufferPerSender, "a reorder buffer stays within its count");
        ProtocolInvariantException.Check(stream.Buffer.Count == 1 || stream.BufferedBytes <= _tuning.ReorderBufferBytesPerSender, "a reorder buffer stays within its bytes, beyond one message");
    }

    /// <summary>Process buffered messages that became next-in-order, until nothing moves.</summary>
    private void Drain()
    {
        bool progress;
        do
        {
            progress = false;
            for (var sender = 0; sender < N; sender++)
            {
                if (sender == Id) continue;
                var stream = _streams[sender];
                while (stream.Buffer.TryGetValue(stream.NextExpected, out var next))
                {
                    var outcome = Process(next, stream.DigestsOf(next.Ui.Counter));
                    if (outcome == Outcome.Blocked) break;
                    if (outcome == Outcome.Accepted)
                    {
                        Advance(sender, next);
                        progress = true;
                    }
                    else
                    {
                        // An invalid message with a valid UI: its sender is faulty. Its stream
                        // stays stuck at this counter, which is exactly what the USIG promises.
                        stream.Release(next.Ui.Counter);
                        break;
                    }
                }
                if (!stream.Buffer.ContainsKey(stream.NextExpected) && TryReanchor(sender)) progress = true;
            }
        } while (progress);
    }

    /// <summary>
    /// PROTOCOL.md section 6 (Decision): a sender's CHECKPOINT anchors its stream. If a gap in
    /// j's stream sits before a CHECKPOINT of j at position p with p + W at or below our stable
    /// checkpoint, everything j sent before that CHECKPOINT refers to positions at most p + W:
    /// settled history, which j may already have forgotten. Skipping the gap loses nothing that
    /// safety needs (a VIEW-CHANGE relies on its sender's own log, not on what we saw), and it
    /// keeps a peer that missed a retransmission window from being ignored forever.
    /// </summary>
    private bool TryReanchor(int sender)
    {
        var stream = _streams[sender];
        ulong anchor = 0;
        foreach (var (counter, message) in stream.Buffer)
            if (message is Checkpoint cp && IsAnchor(cp)) anchor = counter;
        if (anchor <= stream.NextExpected) return false;
        stream.ReleaseBelow(anchor);
        stream.LastAccepted = anchor - 1;
        ReanchoredStreams++;
        return true;
    }

    /// <summary>A sender's CHECKPOINT that may anchor its stream: W or more below our stable checkpoint
    /// and below what this replica executed. What the sender sent before it refers to positions at
    /// most W above it; skipping those before this replica holds their state would drop positions
    /// it still has to replay after the snapshot it is fetching (its peers keep them for it). A
    /// replica further behind than its peers' logs reach installs a newer snapshot first.</summary>
    private bool IsAnchor(Checkpoint cp) =>
        !cp.IsViewStart && cp.Sequence + (ulong)_settings.Watermark <= Math.Min(StableCheckpoint.Sequence, ExecutedSequence);

    /// <summary>Times a peer's stream was re-anchored at its CHECKPOINT past an unfillable gap.</summary>
    public long ReanchoredStreams { get; private set; }

    /// <summary>Ask for <paramref name="peer"/>'s stream from our next expected counter on: the
    /// peer itself and, with <paramref name="relays"/>, every other replica (the peer may have
    /// crashed; others relay what they accepted from it).</summary>
    private void AskRetransmission(int peer, bool force, bool relays = false)
    {
        var stream = _streams[peer];
        if (!force && stream.RetransmitAskedAt is { } asked && _now - asked < _tuning.RetransmitInterval) return;
        stream.RetransmitAskedAt = _now;
        var unsigned = new RetransmitRequest(Id, peer, stream.NextExpected, []);
        var signed = unsigned with { Signature = _crypto.Signer.Sign(MessageEncoding.RetransmitRequest(unsigned)) };
        if (relays) Emit(new Send(null, signed));
        else Emit(new Send(peer, signed));
    }

    private void HandleRetransmitRequest(RetransmitRequest request)
    {
        var from = request.ReplicaId;
        if (!AuthenticFromPeer(request, from, () => MessageEncoding.RetransmitRequest(request), request.Signature, "retransmit request")) return;
        if (!IsReplica(request.TargetId) || request.TargetId == from)
        {
            Reject(from, RejectReason.UnknownSender, $"retransmit request {from}->{request.TargetId}");
            return;
        }
        // Signed, so only replicas can ask; still answer each peer at most twice an interval
        // so a faulty replica cannot turn us into an amplifier.
        // Keyed by (requester, stream): one requester asks for several streams at once.
        var key = (from, request.TargetId);
        if (_retransmitServedAt.TryGetValue(key, out var served) && _now - served < _tuning.RetransmitInterval / 2) return;
        _retransmitServedAt[key] = _now;
        // A requester replaying history after a snapshot: keep that history for it a while longer.
        if (_statePins.TryGetValue(from, out var pin)) pin.LastAsked = _now;
        // Our own stream from the sent log; another replica's from what we accepted (relay).
        var messages = request.TargetId == Id
            ? SentFrom(request.FromCounter, _tuning.MaxRetransmitBatch)
            : _streams[request.TargetId].AcceptedFrom(request.FromCounter, _tuning.MaxRetransmitBatch);
        foreach (var message in messages.ToList()) Emit(new Send(from, message));
    }
}
