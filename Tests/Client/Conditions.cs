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
