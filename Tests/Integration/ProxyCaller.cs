using System.Collections.Concurrent;
using MinBft.Messages;

namespace MinBft.Tests.Integration;

/// <summary>
/// Calls client proxies as the SDK does, without its verification: Submit with an observer of
/// its own, which records every outcome it is told and hands each to the request waiting for it.
/// Reaches the cluster through a cluster client or a silo's grain factory.
/// </summary>
internal sealed class ProxyCaller : IClientProxyObserver, IDisposable
{
    private readonly IGrainFactory _grains;
    private readonly ConcurrentDictionary<(string ClientId, ulong Seq), TaskCompletionSource<ClientProxyOutcome>> _waiting = new();

    public ProxyCaller(IGrainFactory grains)
    {
        _grains = grains;
        // Orleans holds observers weakly: this object stays alive as long as its owner holds it.
        Reference = grains.CreateObjectReference<IClientProxyObserver>(this);
    }

    /// <summary>What proxies pass the outcomes to.</summary>
    public IClientProxyObserver Reference { get; }

    /// <summary>Every outcome received, and the calls that brought them.</summary>
    public ConcurrentQueue<ClientProxyOutcome> Received { get; } = new();

    public int Calls => _calls;

    private int _calls;

    public Task Completed(ClientProxyOutcome[] outcomes)
    {
        Interlocked.Increment(ref _calls);
        foreach (var outcome in outcomes)
        {
            Received.Enqueue(outcome);
            if (_waiting.TryGetValue((outcome.ClientId, outcome.Seq), out var waiter)) waiter.TrySetResult(outcome);
        }
        return Task.CompletedTask;
    }

    /// <summary>The outcome of submitting <paramref name="request"/> alone; throws what the call threw.</summary>
    public async Task<ClientProxyOutcome> SubmitAsync(IClientProxyGrain proxy, Request request, TimeSpan timeout)
    {
        var waiter = Expect(request);
        try
        {
            var call = proxy.Submit([request], timeout, Reference);
            if (await Task.WhenAny(waiter.Task, call) == call)
            {
                await call; // its exception, if it failed
                // It ended because the outcome was sent: the outcome is on its way.
                return await waiter.Task.WaitAsync(TimeSpan.FromSeconds(10));
            }
            return await waiter.Task;
        }
        finally
        {
            Forget(request);
        }
    }

    /// <summary>Like the proxy's former Execute: the f+1 replies, or <see cref="TimeoutException"/> with the proxy's reason.</summary>
    public async Task<Reply[]> ExecuteAsync(IClientProxyGrain proxy, Request request, TimeSpan timeout)
    {
        var outcome = await SubmitAsync(proxy, request, timeout);
        return outcome.Replies ?? throw new TimeoutException($"request {request.Seq}: {outcome.Failure}");
    }

    /// <summary>A waiter for <paramref name="request"/>'s outcome (for submissions made by hand).</summary>
    public TaskCompletionSource<ClientProxyOutcome> Expect(Request request) =>
        _waiting[(request.ClientId, request.Seq)] = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public void Forget(Request request) => _waiting.TryRemove((request.ClientId, request.Seq), out _);

    public void Dispose() => _grains.DeleteObjectReference<IClientProxyObserver>(Reference);
}
