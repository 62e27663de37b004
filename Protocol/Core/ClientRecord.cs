using MinBft.Messages;

namespace MinBft.Protocol;

/// <summary>Exactly-once state per client: the last executed sequence number and its reply.</summary>
internal sealed record ClientRecord(ulong LastExecutedSeq, Reply LastReply);

/// <summary>A request this replica knows of and has not executed yet.</summary>
internal sealed class KnownRequest(Request request, TimeSpan firstSeen)
{
    public Request Request { get; set; } = request;
    public TimeSpan FirstSeen { get; set; } = firstSeen;
    public TimeSpan? ForwardedAt { get; set; }
}
