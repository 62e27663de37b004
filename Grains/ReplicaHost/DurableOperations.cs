using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Orleans.Storage;

namespace MinBft.ReplicaHost;

/// <summary>
/// The replica's durable operations (log write, USIG batch, checkpoint store) in the background.
/// Each is idempotent (a USIG batch returns the same UIs when retried, a log append finds out
/// whether a failed attempt landed, a checkpoint store overwrites), so it is retried unchanged
/// with a doubling delay until it succeeds; only then is its result handed back. Each is kept
/// until it ends, so deactivation can stop them and wait.
/// </summary>
internal sealed partial class DurableOperations(int replicaId, TimeSpan retryDelay, TimeSpan maxRetryDelay, TimeProvider clock, ILogger logger)
{
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<Task, byte> _running = new();

    // Since when each failing operation has been failing (its first failure), for health.
    private readonly ConcurrentDictionary<object, long> _failingSince = new();

    /// <summary>How long the oldest operation still failing has been failing (zero if none is).</summary>
    public TimeSpan FailingFor =>
        _failingSince.IsEmpty ? TimeSpan.Zero : clock.GetElapsedTime(_failingSince.Values.Min());

    /// <summary>
    /// Starts <paramref name="operation"/>. On success <paramref name="completed"/> gets its result
    /// and the time it took, retries included. <paramref name="conflict"/> is told when the store
    /// says another activation of this replica wrote (no retry can fix that). Nothing runs once
    /// <paramref name="halted"/> is true or the operations are stopping.
    /// </summary>
    public void Run<T>(string what, Func<Task<T>> operation, Action<T, TimeSpan> completed, Action<Exception> conflict, Func<bool> halted)
    {
        var task = RunAsync(what, operation, completed, conflict, halted);
        if (task.IsCompleted) return;
        _running.TryAdd(task, 0);
        _ = task.ContinueWith(
            static (t, s) => ((ConcurrentDictionary<Task, byte>)s!).TryRemove(t, out _),
            _running, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    private async Task RunAsync<T>(string what, Func<Task<T>> operation, Action<T, TimeSpan> completed, Action<Exception> conflict, Func<bool> halted)
    {
        var started = clock.GetTimestamp();
        var delay = retryDelay;
        var attempt = new object(); // this operation's key in _failingSince
        try
        {
            while (!halted() && !_stopping.IsCancellationRequested)
            {
                T result;
                try
                {
                    result = await operation();
                }
                catch (InconsistentStateException e)
                {
                    // An activation that is being replaced (its deactivation was cut short and
                    // the next one took the store over) meets the new owner's fence: that is the
                    // hand-over, not a halt of the replica.
                    if (_stopping.IsCancellationRequested) LogConflictWhileStopping(logger, e, replicaId, what);
                    else conflict(e);
                    return;
                }
                catch (Exception e) when (!halted() && !_stopping.IsCancellationRequested)
                {
                    _failingSince.TryAdd(attempt, clock.GetTimestamp());
                    LogRetry(logger, e, replicaId, what, delay);
                    try
                    {
                        await Task.Delay(delay, clock, _stopping.Token);
                    }
                    catch (OperationCanceledException)
                    {
                        return; // deactivating: the next activation recovers from what is durable
                    }
                    delay = delay * 2 < maxRetryDelay ? delay * 2 : maxRetryDelay;
                    continue;
                }
                if (_stopping.IsCancellationRequested) return;
                _failingSince.TryRemove(attempt, out _);
                completed(result, clock.GetElapsedTime(started));
                return;
            }
        }
        finally
        {
            _failingSince.TryRemove(attempt, out _);
        }
    }

    /// <summary>
    /// Stops the retry loops and waits for the operations in flight: what they had not completed
    /// is recovered by the next activation, exactly as after a crash.
    /// </summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync();
        try
        {
            await Task.WhenAll(_running.Keys).WaitAsync(cancellationToken);
        }
        catch (Exception e) when (e is OperationCanceledException or TimeoutException)
        {
            // Deactivation is being cut short; the journal refuses writes once disposed.
        }
        catch (Exception)
        {
            // A failed operation was already logged by its retry loop.
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Replica {ReplicaId}: {What} was refused after this activation began to stop (the next activation owns the store)")]
    private static partial void LogConflictWhileStopping(ILogger logger, Exception exception, int replicaId, string what);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Replica {ReplicaId}: {What} failed; retrying the same in {Delay}")]
    private static partial void LogRetry(ILogger logger, Exception exception, int replicaId, string what, TimeSpan delay);
}
