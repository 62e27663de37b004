using MinBft.Encoding;
using MinBft.Messages;

namespace MinBft.Protocol;

/// <summary>
/// Client requests: validation, the exactly-once reply cache, the primary's batching
/// (PROTOCOL.md section 5) and, at backups, remembering requests so that a primary that never
/// got one is sent it and a lost PREPARE is asked for again.
/// </summary>
public sealed partial class ReplicaCore
{
    private readonly VerifiedRequestCache _verifiedRequests;
    // Primary: requests waiting for a batch, oldest first, at most one per client.
    private readonly LinkedList<(Request Request, TimeSpan Arrived)> _pending = new();
    private readonly Dictionary<string, LinkedListNode<(Request Request, TimeSpan Arrived)>> _pendingByClient = new(StringComparer.Ordinal);
    // Primary: the position of the last batch it proposed (UI requested) in this view.
    private ulong _lastProposedSequence;
    // Primary: clients of the batches executed since the last batch was cut that have not sent
    // their next request yet, and until when they are waited for (see TryPropose).
    private readonly HashSet<string> _returning = new(StringComparer.Ordinal);
    private TimeSpan _returnsDue;

    /// <summary>Clients that just got their replies are expected back within a batch wait: with an
    /// empty pipeline, a non-full batch waits for them (one UI, one write, one round of messages
    /// for both groups instead of two). With batches in flight, their executions bring the next
    /// cut anyway.</summary>
    private bool AwaitingReturns => InFlightBatches == 0 && _returning.Count > 0 && _now < _returnsDue;

    /// <summary>The primary's proposed batches not executed here yet. Derived from positions, not
    /// counted up and down: a snapshot installed mid-pipeline (state transfer) or a carried batch
    /// executed in an older view would otherwise leave a count that no longer matches.</summary>
    private int InFlightBatches => IsPrimary && _lastProposedSequence > ExecutedSequence ? (int)(_lastProposedSequence - ExecutedSequence) : 0;
    // Backup: requests known and not executed, by client (sorted: deterministic iteration).
    private readonly SortedDictionary<string, KnownRequest> _known = new(StringComparer.Ordinal);
    // MessageLimits.RequestBytes of _pending and of _known: both are bounded in bytes as well as
    // in count, so maximum-size requests from many clients cannot fill memory.
    private long _pendingBytes;
    private long _knownBytes;

    /// <summary>Bytes of the requests waiting at the primary.</summary>
    public long PendingRequestBytes => _pendingBytes;

    /// <summary>Bytes of the requests this backup knows and has not seen executed.</summary>
    public long KnownRequestBytes => _knownBytes;

    /// <summary>Requests waiting at the primary for a batch.</summary>
    public int PendingRequests => _pending.Count;

    /// <summary>The last position this replica proposed as primary (0 before its first PREPARE).</summary>
    public ulong LastProposedSequence => _lastProposedSequence;

    private bool VerifyRequest(Request request)
    {
        var bytes = MessageEncoding.RequestDigest(request);
        var digest = Sha256Digest.From(bytes);
        if (_verifiedRequests.Contains(digest)) return true;
        if (!_crypto.Requests.Verify(request, bytes)) return false;
        _verifiedRequests.Add(digest);
        return true;
    }

    private void HandleRequest(Request request)
    {
        if (MessageLimits.CheckRequest(request) is { } malformed)
        {
            Reject(null, RejectReason.Malformed, "request: " + malformed);
            return;
        }
        if (!VerifyRequest(request))
        {
            Reject(null, RejectReason.InvalidSignature, "client request");
            return;
        }
        var clientId = request.ClientId;
        if (_clients.TryGet(clientId, out var record))
        {
            if (request.Seq < record.LastExecutedSeq)
            {
                Reject(null, RejectReason.StaleRequest, $"seq {request.Seq} < {record.LastExecutedSeq}");
                return;
            }
            if (request.Seq == record.LastExecutedSeq)
            {
                // Another operation under an executed seq is refused, never answered with the
                // executed one's reply (the reply covers the request digest, so the client would
                // reject it anyway).
                if (!MessageEncoding.RequestDigest(request).AsSpan().SequenceEqual(record.LastReply.RequestDigest))
                {
                    Reject(null, RejectReason.ReusedSeq, $"seq {request.Seq} was executed for another operation");
                    return;
                }
                // The client missed our reply: resend the cached one, never execute again.
                Emit(new SendReply(record.LastReply, request.ReplyTo));
                return;
            }
        }
        if (request.Seq <= HighestOrderedSeq(clientId)) return; // ordered already, reply follows

        if (IsPrimary) AddPending(request);
        else RememberKnown(request);
    }

    private void AddPending(Request request)
    {
        var clientId = request.ClientId;
        if (_pendingByClient.TryGetValue(clientId, out var node))
        {
            // One outstanding request per client: a newer seq supersedes the waiting one.
            if (request.Seq <= node.Value.Request.Seq) return;
            RemovePending(node);
        }
        var bytes = MessageLimits.RequestBytes(request);
        if (_pending.Count >= _tuning.MaxPendingRequests || _pendingBytes + bytes > _tuning.MaxPendingRequestBytes)
        {
            Reject(null, RejectReason.Overloaded, $"pending queue full ({_pending.Count} requests, {_pendingBytes} bytes)");
            return;
        }
        _pendingByClient[clientId] = _pending.AddLast((request, _now));
        _pendingBytes += bytes;
        _returning.Remove(clientId);
    }

    private void RemovePending(LinkedListNode<(Request Request, TimeSpan Arrived)> node)
    {
        _pending.Remove(node);
        _pendingByClient.Remove(node.Value.Request.ClientId);
        _pendingBytes -= MessageLimits.RequestBytes(node.Value.Request);
        ProtocolInvariantException.Check(_pendingBytes >= 0 && (_pending.Count > 0 || _pendingBytes == 0), "pending bytes match the pending queue");
    }

    private void ClearPending()
    {
        _pending.Clear();
        _pendingByClient.Clear();
        _pendingBytes = 0;
    }

    private void ForgetKnown(string clientId)
    {
        if (!_known.Remove(clientId, out var known)) return;
        _knownBytes -= MessageLimits.RequestBytes(known.Request);
        ProtocolInvariantException.Check(_knownBytes >= 0 && (_known.Count > 0 || _knownBytes == 0), "known bytes match the known requests");
    }

    private void RememberKnown(Request request)
    {
        if (_known.TryGetValue(request.ClientId, out var known))
        {
            if (request.Seq > known.Request.Seq)
            {
                _knownBytes += MessageLimits.RequestBytes(request) - MessageLimits.RequestBytes(known.Request);
                known.Request = request;
                known.Restart(_now);
            }
            return;
        }
        var bytes = MessageLimits.RequestBytes(request);
        if (_known.Count >= _tuning.MaxPendingRequests || _knownBytes + bytes > _tuning.MaxPendingRequestBytes)
        {
            Reject(null, RejectReason.Overloaded, $"known-request table full ({_known.Count} requests, {_knownBytes} bytes)");
            return;
        }
        _known[request.ClientId] = new KnownRequest(request, _now);
        _knownBytes += bytes;
    }

    /// <summary>The primary may propose now: not changing views, the view's start proven (after
    /// view 0), pipeline and watermark not full.</summary>
    private bool CanPropose =>
        IsPrimary && MayLeadView && !_viewChanging && !_proposalsSuspended && (View == 0 || _viewStartCertificate is not null)
        && InFlightBatches < _tuning.MaxInFlightBatches
        && _lastProposedSequence + 1 <= ExecutedSequence + (ulong)_settings.Watermark;

    private bool PrepareAwaitingUi => _own.HasUncertified<Prepare>();

    /// <summary>The primary cuts batches: full ones at once, otherwise when nothing is in flight
    /// or the oldest request has waited <see cref="ProtocolTuning.MaxBatchWait"/>. With nothing in
    /// flight, a non-full batch also waits, at most MaxBatchWait after the last execution, for the
    /// clients just answered (<see cref="AwaitingReturns"/>).</summary>
    private void TryPropose()
    {
        // First, the batches the NEW-VIEW carries, again, in order (see EnterView).
        while (CanPropose && _carried.TryGetValue(_lastProposedSequence + 1, out var carried))
        {
            _lastProposedSequence++;
            // A carried position this primary executed already is settled: the client table answers for it.
            if (_lastProposedSequence > ExecutedSequence)
                foreach (var request in carried) NoteOrdered(request);
            var start = _lastProposedSequence == _viewBase + 1 ? _viewStartCertificate : null;
            RequestUiFor(new Prepare(View, Id, _lastProposedSequence, carried, UniqueIdentifier.None, start));
        }
        if (_carried.Count > 0 && _carried.Keys.Last() > _lastProposedSequence) return;
        while (_pending.Count > 0 && CanPropose)
        {
            var full = _pending.Count >= _tuning.MaxBatchSize || _pendingBytes >= MessageLimits.MaxBatchBytes;
            var waited = _now - _pending.First!.Value.Arrived >= _tuning.MaxBatchWait;
            if (!full && !waited && InFlightBatches > 0) return;
            // Closed-loop clients split into groups that alternate (those answered while a batch
            // was in flight form the next batch on their own). Waiting for the clients just
            // answered merges them: fewer, larger batches, each one UI, one write per replica and
            // one round of messages, on a machine where those per-batch costs dominate CPU.
            if (!full && AwaitingReturns) return;
            // Adaptive batching: while a PREPARE waits for its UI (a durable USIG write), a
            // non-full batch keeps filling; the UI's arrival proposes it. One durable counter
            // write then covers everything that arrived during the previous one.
            if (!full && PrepareAwaitingUi) return;
            var batch = new List<Request>(Math.Min(_pending.Count, _tuning.MaxBatchSize));
            long batchBytes = 0;
            while (batch.Count < _tuning.MaxBatchSize && _pending.First is { } first)
            {
                // A PREPARE is bounded in bytes too (backups refuse a larger one as malformed).
                var bytes = MessageLimits.RequestBytes(first.Value.Request);
                if (batch.Count > 0 && batchBytes + bytes > MessageLimits.MaxBatchBytes) break;
                RemovePending(first);
                // Ordered while the batch was filling (e.g. carried by an earlier batch)?
                if (first.Value.Request.Seq <= HighestOrderedSeq(first.Value.Request.ClientId)) continue;
                batch.Add(first.Value.Request);
                batchBytes += bytes;
            }
            if (batch.Count == 0) continue;
            _returning.Clear();
            foreach (var request in batch) NoteOrdered(request);
            _lastProposedSequence++;
            var viewStart = View > 0 && _lastProposedSequence == _viewBase + 1 ? _viewStartCertificate : null;
            RequestUiFor(new Prepare(View, Id, _lastProposedSequence, batch.ToArray(), UniqueIdentifier.None, viewStart));
        }
    }
}
