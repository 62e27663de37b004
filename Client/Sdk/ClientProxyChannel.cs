using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.ExceptionServices;
using MinBft.Encoding;
using MinBft.Hosting;
using MinBft.Messages;
using Orleans.Runtime;
using Request = MinBft.Messages.Request;

namespace MinBft.Client;

/// <summary>How the SDK reaches its client proxy: the grain by key, and references to the
/// observer the proxy reports outcomes to (a seam: tests stand in for the cluster).</summary>
internal interface IClientProxyLink
{
    IClientProxyGrain Proxy(string key);

    IClientProxyObserver CreateReference(IClientProxyObserver observer);

    void DeleteReference(IClientProxyObserver reference);
}

/// <summary>The link of a real cluster: an <c>IClusterClient</c>, or a silo's grain factory.</summary>
internal sealed class GrainFactoryLink(IGrainFactory grains) : IClientProxyLink
{
    public IClientProxyGrain Proxy(string key) => grains.GetGrain<IClientProxyGrain>(key);

    public IClientProxyObserver CreateReference(IClientProxyObserver observer) => grains.CreateObjectReference<IClientProxyObserver>(observer);

    public void DeleteReference(IClientProxyObserver reference) => grains.DeleteObjectReference<IClientProxyObserver>(reference);
}

/// <summary>
/// The SDK's end of its client proxy. Requests leave in <see cref="IClientProxyGrain.Submit"/>
/// calls. Outcomes the proxy delivers together are handed to their callers each in a work item
/// of its own, in which the caller's continuation runs (and typically starts its next request);
/// requests started while any of those continuations is still running wait for the last one to
/// end, then leave in one call, however loaded the machine. Other requests leave at most one call
/// per <see cref="GatherWindow"/>: at once (after one thread-pool hop, which gathers what its
/// caller starts in the same loop) when the last call left longer ago. The proxy reports each request's
/// outcome to this observer as soon as it has it, so no request waits for the rest of its batch.
/// Outcomes come from an untrusted proxy: one that names no request waiting here is ignored, and
/// the caller verifies the replies itself.
/// </summary>
internal sealed class ClientProxyChannel : IClientProxyObserver, IDisposable
{
    // How much longer than the proxy's own timeout an attempt waits for its outcome, and how long
    // after the proxy finished a Submit call an outcome it sent may still be in transit.
    internal static readonly TimeSpan LocalGrace = TimeSpan.FromSeconds(1);

    /// <summary>
    /// The shortest time between two Submit calls. Measured need: signing a request and running
    /// its caller's continuation takes tens of microseconds, so the continuations of one batch of
    /// outcomes start their next requests over a millisecond or more; flushing after a mere
    /// thread-pool hop sent most of them one by one. A millisecond is the timer's resolution and
    /// small next to a round trip through the replicas.
    /// </summary>
    internal static readonly TimeSpan GatherWindow = TimeSpan.FromMilliseconds(1);

    // Callers' continuations of delivered outcomes that are still running (see the summary).
    private int _settling;

    /// <summary>
    /// The longest a request waits for settling continuations. They normally end within a few
    /// milliseconds; one that blocks (say, on the result of a request it started) must not hold
    /// up the requests started meanwhile, its own included.
    /// </summary>
    internal static readonly TimeSpan MaxSettleWait = TimeSpan.FromMilliseconds(10);

    private readonly IClientProxyLink _link;
    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<(string ClientId, ulong Seq), Attempt> _waiting = new();
    private readonly Lock _lock = new();
    private List<Attempt> _outbox = [];
    private bool _flushScheduled;
    private long _lastFlush;
    private bool _flushedOnce;
    private bool _disposed;

    // Orleans holds the observer weakly: this channel is the reference that keeps it alive.
    private readonly IClientProxyObserver _reference;

    public ClientProxyChannel(IClientProxyLink link, string proxyKey, TimeProvider time)
    {
        _link = link;
        _time = time;
        Proxy = link.Proxy(proxyKey);
        _reference = link.CreateReference(this);
    }

    /// <summary>The proxy grain (sessions are opened through it directly).</summary>
    public IClientProxyGrain Proxy { get; }

    /// <summary>Requests waiting for the next Submit call.</summary>
    internal int Queued
    {
        get
        {
            lock (_lock) return _outbox.Count;
        }
    }

    /// <summary>Callers' continuations of delivered outcomes still running.</summary>
    internal int Settling => Volatile.Read(ref _settling);

    /// <summary>Submit calls made (each carrying a batch of requests).</summary>
    public long Submits => Interlocked.Read(ref _submits);

    private long _submits;

    /// <summary>
    /// One attempt: <paramref name="request"/> goes out with the next batch, and its f+1 replies
    /// (unverified: the caller verifies them) come back when the proxy has them. Throws
    /// <see cref="TimeoutException"/> when no outcome came in time, <see cref="MinBftException"/>
    /// when the proxy reported a failure, or the Submit call's own exception.
    /// </summary>
    /// <param name="request">The signed request.</param>
    /// <param name="timeout">The proxy's time to collect its replies.</param>
    /// <param name="link">The W3C traceparent of the caller's span, or null.</param>
    /// <param name="cancellationToken">Stops waiting for this request only.</param>
    public async Task<Reply[]> SendAsync(Request request, TimeSpan timeout, string? link, CancellationToken cancellationToken)
    {
        var attempt = new Attempt(request, timeout, link);
        var key = (request.ClientId, request.Seq);
        // One attempt per request at a time (an identity has one request outstanding).
        _waiting[key] = attempt;
        try
        {
            Enqueue(attempt);
            var (outcome, error) = await attempt.Result.Task.WaitAsync(timeout + LocalGrace, _time, cancellationToken).ConfigureAwait(false);
            if (error is not null) ExceptionDispatchInfo.Throw(error);
            if (outcome!.Replies is { } replies) return replies;
            var why = "the client proxy reported: " + (outcome.Failure ?? "no replies");
            throw outcome.TimedOut ? new TimeoutException(why) : new MinBftException(why);
        }
        finally
        {
            _waiting.TryRemove(KeyValuePair.Create(key, attempt));
        }
    }

    /// <inheritdoc />
    public Task Completed(ClientProxyOutcome[] outcomes)
    {
        // Never throws: the input comes from the untrusted proxy.
        if (outcomes is null) return Task.CompletedTask;
        foreach (var outcome in outcomes)
        {
            if (outcome?.ClientId is null) continue;
            if (!_waiting.TryGetValue((outcome.ClientId, outcome.Seq), out var attempt) || !attempt.TryClaim()) continue;
            Interlocked.Increment(ref _settling);
            ThreadPool.UnsafeQueueUserWorkItem(static s => s.Channel.Settle(s.Attempt, s.Outcome), (Channel: this, Attempt: attempt, Outcome: outcome), preferLocal: false);
        }
        return Task.CompletedTask;
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
        }
        var disposed = new ObjectDisposedException(nameof(MinBftClient));
        foreach (var attempt in _waiting.Values) Fail(attempt, disposed);
        try
        {
            _link.DeleteReference(_reference);
        }
        catch (Exception)
        {
            // The client is going away (or already gone): nothing left to release.
        }
    }

    /// <summary>Runs the caller's continuation of a delivered outcome, then sends what the
    /// continuations started if none of them is still running.</summary>
    private void Settle(Attempt attempt, ClientProxyOutcome outcome)
    {
        try
        {
            attempt.Result.SetResult((outcome, null));
        }
        finally
        {
            if (Interlocked.Decrement(ref _settling) == 0) FlushQueued();
        }
    }

    private void FlushQueued()
    {
        lock (_lock)
        {
            if (_outbox.Count == 0) return;
        }
        Flush();
    }

    private static void Fail(Attempt attempt, Exception error)
    {
        if (!attempt.TryClaim()) return;
        // Not on this thread: the caller's continuation (a retry, its own code) runs elsewhere.
        ThreadPool.UnsafeQueueUserWorkItem(static s => s.Attempt.Result.SetResult((null, s.Error)), (Attempt: attempt, Error: error), preferLocal: false);
    }

    private void Enqueue(Attempt attempt)
    {
        TimeSpan wait;
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _outbox.Add(attempt);
            if (_flushScheduled) return;
            _flushScheduled = true;
            // The last continuation of the outcomes delivered together sends it (Settle), or,
            // should one block, this timer.
            wait = Volatile.Read(ref _settling) > 0 ? MaxSettleWait
                : _flushedOnce ? GatherWindow - _time.GetElapsedTime(_lastFlush) : TimeSpan.Zero;
        }
        if (wait > TimeSpan.Zero)
        {
            _ = FlushLaterAsync(wait);
            return;
        }
        // After the current work item: requests its caller starts in the same loop join this call.
        ThreadPool.UnsafeQueueUserWorkItem(static channel => channel.Flush(), this, preferLocal: false);
    }

    private async Task FlushLaterAsync(TimeSpan wait)
    {
        await Task.Delay(wait, _time).ConfigureAwait(false);
        Flush();
    }

    private void Flush()
    {
        List<Attempt> batch;
        lock (_lock)
        {
            // Whatever scheduled this call (a window, a hop, the last settling continuation),
            // it takes everything queued; a call scheduled earlier may then find nothing.
            _flushScheduled = false;
            if (_outbox.Count == 0) return;
            batch = _outbox;
            _outbox = [];
            _lastFlush = _time.GetTimestamp();
            _flushedOnce = true;
        }
        // Cut by count and by bytes: a proxy refuses a Submit over either bound.
        foreach (var (start, length) in DeliveryRuns.Split(batch.Count, i => MessageLimits.RequestBytes(batch[i].Request),
                     MessageLimits.MaxBatchSize, MessageLimits.MaxDeliveryBytes))
            _ = SubmitAsync(batch.GetRange(start, length).ToArray());
    }

    private async Task SubmitAsync(Attempt[] attempts)
    {
        var requests = new Request[attempts.Length];
        string[]? links = null;
        var timeout = TimeSpan.Zero;
        for (var i = 0; i < attempts.Length; i++)
        {
            requests[i] = attempts[i].Request;
            if (attempts[i].Timeout > timeout) timeout = attempts[i].Timeout;
            if (attempts[i].Link is { } link) (links ??= new string[attempts.Length])[i] = link;
        }
        Interlocked.Increment(ref _submits);
        // The call carries many requests: it belongs to none of their traces, whatever context
        // scheduled this flush (local to this method: an async method restores its caller's).
        if (Activity.Current is not null) Activity.Current = null;
        RequestContext.Clear();
        try
        {
            // Each request's trace context rides along by index (MinBftTracing.RequestLinksKey):
            // the proxy continues each request's trace in a span of its own.
            if (links is not null) RequestContext.Set(MinBftTracing.RequestLinksKey, links);
            var call = Proxy.Submit(requests, timeout, _reference);
            if (links is not null) RequestContext.Remove(MinBftTracing.RequestLinksKey);
            await call.ConfigureAwait(false);
        }
        catch (Exception e)
        {
            // The call failed (the proxy's silo died, the proxy refused the call): the outcomes
            // still missing will not come. Each attempt fails now and its request is retried.
            foreach (var attempt in attempts) Fail(attempt, e);
            return;
        }
        // The proxy has an outcome for every request of the call; one not here yet is in transit,
        // or was lost (an observer the proxy could not reach): give it a moment, then retry.
        if (Array.TrueForAll(attempts, a => a.Result.Task.IsCompleted)) return;
        await Task.Delay(LocalGrace, _time).ConfigureAwait(false);
        foreach (var attempt in attempts)
            Fail(attempt, new TimeoutException("the client proxy finished the request, but its outcome did not arrive"));
    }

    private sealed class Attempt(Request request, TimeSpan timeout, string? link)
    {
        public Request Request { get; } = request;
        public TimeSpan Timeout { get; } = timeout;
        public string? Link { get; } = link;

        /// <summary>The proxy's outcome, or why the attempt failed without one.</summary>
        /// <summary>Completed by whoever claimed it (<see cref="TryClaim"/>), on a thread-pool work
        /// item where the caller's continuation runs inline.</summary>
        public TaskCompletionSource<(ClientProxyOutcome? Outcome, Exception? Error)> Result { get; } = new();

        private int _claimed;

        /// <summary>True for the first of the outcome, a failure or disposal: only it completes the attempt.</summary>
        public bool TryClaim() => Interlocked.Exchange(ref _claimed, 1) == 0;
    }
}
