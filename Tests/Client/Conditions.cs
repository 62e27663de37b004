using System.Diagnostics;

namespace MinBft.Tests.Client;

/// <summary>Waiting for a condition with a deadline (never a fixed sleep).</summary>
internal static class Conditions
{
    /// <summary>Polls <paramref name="condition"/> until it holds; fails with <paramref name="what"/> and the last observation after <paramref name="timeout"/>.</summary>
    public static async Task WaitUntilAsync(Func<Task<(bool Holds, string Observed)>> condition, TimeSpan timeout, string what)
    {
        var watch = Stopwatch.StartNew();
        var observed = "(not evaluated)";
        while (watch.Elapsed < timeout)
        {
            bool holds;
            (holds, observed) = await condition();
            if (holds) return;
            await Task.Delay(TimeSpan.FromMilliseconds(50));
        }
        Assert.Fail($"{what} did not happen within {timeout}; last observed: {observed}");
    }
}

/// <summary>Requests of a client whose clock is a <see cref="Microsoft.Extensions.Time.Testing.FakeTimeProvider"/>.</summary>
internal static class FakeClockRequests
{
    /// <summary>
    /// Waits for <paramref name="running"/>, a request of <paramref name="client"/>, moving
    /// <paramref name="clock"/> by the gather window whenever a request of the client still waits in
    /// its channel. A request that follows another's outcome (the request after its probe) leaves
    /// from that outcome's continuation when the caller gets there while the outcome settles; on a
    /// loaded machine it may get there after (the outcome arrived before the caller awaited it), and
    /// the request then waits for the gather window, which a fake clock passes only when moved. Only
    /// ever moves the clock while a request waits, so never after the request's replies came.
    /// </summary>
    public static async Task<T> CompleteAsync<T>(this Task<T> running, MinBft.Client.MinBftClient client, Microsoft.Extensions.Time.Testing.FakeTimeProvider clock)
    {
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            await Task.WhenAny(running, Task.Delay(TimeSpan.FromMilliseconds(10)));
            if (running.IsCompleted) return await running;
            if (watch.Elapsed > TimeSpan.FromSeconds(30)) Assert.Fail($"the request did not complete within 30 s ({client.Channel.Queued} queued, {client.Channel.Settling} settling)");
            if (client.Channel.Queued > 0) clock.Advance(MinBft.Client.ClientProxyChannel.GatherWindow);
        }
    }
}
