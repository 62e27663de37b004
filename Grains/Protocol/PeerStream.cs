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

    /// <summary>When this replica last answered a retransmission request from the sender.</summary>
    public TimeSpan? RetransmitServedAt { get; set; }

    public ulong NextExpected => LastAccepted + 1;
}
