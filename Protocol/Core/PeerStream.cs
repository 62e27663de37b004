using MinBft.Messages;

namespace MinBft.Protocol;

/// <summary>
/// What a replica knows of one sender's USIG counter stream: the last counter it accepted and
/// the messages that arrived ahead of a gap (UI already verified), kept until the gap fills.
/// </summary>
internal sealed class PeerStream
{
    public ulong LastAccepted { get; set; }

    private readonly SortedDictionary<ulong, CertifiedMessage> _buffer = new();
    // The digests computed when each buffered message's UI was checked, so that processing it
    // later (perhaps several times, while it is blocked) does not hash it again.
    private readonly Dictionary<ulong, MessageDigests> _digests = new();

    /// <summary>Verified messages with counters above LastAccepted, keyed by counter. Changed only
    /// through <see cref="Hold"/> and <see cref="Release"/>, which keep <see cref="BufferedBytes"/>.</summary>
    public IReadOnlyDictionary<ulong, CertifiedMessage> Buffer => _buffer;

    /// <summary><see cref="Encoding.MessageLimits.ApproximateBytes"/> of the buffered messages.</summary>
    public long BufferedBytes { get; private set; }

    /// <summary>The highest buffered counter (the buffer must not be empty).</summary>
    public ulong HighestBuffered => _buffer.Keys.Last();

    public void Hold(CertifiedMessage message, MessageDigests digests)
    {
        ProtocolInvariantException.Check(message.Ui.Counter > LastAccepted, "only messages ahead of the stream are buffered");
        _buffer.Add(message.Ui.Counter, message);
        _digests.Add(message.Ui.Counter, digests);
        BufferedBytes += Encoding.MessageLimits.ApproximateBytes(message);
    }

    public void Release(ulong counter)
    {
        if (!_buffer.Remove(counter, out var message)) return;
        _digests.Remove(counter);
        BufferedBytes -= Encoding.MessageLimits.ApproximateBytes(message);
        ProtocolInvariantException.Check(BufferedBytes >= 0 && (_buffer.Count > 0 || BufferedBytes == 0), "buffered bytes match the buffer");
    }

    /// <summary>The digests of the buffered message at <paramref name="counter"/>.</summary>
    public MessageDigests DigestsOf(ulong counter) => _digests[counter];

    /// <summary>Drops every buffered message below <paramref name="counter"/>.</summary>
    public void ReleaseBelow(ulong counter)
    {
        while (_buffer.Count > 0 && _buffer.Keys.First() < counter) Release(_buffer.Keys.First());
    }

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
