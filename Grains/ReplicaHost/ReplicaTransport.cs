using Microsoft.Extensions.Logging;
using MinBft.Crypto;
using MinBft.Encoding;
using MinBft.Messages;
using MinBft.Protocol;

namespace MinBft.ReplicaHost;

/// <summary>
/// Replica i's outgoing messages: the core's <see cref="Send"/>, <see cref="ForwardRequest"/> and
/// <see cref="SendReply"/> effects as one-way grain calls. Replies and forwarded requests are
/// held until the step's end (<see cref="Flush"/>) and leave as one call per destination: an
/// executed batch's replies to one client SDK cost one message, not one each. A replica never waits on a peer or a proxy (a
/// slow or Byzantine one must not stall it); a lost message is repaired by the protocol's
/// retransmission, so a failed call is only logged. A reply to a client with a MAC session here
/// leaves with that session's MAC (<see cref="ReplicaClientSessions.AuthenticateReply"/>), added
/// at sending time so that a cached reply sent again carries the client's current session.
/// </summary>
internal sealed partial class ReplicaTransport
{
    /// <summary>Most client proxy references kept; the table is cleared when full.</summary>
    private const int MaxCachedProxies = 16_384;

    private readonly int _id;
    private readonly IGrainFactory _grains;
    private readonly ILogger _logger;
    private readonly IReplicaGrain[] _peers;
    private readonly ReplicaClientSessions? _sessions;

    // Client proxy references by key: GetGrain resolves the interface type on every call,
    // which cost about 3% of the silo's CPU when done per reply.
    private readonly Dictionary<string, IClientProxyGrain> _proxies = new(StringComparer.Ordinal);

    // Replies of the current step by destination proxy, in the order the core emitted them.
    private readonly Dictionary<string, List<Reply>> _replies = new(StringComparer.Ordinal);

    // Requests the current step forwards, by peer (a tick forwards every known request at once).
    private Dictionary<int, List<Request>>? _forwards;

    public ReplicaTransport(int id, int n, IGrainFactory grains, ILogger logger, ReplicaClientSessions? sessions = null)
    {
        _id = id;
        _grains = grains;
        _logger = logger;
        _sessions = sessions;
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
                if (forward.To < 0 || forward.To >= _peers.Length) return true;
                _forwards ??= [];
                if (!_forwards.TryGetValue(forward.To, out var requests)) _forwards[forward.To] = requests = [];
                requests.Add(forward.Request);
                return true;
            case SendReply reply:
                var proxy = reply.ReplyTo ?? reply.Reply.ClientId;
                if (!_replies.TryGetValue(proxy, out var batch)) _replies[proxy] = batch = [];
                batch.Add(_sessions is { } sessions ? sessions.AuthenticateReply(reply.Reply) : reply.Reply);
                return true;
            default:
                return false;
        }
    }

    /// <summary>Sends the requests and replies the step produced: one call per peer for its
    /// forwarded requests, one per proxy for its replies (each cut at the delivery bounds).</summary>
    public void Flush()
    {
        FlushForwards();
        FlushReplies();
    }

    private void FlushForwards()
    {
        if (_forwards is null || _forwards.Count == 0) return;
        foreach (var (to, requests) in _forwards)
        {
            // A replica refuses a SubmitBatch over MessageLimits.MaxDeliveryBytes or MaxBatchSize.
            foreach (var (start, length) in DeliveryRuns.Split(requests.Count, i => MessageLimits.RequestBytes(requests[i]),
                         MessageLimits.MaxBatchSize, MessageLimits.MaxDeliveryBytes))
            {
                var call = length == 1 ? _peers[to].Submit(requests[start]) : _peers[to].SubmitBatch(requests.GetRange(start, length).ToArray());
                OneWay(call, length == 1 ? "Submit" : "SubmitBatch", to);
            }
        }
        _forwards.Clear();
    }

    private void FlushReplies()
    {
        if (_replies.Count == 0) return;
        foreach (var (to, replies) in _replies)
        {
            // The proxy is untrusted and may be gone; its client retransmits and the core
            // resends the cached reply.
            // Split by count and by bytes: a batch of maximum-size results must not make one
            // Orleans message larger than MessageLimits.MaxDeliveryBytes.
            foreach (var (start, length) in DeliveryRuns.Split(replies.Count, i => ApproximateBytes(replies[i]),
                         MessageLimits.MaxRepliesPerDelivery, MessageLimits.MaxDeliveryBytes))
                OneWay(ProxyOf(to).DeliverReplies(replies.GetRange(start, length).ToArray()), "DeliverReplies", -1);
        }
        _replies.Clear();
    }

    private static long ApproximateBytes(Reply reply) =>
        256 + reply.Result.Length + reply.Proof.Path.Length * MessageLimits.DigestLength;

    private IClientProxyGrain ProxyOf(string key)
    {
        if (_proxies.TryGetValue(key, out var proxy)) return proxy;
        if (_proxies.Count >= MaxCachedProxies) _proxies.Clear();
        return _proxies[key] = _grains.GetGrain<IClientProxyGrain>(key);
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
