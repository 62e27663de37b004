using Microsoft.Extensions.Logging.Abstractions;
using MinBft.ReplicaHost;
using Orleans.Storage;

namespace MinBft.Tests.Hosting;

/// <summary>
/// The replica grain's background durable operations (<see cref="DurableOperations"/>): what a
/// store conflict means depends on whether the activation is still the replica's.
/// </summary>
public sealed class DurableOperationsTests
{
    private static DurableOperations Create() =>
        new(1, TimeSpan.FromMilliseconds(1), TimeSpan.FromMilliseconds(4), TimeProvider.System, NullLogger.Instance);

    /// <summary>A running activation that meets another owner's fence halts (the control case).</summary>
    [Fact]
    public async Task A_conflict_while_running_is_reported_as_a_conflict()
    {
        var operations = Create();
        var conflict = new TaskCompletionSource<Exception>(TaskCreationOptions.RunContinuationsAsynchronously);
        operations.Run<int>("log", () => throw new InconsistentStateException("fenced"), (_, _) => Assert.Fail("it failed"), e => conflict.TrySetResult(e), () => false);
        var seen = await conflict.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal("fenced", seen.Message);
    }

    /// <summary>
    /// An activation whose deactivation has begun (and may be cut short, so the next activation
    /// opens the store while its write is still in flight) meets that next owner's fence: the
    /// hand-over, not a halt. Reporting it marked the replica halted (Unhealthy) on its silo
    /// although the activation serving it was fine.
    /// </summary>
    [Fact]
    public async Task A_conflict_met_after_stopping_began_is_not_reported()
    {
        var operations = Create();
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var conflicts = 0;
        operations.Run<int>(
            "log",
            async () =>
            {
                started.TrySetResult();
                await release.Task;
                throw new InconsistentStateException("the next activation opened the journal");
            },
            (_, _) => Assert.Fail("it failed"),
            _ => Interlocked.Increment(ref conflicts),
            () => false);
        await started.Task.WaitAsync(TimeSpan.FromSeconds(10));
        var stopping = operations.StopAsync(CancellationToken.None);
        release.SetResult();
        await stopping.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(0, Volatile.Read(ref conflicts));
    }
}
