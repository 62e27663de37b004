using MinBft.Messages;

namespace MinBft.Protocol;

/// <summary>Exactly-once state per client: the last executed sequence number, its reply, and the
/// position it executed at (<see cref="LastActive"/>, which orders evictions).</summary>
public sealed record ClientRecord(ulong LastExecutedSeq, Reply LastReply, ulong LastActive);

/// <summary>A request this replica knows of and has not executed yet.</summary>
internal sealed class KnownRequest(Request request, TimeSpan firstSeen)
{
    public Request Request { get; set; } = request;
    public TimeSpan FirstSeen { get; set; } = firstSeen;
    public TimeSpan? ForwardedAt { get; set; }

    /// <summary>Forwards to the primary since <see cref="FirstSeen"/>: each waits twice as long as
    /// the one before it.</summary>
    public int Forwards { get; set; }

    /// <summary>Sets the request as new to this view or seq: first forward after one interval.</summary>
    public void Restart(TimeSpan now)
    {
        FirstSeen = now;
        ForwardedAt = null;
        Forwards = 0;
    }
}
