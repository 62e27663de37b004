namespace MinBft.Protocol;

/// <summary>
/// Static configuration of one replica's core. Every replica of a cluster must use the same
/// N and CheckpointInterval; the rest are local tuning knobs.
/// </summary>
public sealed record ProtocolSettings
{
    /// <summary>Number of replicas, n = 2f+1.</summary>
    public required int N { get; init; }

    /// <summary>This replica's id, 0..N-1.</summary>
    public required int ReplicaId { get; init; }

    /// <summary>Most requests in one PREPARE (one UI, one durable counter write).</summary>
    public int MaxBatchSize { get; init; } = 64;

    /// <summary>How long the primary lets a batch fill while other batches are in flight.</summary>
    public TimeSpan MaxBatchWait { get; init; } = TimeSpan.FromMilliseconds(2);

    /// <summary>Batches the primary keeps proposed but not yet executed (pipelining depth).</summary>
    public int MaxInFlightBatches { get; init; } = 8;

    /// <summary>Most requests waiting at the primary; more are dropped (clients retransmit).</summary>
    public int MaxPendingRequests { get; init; } = 16 * 1024;

    /// <summary>Out-of-order messages kept per sender while a gap before them is filled.</summary>
    public int ReorderBufferPerSender { get; init; } = 256;

    /// <summary>How far ahead of the next expected counter a message may be and still be kept.</summary>
    public int ReorderWindow { get; init; } = 4096;

    /// <summary>Silence after which a replica asks peers to retransmit, or forwards requests.</summary>
    public TimeSpan RetransmitInterval { get; init; } = TimeSpan.FromMilliseconds(200);

    /// <summary>Even with no work outstanding, a replica asks each peer this often for anything after
    /// the last message it accepted from it (anti-entropy after losses in a quiet period).</summary>
    public TimeSpan IdleRetransmitInterval { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>Most messages sent in answer to one retransmission request.</summary>
    public int MaxRetransmitBatch { get; init; } = 128;

    /// <summary>Verified request digests remembered so a request is verified once, not per copy.</summary>
    public int VerifiedRequestCacheSize { get; init; } = 64 * 1024;

    /// <summary>A checkpoint every this many executed batches (cluster-wide constant).</summary>
    public int CheckpointInterval { get; init; } = 64;

    /// <summary>
    /// A backup accepts a PREPARE only for a position at most this far beyond what it executed
    /// (cluster-wide constant). It bounds how far a replica's messages run ahead of its
    /// checkpoints, which is what lets a VIEW-CHANGE log start at an older own checkpoint.
    /// </summary>
    public int Watermark { get; init; } = 64;

    /// <summary>A backup that knows a request unexecuted for this long suspects the primary.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>How long a view change may take before the next view is tried; doubles on each
    /// failed view change and resets after a successful one.</summary>
    public TimeSpan ViewChangeTimeout { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>REQ-VIEW-CHANGE votes are kept only for views this far ahead (bounded memory).</summary>
    public int MaxViewLookahead { get; init; } = 64;

    /// <summary>Snapshot bytes per STATE-CHUNK (state transfer ships large states in pieces).</summary>
    public int StateChunkSize { get; init; } = 128 * 1024;

    /// <summary>Most STATE-CHUNKs served to one requester per retransmit interval.</summary>
    public int MaxStateChunksPerInterval { get; init; } = 64;

    /// <summary>How many of its last UIs this replica's USIG can re-issue. Owned by the USIG (the
    /// host reads it from the USIG's identity): the replica never has more UIs issued and not yet
    /// durable in its log than this, so a crash loses none.</summary>
    public int UsigReissueWindow { get; init; }

    /// <summary>Most digests this replica's USIG certifies in one call (one durable write). Owned by
    /// the USIG, read from its identity like <see cref="UsigReissueWindow"/>.</summary>
    public int UsigMaxBatch { get; init; }

    public int F => (N - 1) / 2;

    /// <summary>Matching commitments (the PREPARE counts as the primary's) that commit a batch.</summary>
    public int CommitQuorum => F + 1;

    public void Validate()
    {
        if (N < 1 || N % 2 == 0) throw new ArgumentException($"n must be 2f+1 (odd, >= 1), got {N}");
        if (ReplicaId < 0 || ReplicaId >= N) throw new ArgumentException($"replica id {ReplicaId} outside 0..{N - 1}");
        if (MaxBatchSize < 1 || MaxBatchSize > Encoding.MessageLimits.MaxBatchSize)
            throw new ArgumentException($"batch size must be 1..{Encoding.MessageLimits.MaxBatchSize}");
        if (MaxInFlightBatches < 1) throw new ArgumentException("at least one batch must be allowed in flight");
        if (CheckpointInterval < 1) throw new ArgumentException("checkpoint interval must be positive");
        if (Watermark < MaxInFlightBatches) throw new ArgumentException("the watermark must admit every in-flight batch");
        if (ReorderBufferPerSender < 1 || ReorderWindow < ReorderBufferPerSender)
            throw new ArgumentException("reorder window must hold the reorder buffer");
        if (RetransmitInterval <= TimeSpan.Zero) throw new ArgumentException("retransmit interval must be positive");
        if (RequestTimeout <= RetransmitInterval) throw new ArgumentException("the request timeout must exceed the retransmit interval");
        if (IdleRetransmitInterval < RetransmitInterval) throw new ArgumentException("the idle retransmit interval must not be shorter than the retransmit interval");
        if (ViewChangeTimeout <= TimeSpan.Zero || MaxViewLookahead < 1) throw new ArgumentException("view-change settings must be positive");
        if (StateChunkSize < 1 || StateChunkSize > Encoding.MessageLimits.MaxStateChunkLength || MaxStateChunksPerInterval < 1)
            throw new ArgumentException($"state chunks must be 1..{Encoding.MessageLimits.MaxStateChunkLength} bytes, served at least one per interval");
        if (UsigReissueWindow < 1 || UsigMaxBatch < 1)
            throw new ArgumentException("the USIG's re-issue window and largest batch must be read from the USIG (both at least 1)");
        if (MaxRetransmitBatch < 1 || MaxPendingRequests < 1 || VerifiedRequestCacheSize < 1)
            throw new ArgumentException("limits must be positive");
    }
}
