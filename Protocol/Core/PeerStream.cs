using MinBft.Messages;

namespace MinBft.Protocol;

/// <summary>
/// What a replica knows of one sender's USIG counter stream: the last counter it accepted and
/// the messages that arrived ahead of a gap (UI already verified), kept until the gap fills.
/// </summary>
internal sealed class PeerStream
{
    public ulong LastAccepted { get; set; }

    /// <summary>Verified messages with counters above LastAccepted + 0, keyed by counter.</summary>
    public SortedDictionary<ulong, CertifiedMessage> Buffer { get; } = new();

    /// <summary>When this replica last asked the sender to retransmit (null: never).</summary>
    public TimeSpan? RetransmitAskedAt { get; set; }

    public ulong NextExpected => LastAccepted + 1;

    /// <summary>Messages accepted from this sender, kept (bounded by checkpoints) so this replica
    /// can relay the sender's stream to a peer that missed part of it, e.g. after the sender
    /// crashed. Relaying is safe: every message carries the sender's UI.</summary>
    public List<CertifiedMessage> Accepted { get; } = [];

    /// <summary>This sender's CHECKPOINT counters by position (anchors for trimming Accepted).</summary>
    public SortedDictionary<ulong, ulong> CheckpointCounters { get; } = [];

    /// <summary>Messages relayed from <paramref name="from"/> on, at most <paramref name="max"/>.</summary>
    public IEnumerable<CertifiedMessage> AcceptedFrom(ulong from, int max)
    {
        if (Accepted.Count == 0) return [];
        var first = Accepted[0].Ui.Counter;
        var start = from <= first ? 0 : (int)Math.Min((ulong)Accepted.Count, from - first);
        return Accepted.Skip(start).Take(max);
    }
}
