namespace MinBft.Client;

/// <summary>
/// The highest position of the replicated history that f+1 replies proved to this client, and
/// when. Requests carry it as their incarnation: at or above the cluster's expiry horizon, it
/// admits an identity whose record was evicted; and being a position already passed, it stays
/// below the position any later request executes at, which keeps replays of that request out
/// once its own record is evicted (see Protocol/Core/CLIENT-SESSIONS-DESIGN.md).
/// </summary>
internal sealed class ProvenPosition(TimeProvider time)
{
    private long _latest;
    private long _provenAt; // 0: never

    /// <summary>One probe at a time: concurrent requests wait for it rather than probe too.</summary>
    public SemaphoreSlim ProbeGate { get; } = new(1, 1);

    public ulong Latest => (ulong)Volatile.Read(ref _latest);

    /// <summary>Whether a position was proven within <paramref name="maxAge"/>.</summary>
    public bool IsFresh(TimeSpan maxAge)
    {
        var at = Volatile.Read(ref _provenAt);
        return at != 0 && (maxAge == Timeout.InfiniteTimeSpan || time.GetElapsedTime(at) < maxAge);
    }

    public void Note(ulong position)
    {
        var current = Volatile.Read(ref _latest);
        while ((ulong)current < position)
        {
            var seen = Interlocked.CompareExchange(ref _latest, (long)position, current);
            if (seen == current) break;
            current = seen;
        }
        Volatile.Write(ref _provenAt, Math.Max(1, time.GetTimestamp()));
    }
}
