namespace MinBft.Protocol;

/// <summary>Why an input from the network was not accepted. Every rejection is counted.</summary>
public enum RejectReason
{
    /// <summary>A field is missing or over its bound.</summary>
    Malformed,
    /// <summary>The claimed sender is not a replica of this cluster (or claims to be us).</summary>
    UnknownSender,
    /// <summary>The USIG certificate does not verify (forged, tampered, wrong key or epoch).</summary>
    InvalidUi,
    /// <summary>A replica or client signature does not verify.</summary>
    InvalidSignature,
    /// <summary>Counter already accepted from this sender (a replay or a retransmitted copy).</summary>
    Duplicate,
    /// <summary>The reorder buffer for this sender is full, or the counter is too far ahead.</summary>
    ReorderBufferFull,
    /// <summary>A PREPARE from a replica that is not the primary of its view.</summary>
    NotPrimary,
    /// <summary>A COMMIT that claims to come from the primary (its PREPARE is its commitment).</summary>
    CommitFromPrimary,
    /// <summary>Fields of one message contradict each other (e.g. COMMIT view != its PREPARE's view).</summary>
    Inconsistent,
    /// <summary>A COMMIT that skips or repeats a PREPARE of the view (consecutive-commit check).</summary>
    NonConsecutiveCommit,
    /// <summary>A COMMIT whose PREPARE differs from the one accepted with that counter.</summary>
    ConflictingPrepare,
    /// <summary>A PREPARE holding an invalid, duplicate or already-ordered client request.</summary>
    InvalidBatch,
    /// <summary>A client request with a sequence number older than the client's last executed one.</summary>
    StaleRequest,
    /// <summary>The primary's queue of pending requests is full.</summary>
    Overloaded,
    /// <summary>A message this replica does not handle in its current role or version.</summary>
    Unsupported,
    /// <summary>A snapshot from state transfer that is malformed or whose digest is not the certified one.</summary>
    InvalidSnapshot,
    /// <summary>A client request that reuses an executed sequence number for another operation.</summary>
    ReusedSeq,
    /// <summary>A message in a replica's stream under a USIG epoch that is not its current one (a
    /// rotated USIG's old identity certifies history only).</summary>
    StaleEpoch,
    /// <summary>A PREPARE or NEW-VIEW under a USIG identity that may not lead its view (one epoch per
    /// primary per view).</summary>
    EpochNotForView,
}
