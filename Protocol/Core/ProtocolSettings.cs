namespace MinBft.Protocol;

/// <summary>
/// Static configuration of one replica's core. Every replica of a cluster must use the same
/// N, CheckpointInterval and Watermark; <see cref="Tuning"/> holds the local knobs.
/// </summary>
public sealed record ProtocolSettings
{
    /// <summary>Number of replicas, n = 2f+1.</summary>
    public required int N { get; init; }

    /// <summary>This replica's id, 0..N-1.</summary>
    public required int ReplicaId { get; init; }

    /// <summary>The local tuning knobs (batching, buffers, timers).</summary>
    public ProtocolTuning Tuning { get; init; } = new();

    /// <summary>A checkpoint every this many executed batches (cluster-wide constant).</summary>
    public int CheckpointInterval { get; init; } = 64;

    /// <summary>
    /// A backup accepts a PREPARE only for a position at most this far beyond what it executed
    /// (cluster-wide constant). It bounds how far a replica's messages run ahead of its
    /// checkpoints, which is what lets a VIEW-CHANGE log start at an older own checkpoint.
    /// </summary>
    public int Watermark { get; init; } = 64;

    /// <summary>Most client records the replicated state keeps (cluster-wide constant). Beyond it,
    /// the record idle for the most executed batches is evicted after each batch, the same way at
    /// every replica; an evicted client's old requests then get an Expired reply, never a second
    /// execution (see CLIENT-SESSIONS-DESIGN.md).</summary>
    public int MaxClientRecords { get; init; } = DefaultMaxClientRecords;

    /// <summary>Default of <see cref="MaxClientRecords"/>.</summary>
    public const int DefaultMaxClientRecords = 100_000;

    /// <summary>How many of its last UIs this replica's USIG can re-issue. Owned by the USIG (the
    /// host reads it from the USIG's identity): the replica never has more UIs issued and not yet
    /// durable in its log than this, so a crash loses none.</summary>
    public int UsigReissueWindow { get; init; }

    /// <summary>Most digests this replica's USIG certifies in one call (one durable write). Owned by
    /// the USIG, read from its identity like <see cref="UsigReissueWindow"/>.</summary>
    public int UsigMaxBatch { get; init; }

    /// <summary>Most bytes of messages this replica's USIG keeps with one batch (0: it keeps none).
    /// Owned by the USIG, read from its identity like <see cref="UsigReissueWindow"/>. A batch whose
    /// messages fit is certified while the journal writes them, not after (USIG-KEPT-MESSAGES-DESIGN.md).</summary>
    public int UsigMaxKeptBytes { get; init; }

    public int F => (N - 1) / 2;

    /// <summary>Matching commitments (the PREPARE counts as the primary's) that commit a batch.</summary>
    public int CommitQuorum => F + 1;

    public void Validate()
    {
        if (N < 1 || N % 2 == 0) throw new ArgumentException($"n must be 2f+1 (odd, >= 1), got {N}");
        if (ReplicaId < 0 || ReplicaId >= N) throw new ArgumentException($"replica id {ReplicaId} outside 0..{N - 1}");
        ArgumentNullException.ThrowIfNull(Tuning);
        Tuning.Validate();
        if (MaxClientRecords < 1) throw new ArgumentException("the client record cap must be positive");
        if (CheckpointInterval < 1) throw new ArgumentException("checkpoint interval must be positive");
        if (Watermark < Tuning.MaxInFlightBatches) throw new ArgumentException("the watermark must admit every in-flight batch (MaxInFlightBatches)");
        if (Encoding.MessageLimits.CheckViewChangeSpan(Watermark, CheckpointInterval) is { } tooLarge) throw new ArgumentException(tooLarge);
        if (UsigReissueWindow < 1 || UsigMaxBatch < 1)
            throw new ArgumentException("the USIG's re-issue window and largest batch must be read from the USIG (both at least 1)");
        if (UsigMaxKeptBytes < 0) throw new ArgumentException("the USIG's kept-message limit cannot be negative");
    }
}
