using Microsoft.Extensions.Logging;
using MinBft.Protocol;

namespace MinBft.ReplicaHost;

/// <summary>
/// Replica i's outgoing messages: the core's <see cref="Send"/>, <see cref="ForwardRequest"/> and
/// <see cref="SendReply"/> effects as one-way grain calls. A replica never waits on a peer or a
/// proxy (a slow or Byzantine one must not stall it); a lost message is repaired by the
/// protocol's retransmission, so a failed call is only logged.
/// </summary>
internal sealed partial class ReplicaTransport
{
    /// <summary>Most client proxy references kept; the table is cleared when full.</summary>
    private const int MaxCachedProxies = 16_384;

    private readonly int _id;
    private readonly IGrainFactory _grains;
    private readonly ILogger _logger;
    private readonly IReplicaGrain[] _peers;

    // Client proxy references by client id: GetGrain resolves the interface type on every call,
    // which cost about 3% of the silo's CPU when done per reply.
    private readonly Dictionary<string, IClientProxyGrain> _proxies = new(StringComparer.Ordinal);

    public ReplicaTransport(int id, int n, IGrainFactory grains, ILogger logger)
    {
        _id = id;
        _grains = grains;
        _logger = logger;
        _peers = Enumerable.Range(0, n).Select(i => grains.GetGrain<IReplicaGrain>(i)).ToArray();
    }

    /// <summary>Sends what <paramref name="effect"/> asks for; false if it is not a message effect.</summary>
    public bool Dispatch(Effect effect)
    {
        switch (effect)
        {
            case Send { To: null } send:
                for (var peer = 0; peer < _peers.Length; peer++)
                    if (peer != _id) OneWay(_peers[peer].Deliver(send.Message), "Deliver", peer);
                return true;
            case Send { To: { } to } send:
                if (to != _id && to >= 0 && to < _peers.Length) OneWay(_peers[to].Deliver(send.Message), "Deliver", to);
                return true;
            case ForwardRequest forward:
                // Forwarding only helps a primary that missed the request; nothing waits on it.
                if (forward.To >= 0 && forward.To < _peers.Length) OneWay(_peers[forward.To].Submit(forward.Request), "Submit", forward.To);
                return true;
            case SendReply reply:
                // The proxy is untrusted and may be gone; the client retransmits and the core
                // resends the cached reply.
                OneWay(ProxyOf(reply.Reply.ClientId).DeliverReply(reply.Reply), "DeliverReply", -1);
                return true;
            default:
                return false;
        }
    }

    private IClientProxyGrain ProxyOf(string clientId)
    {
        if (_proxies.TryGetValue(clientId, out var proxy)) return proxy;
        if (_proxies.Count >= MaxCachedProxies) _proxies.Clear();
        return _proxies[clientId] = _grains.GetGrain<IClientProxyGrain>(clientId);
    }

    private void OneWay(Task call, string method, int target)
    {
        if (call.IsCompletedSuccessfully) return;
        _ = call.ContinueWith(
            static (t, s) =>
            {
                var (log, id, method, target) = ((ILogger, int, string, int))s!;
                LogSendFailed(log, t.Exception!.GetBaseException(), id, method, target);
            },
            (_logger, _id, method, target),
            CancellationToken.None,
            TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously,
            TaskScheduler.Default);
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Replica {ReplicaId}: one-way {Method} to {Target} failed")]
    private static partial void LogSendFailed(ILogger logger, Exception exception, int replicaId, string method, int target);
}
