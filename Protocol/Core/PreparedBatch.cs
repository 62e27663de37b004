using MinBft.Messages;

namespace MinBft.Protocol;

/// <summary>An accepted PREPARE of the current view and the replicas committed to it.</summary>
internal sealed class PreparedBatch(Prepare prepare, Sha256Digest digest, ulong previousPrepareCounter)
{
    public Prepare Prepare { get; } = prepare;
    public Sha256Digest Digest { get; } = digest;
    public ulong Counter => Prepare.PrepareUi.Counter;

    /// <summary>Counter of the primary's previous PREPARE in this view (0 for the first):
    /// a backup's COMMITs must follow this chain without skipping a link.</summary>
    public ulong PreviousPrepareCounter { get; } = previousPrepareCounter;

    /// <summary>Replicas committed to the batch; the primary's PREPARE is its commitment.</summary>
    public HashSet<int> Committers { get; } = [];

    public bool Executed { get; set; }
}
