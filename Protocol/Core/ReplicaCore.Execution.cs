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
    private readonly Dictionary<string, ClientRecord> _clients = new(StringComparer.Ordinal);
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

    /// <summary>Last executed sequence number of a client (0: none).</summary>
    public ulong LastExecutedSeq(string clientId) => _clients.TryGetValue(clientId, out var r) ? r.LastExecutedSeq : 0;

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
        if (!_carryingOver) _requestTimeoutBackoff = 0; // the view works: back to the configured timeout

        var view = batch.Prepare.View;
        var requestDigests = new byte[batch.Prepare.Batch.Length][];
        var executed = new List<ReplyContent>(batch.Prepare.Batch.Length);
        var replyTo = new List<string?>(batch.Prepare.Batch.Length);
        // The reply cache is written once the batch is signed; until then this batch's own
        // executions count for the exactly-once guard.
        var executedHere = new Dictionary<string, ulong>(StringComparer.Ordinal);
        for (var i = 0; i < batch.Prepare.Batch.Length; i++)
        {
            var request = batch.Prepare.Batch[i];
            requestDigests[i] = MessageEncoding.RequestDigest(request);
            var last = executedHere.TryGetValue(request.ClientId, out var inBatch) ? inBatch : LastExecutedSeq(request.ClientId);
            // Exactly once: a PREPARE never carries an already-ordered seq (checked on accept),
            // and this second guard keeps execution safe even if that check were bypassed.
            if (request.Seq <= last) continue;
            executed.Add(new ReplyContent(view, request.ClientId, request.Seq, requestDigests[i], _app.Apply(request.Operation)));
            executedHere[request.ClientId] = request.Seq;
            // The copy the client sent this replica names its proxy first-hand; the PREPARE's copy
            // is the primary's word for it (the hint is covered by no signature).
            var ownCopy = _known.TryGetValue(request.ClientId, out var known) && known.Request.Seq == request.Seq;
            replyTo.Add(ownCopy ? known!.Request.ReplyTo : request.ReplyTo);
            if (known is not null && known.Request.Seq <= request.Seq)
                ForgetKnown(request.ClientId);
            NoteOrdered(request);
        }
        // One signature for the batch's replies (a Merkle root), not one per reply.
        var replies = ReplyBatchSigner.Sign(_crypto.Signer, Id, executed);
        for (var i = 0; i < replies.Length; i++)
        {
            _clients[replies[i].ClientId] = new ClientRecord(replies[i].Seq, replies[i]);
            Emit(new SendReply(replies[i], replyTo[i]));
        }
        var batchDigest = BatchDigest(requestDigests);
        var link = new byte[32 + 32 + 8];
        _historyDigest.CopyTo(link, 0);
        batchDigest.CopyTo(link, 32);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(link.AsSpan(64), ExecutedSequence);
        _historyDigest = System.Security.Cryptography.SHA256.HashData(link);
        Emit(new Executed(ExecutedSequence, view, batch.Counter, batchDigest, batch.Prepare.Batch));
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
