namespace MinBft.Tests.Integration;

/// <summary>
/// The clock of a test cluster's MinBFT grains: real time plus an offset the test moves forward.
/// With request timeouts far longer than any test, a backup never suspects a correct primary just
/// because the machine is loaded; a test that needs suspicion moves the clock past the timeout at
/// the moment it chooses (<see cref="MinBftTestCluster.ExpireRequestTimersAsync"/>). Timers and
/// delays still run in real time (TimeProvider's own timers), so retries and retransmissions are
/// unaffected; only deadlines measured on the clock jump.
/// </summary>
internal sealed class TestClock : TimeProvider
{
    private long _offset; // in timestamp ticks

    public TimeSpan Offset => TimeSpan.FromSeconds(Interlocked.Read(ref _offset) / (double)TimestampFrequency);

    public override long GetTimestamp() => base.GetTimestamp() + Interlocked.Read(ref _offset);

    public override DateTimeOffset GetUtcNow() => base.GetUtcNow() + Offset;

    public void Advance(TimeSpan by)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(by, TimeSpan.Zero);
        Interlocked.Add(ref _offset, (long)(by.TotalSeconds * TimestampFrequency));
    }
}
