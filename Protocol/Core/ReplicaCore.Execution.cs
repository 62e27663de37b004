using MinBft.Crypto;
using MinBft.Encoding;
using MinBft.Messages;

namespace MinBft.Protocol;

/// <summary>
/// Execution (PROTOCOL.md section 4, steps 5 to 7): committed batches run strictly in the
/// primary's counter order, each request at most once, and every execution is answered with a
/// signed REPLY that is also cached for the client's retransmissions.
/// </summary>
public sealed partial class ReplicaCore
{
    private readonly Queue<PreparedBatch> _executionQueue = new();
    private ClientTable _clients = null!; // set in the constructor, from the settings' cap
    private TimeSpan _lastExecutionAt;
    private byte[] _historyDigest = new byte[32];

    /// <summary>A hash chain over the executed batches (digest and position): equal chains mean
    /// equal histories. Checkpoints cover it, so it survives state transfer.</summary>
    public ReadOnlySpan<byte> HistoryDigest => _historyDigest;

    /// <summary>Accepted batches waiting for their commit quorum or for an earlier batch.</summary>
    public int UnexecutedBatches => _executionQueue.Count;

    /// <summary>For failure reports: each batch waiting to execute (position, PREPARE counter,
    /// committers), and each sender's last COMMIT (PREPARE counter at position).</summary>
    public string DescribeOrdering() =>
        "queue [" + string.Join(" ", _executionQueue.Select(b => $"s{b.Prepare.Sequence}/p{b.Counter}:{{{string.Join(",", b.Committers.Order())}}}")) + "] "
        + "last commits [" + string.Join(" ", Enumerable.Range(0, N).Select(i => $"{i}:p{_lastCommitted[i]}@s{_lastCommittedPosition[i]}")) + "]";

    /// <summary>Last executed sequence number of a client (0: none, or its record was evicted).</summary>
    public ulong LastExecutedSeq(string clientId) => _clients.LastExecutedSeq(clientId);

    /// <summary>Client records held (at most <see cref="ProtocolSettings.MaxClientRecords"/> after each batch).</summary>
    public int ClientRecordCount => _clients.Count;

    /// <summary>A client without a record needs a request incarnation at least this high.</summary>
    public ulong ExpiryHorizon => _clients.ExpiryHorizon;

    /// <summary>Client records this core evicted since it started (an installed snapshot's evictions not included).</summary>
    public long ClientEvictions => _clients.Evictions;

    private void TryExecute()
    {
        while (_executionQueue.TryPeek(out var head) && head.Committers.Count >= _settings.CommitQuorum)
        {
            _executionQueue.Dequeue();
            Execute(head);
        }
    }

    private void Execute(PreparedBatch batch)
    {
        ProtocolInvariantException.Check(!batch.Executed, "a batch executes once");
        ProtocolInvariantException.Check(batch.Prepare.Sequence == ExecutedSequence + 1, "batches execute at consecutive positions");
        ProtocolInvariantException.Check(batch.Committers.Count >= _settings.CommitQuorum, "only committed batches execute");
        batch.Executed = true;
        ExecutedSequence++;
        _lastExecutionAt = _now;
        if (IsPrimary)
        {
            if (_now >= _returnsDue) _returning.Clear();
            // A client whose next request arrived before this primary executed (backups reply
            // first) is back already.
            foreach (var request in batch.Prepare.Batch)
                if (!_pendingByClient.ContainsKey(request.ClientId)) _returning.Add(request.ClientId);
            _returnsDue = _now + _tuning.MaxBatchWait;
        }
        if (!_carryingOver) _requestTimeoutBackoff = 0; // the view works: back to the configured timeout

        var view = batch.Prepare.View;
        var requestDigests = new byte[batch.Prepare.Batch.Length][];
        var executed = new List<ReplyContent>(batch.Prepare.Batch.Length);
        var replyTo = new List<string?>(batch.Prepare.Batch.Length);
        // The reply cache is written once the batch is signed; until then this batch's own
        // executions count for the exactly-once guard.
        var executedHere = new Dictionary<string, ulong>(StringComparer.Ordinal);
        var applied = new List<Request>(batch.Prepare.Batch.Length);
        for (var i = 0; i < batch.Prepare.Batch.Length; i++)
        {
            var request = batch.Prepare.Batch[i];
            requestDigests[i] = MessageEncoding.RequestDigest(request);
            var hasRecord = _clients.TryGet(request.ClientId, out var record) || executedHere.ContainsKey(request.ClientId);
            var last = executedHere.TryGetValue(request.ClientId, out var inBatch) ? inBatch : record?.LastExecutedSeq ?? 0;
            // Exactly once: a request at or below the client's executed seq never runs again
            // (PREPAREs are not checked for this: see CLIENT-SESSIONS-DESIGN.md).
            if (hasRecord && request.Seq <= last) continue;
            (byte[] Result, ReplyStatus Status) outcome;
            if (!_clients.Admits(request, hasRecord, ExecutedSequence))
            {
                // Possibly a replay from before the client's eviction (ClientTable.Admits). Decided
                // here, at the same position everywhere, and permanent (the horizon never falls).
                // The reply's position is the client's next incarnation.
                outcome = ([], ReplyStatus.Expired);
            }
            else
            {
                // An empty operation is a probe: it renews the record and runs nothing.
                outcome = (request.Operation.Length == 0 ? [] : _app.Apply(request.Operation), ReplyStatus.Executed);
                executedHere[request.ClientId] = request.Seq;
                if (request.Operation.Length > 0) applied.Add(request);
            }
            executed.Add(new ReplyContent(view, request.ClientId, request.Seq, requestDigests[i], outcome.Result, outcome.Status, ExecutedSequence));
            // The copy the client sent this replica names its proxy first-hand; the PREPARE's copy
            // is the primary's word for it (the hint is covered by no signature).
            var ownCopy = _known.TryGetValue(request.ClientId, out var known) && known.Request.Seq == request.Seq;
            replyTo.Add(ownCopy ? known!.Request.ReplyTo : request.ReplyTo);
            if (known is not null && known.Request.Seq <= request.Seq)
                ForgetKnown(request.ClientId);
            // Decided: from here the record (or the horizon) answers for this seq.
            if (_highestOrderedSeq.TryGetValue(request.ClientId, out var ordered) && ordered <= request.Seq)
                _highestOrderedSeq.Remove(request.ClientId);
        }
        // One signature for the batch's replies (a Merkle root), not one per reply.
        var replies = ReplyBatchSigner.Sign(_crypto.Signer, Id, executed);
        for (var i = 0; i < replies.Length; i++)
        {
            if (replies[i].Status == ReplyStatus.Executed) _clients.Record(replies[i], ExecutedSequence);
            Emit(new SendReply(replies[i], replyTo[i]));
        }
        // Beyond the cap, the least recently active records go (same position, same choice everywhere).
        _clients.EvictBeyondCapacity(ExecutedSequence);
        var batchDigest = BatchDigest(requestDigests);
        var link = new byte[32 + 32 + 8];
        _historyDigest.CopyTo(link, 0);
        batchDigest.CopyTo(link, 32);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(link.AsSpan(64), ExecutedSequence);
        _historyDigest = System.Security.Cryptography.SHA256.HashData(link);
        Emit(new Executed(ExecutedSequence, view, batch.Counter, batchDigest, batch.Prepare.Batch, applied));
        MaybeCheckpoint();
    }

    /// <summary>What was executed at a position: the requests, in order. Not the PREPARE's digest:
    /// a batch carried into a new view is proposed again there under another view and counter,
    /// and must count as the same history.</summary>
    private static byte[] BatchDigest(byte[][] requestDigests)
    {
        var w = new CanonicalWriter(16 + requestDigests.Length * 32).Tag(MessageTag.Prepare).I32(requestDigests.Length);
        foreach (var digest in requestDigests) w.Raw(digest);
        return System.Security.Cryptography.SHA256.HashData(w.WrittenSpan);
    }
}
