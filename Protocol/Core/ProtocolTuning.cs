namespace MinBft.Protocol;

/// <summary>
/// The local tuning knobs of one replica's core: each replica may choose its own without
/// affecting safety. Defined once, here: the host binds it from configuration
/// (<c>MinBft:Protocol</c>) and hands it to the core inside <see cref="ProtocolSettings"/>.
/// </summary>
public sealed record ProtocolTuning
{
    /// <summary>Most requests in one PREPARE (one UI, one durable counter write).</summary>
    public int MaxBatchSize { get; init; } = 64;

    /// <summary>How long the primary lets a batch fill while other batches are in flight, and, with
    /// none in flight, how long after executing a batch it waits for that batch's clients to send
    /// their next requests.</summary>
    public TimeSpan MaxBatchWait { get; init; } = TimeSpan.FromMilliseconds(2);

    /// <summary>How long certified UIs may wait for the next write of intents before they get a
    /// write of their own (the USIG can re-issue them meanwhile; the wait only saves fsyncs).</summary>
    public TimeSpan LazyUiWait { get; init; } = TimeSpan.FromMilliseconds(50);

    /// <summary>Batches the primary keeps proposed but not yet executed (pipelining depth).</summary>
    public int MaxInFlightBatches { get; init; } = 8;

    /// <summary>Most requests waiting at the primary; more are dropped (clients retransmit).</summary>
    public int MaxPendingRequests { get; init; } = 16 * 1024;

    /// <summary>Out-of-order messages kept per sender while a gap before them is filled.</summary>
    public int ReorderBufferPerSender { get; init; } = 256;

    /// <summary>Bytes of out-of-order messages kept per sender (<see cref="Encoding.MessageLimits.ApproximateBytes"/>);
    /// the lowest buffered message is kept even if it alone is larger.</summary>
    public long ReorderBufferBytesPerSender { get; init; } = 32L * 1024 * 1024;

    /// <summary>Bytes of requests waiting at the primary, and, separately, of requests a backup
    /// knows and has not seen ordered (<see cref="Encoding.MessageLimits.RequestBytes"/>).</summary>
    public long MaxPendingRequestBytes { get; init; } = 64L * 1024 * 1024;

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

    /// <summary>A backup that knows a request unexecuted for this long suspects the primary.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>How long a view change may take before the next view is tried; doubles on each
    /// failed view change and resets after a successful one.</summary>
    public TimeSpan ViewChangeTimeout { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>REQ-VIEW-CHANGE votes are kept only for views this far ahead (bounded memory).</summary>
    public int MaxViewLookahead { get; init; } = 64;

    /// <summary>Snapshot bytes per STATE-CHUNK (state transfer ships large states in pieces).</summary>
    public int StateChunkSize { get; init; } = 128 * 1024;

    /// <summary>Most STATE-CHUNKs served to one requester per retransmit interval; a requester asks
    /// for that many per interval too, so all replicas should share it.</summary>
    public int MaxStateChunksPerInterval { get; init; } = 64;

    /// <summary>Most positions a replica keeps its logs back for a peer fetching state from it (the
    /// snapshot it serves and the history after it, so the peer can install that snapshot and
    /// catch up by retransmission while the others move on). Beyond it the peer starts over from a
    /// newer checkpoint. Bounds memory: each kept position holds a batch in every stream.</summary>
    public int StateTransferRetention { get; init; } = 1024;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first knob out of range.</summary>
    public void Validate()
    {
        if (MaxBatchSize < 1 || MaxBatchSize > Encoding.MessageLimits.MaxBatchSize)
            throw new ArgumentException($"MaxBatchSize must be 1..{Encoding.MessageLimits.MaxBatchSize}, got {MaxBatchSize}");
        if (MaxBatchWait < TimeSpan.Zero) throw new ArgumentException("MaxBatchWait must not be negative");
        if (MaxInFlightBatches < 1) throw new ArgumentException("MaxInFlightBatches: at least one batch must be allowed in flight");
        if (ReorderBufferPerSender < 1 || ReorderWindow < ReorderBufferPerSender)
            throw new ArgumentException("ReorderWindow must hold ReorderBufferPerSender (both positive)");
        if (RetransmitInterval <= TimeSpan.Zero) throw new ArgumentException("RetransmitInterval must be positive");
        if (LazyUiWait < TimeSpan.Zero) throw new ArgumentException("LazyUiWait must not be negative");
        if (RequestTimeout <= RetransmitInterval) throw new ArgumentException("RequestTimeout must exceed RetransmitInterval");
        if (IdleRetransmitInterval < RetransmitInterval) throw new ArgumentException("IdleRetransmitInterval must not be shorter than RetransmitInterval");
        if (ViewChangeTimeout <= TimeSpan.Zero || MaxViewLookahead < 1) throw new ArgumentException("ViewChangeTimeout and MaxViewLookahead must be positive");
        if (StateTransferRetention < 0) throw new ArgumentException("StateTransferRetention must not be negative");
        if (StateChunkSize < 1 || StateChunkSize > Encoding.MessageLimits.MaxStateChunkLength || MaxStateChunksPerInterval < 1)
            throw new ArgumentException($"StateChunkSize must be 1..{Encoding.MessageLimits.MaxStateChunkLength} bytes and MaxStateChunksPerInterval at least 1");
        if (ReorderBufferBytesPerSender < 1 || MaxPendingRequestBytes < Encoding.MessageLimits.MaxBatchBytes)
            throw new ArgumentException($"ReorderBufferBytesPerSender must be positive and MaxPendingRequestBytes at least one batch ({Encoding.MessageLimits.MaxBatchBytes} bytes)");
        if (MaxRetransmitBatch < 1 || MaxPendingRequests < 1 || VerifiedRequestCacheSize < 1)
            throw new ArgumentException("MaxRetransmitBatch, MaxPendingRequests and VerifiedRequestCacheSize must be positive");
    }
}
