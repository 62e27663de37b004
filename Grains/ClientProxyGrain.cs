using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using MinBft.Crypto;
using MinBft.Encoding;
using MinBft.Hosting;
using MinBft.Messages;
using Orleans.Concurrency;
using Orleans.Placement;
using Orleans.Runtime;
using Request = MinBft.Messages.Request;

namespace MinBft;

/// <summary>
/// A client's way into the cluster, one per client SDK instance (any key), placed on the silo
/// that routes its first call (usually the client's gateway: one hop less), which may be a silo
/// of any fault domain or one with none. It stamps each signed request with its own key
/// (<see cref="Request.ReplyTo"/>) and sends it to the primary; while fewer than f+1 replicas
/// agree it resends it to every replica, so a primary that ignores it is found out by the
/// backups. Everything travels in batches: requests arrive from the SDK in batches (Submit),
/// leave in batches (one call per replica for those gathered during a turn), replies arrive in
/// batches (one call per replica and executed batch), and outcomes go back to the SDK's observer
/// in batches (one call per turn for every request completed in it). Every reply is checked
/// (a request in flight here under its client and seq, its request digest, and its batch
/// root's signature under the manifest's key of the replica it names, once per batch for the
/// whole silo) and each replica counts once, so neither a forged reply nor a Byzantine
/// replica's different result can make up a quorum. The proxy itself is not trusted: the SDK
/// verifies the f+1 replies again.
/// Reentrant so that replies are taken while Submit calls wait; state is bounded by
/// <see cref="MinBftOptions.MaxRequestsPerClientProxy"/> requests of at most n replies each.
/// </summary>
[Reentrant]
[PreferLocalPlacement]
public sealed partial class ClientProxyGrain(MinBftSilo silo, IServiceProvider services, ILogger<ClientProxyGrain> logger) : Grain, IClientProxyGrain
{
    /// <summary>Longest wait a caller may ask for; longer would outlive any sensible call timeout.</summary>
    public static readonly TimeSpan MaxTimeout = TimeSpan.FromMinutes(10);

    private readonly Dictionary<(string ClientId, ulong Seq), PendingRequest> _pending = [];

    // Made once: GetGrain resolves the interface type on every call (a profile showed 5% of the
    // silo's CPU in that resolution when it ran per request).
    private IReplicaGrain[]? _replicas;

    private IReplicaGrain[] Replicas => _replicas ??= Enumerable.Range(0, silo.Manifest.N).Select(i => GrainFactory.GetGrain<IReplicaGrain>(i)).ToArray();
    private readonly Dictionary<string, long> _ignored = new(StringComparer.Ordinal);
    private long _completed;
    private long _accepted;
    private long _submits;
    private long _notifications;

    // Outcomes waiting for this turn to end, by observer: they leave together (Completed).
    private readonly Dictionary<GrainId, (IClientProxyObserver Observer, List<ClientProxyOutcome> Outcomes)> _outcomes = [];
    private bool _notifyScheduled;

    // Requests waiting for this turn to end, by replica: they leave together (SubmitBatch).
    private List<PendingRequest>[]? _outbox;
    private bool _flushScheduled;

    // The newest view each replica's verified replies reported. The primary is taken from the
    // view f+1 of them reached, so that f Byzantine replicas cannot steer the first send of every
    // request away from it (they could only cost each request a retransmission interval).
    private long[]? _replicaViews;
    private int _likelyPrimary;

    // Which fault domains have a silo (null where MinBFT's placement is not set up).
    private FaultDomainMembership? _domains;

    // Completes when this silo starts shutting down. Requests in flight then fail at once: the
    // silo would otherwise wait for their Submit calls, while the replies already go to the
    // proxy's next activation. The caller retries the same request (safe: replicas execute a seq once and
    // resend the cached reply).
    private readonly TaskCompletionSource _siloStopping = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private CancellationTokenRegistration _stoppingRegistration;

    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        if (services.GetService<IHostApplicationLifetime>() is { } lifetime)
            _stoppingRegistration = lifetime.ApplicationStopping.Register(static s => ((TaskCompletionSource)s!).TrySetResult(), _siloStopping);
        _domains = FaultDomainMembership.TryCreate(services);
        return Task.CompletedTask;
    }

    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        _stoppingRegistration.Dispose();
        // Requests still here lose their replies (they go to the next activation): tell their
        // clients now, so they resend at once instead of after their timeout. Sent right here:
        // nothing is scheduled on an activation that is going away.
        _notifyScheduled = true;
        foreach (var pending in _pending.Values.ToArray()) Finish(pending, null, $"the client proxy deactivated ({reason.ReasonCode}); retry the same request");
        SendOutcomes();
        return Task.CompletedTask;
    }

    public async Task Submit(Request[] requests, TimeSpan timeout, IClientProxyObserver observer)
    {
        // A malformed call is refused as a whole and changes nothing; a bad request in a good call
        // only gets its own failed outcome, so the requests batched with it still go through.
        if (requests is null || requests.Length == 0 || requests.Length > MessageLimits.MaxBatchSize)
            throw new ArgumentException($"a submission carries 1 to {MessageLimits.MaxBatchSize} requests, not {requests?.Length ?? 0}", nameof(requests));
        var nullAt = Array.IndexOf(requests, null);
        if (nullAt >= 0) throw new ArgumentException($"request {nullAt} is null", nameof(requests));
        // Bounded in bytes as well (the SDK cuts its calls the same way): 1,024 requests of 64 KiB
        // would be one 64 MiB message.
        if (MessageLimits.BatchBytes(requests) is var bytes && bytes > MessageLimits.MaxDeliveryBytes)
            throw new ArgumentException($"a submission carries at most {MessageLimits.MaxDeliveryBytes} bytes of requests, not {bytes}", nameof(requests));
        ArgumentNullException.ThrowIfNull(observer);
        CheckTimeout(timeout);
        _submits++;
        // The SDK's request spans, by index (MinBftTracing.RequestLinksKey): each request's proxy
        // span continues its own trace, since this call belongs to no single request.
        var links = RequestContext.Get(MinBftTracing.RequestLinksKey) is string[] l && l.Length == requests.Length ? l : null;
        var admitted = new List<Task>(requests.Length);
        for (var i = 0; i < requests.Length; i++)
        {
            if (Admit(requests[i], timeout, observer, links?[i]) is { } pending) admitted.Add(pending.Done.Task);
        }
        // Returns when every admitted request has its outcome (each has a deadline, so this ends):
        // a caller whose call fails instead learns that its missing outcomes will not come.
        if (admitted.Count > 0) await Task.WhenAll(admitted);
    }

    /// <summary>Starts tracking <paramref name="request"/>, or joins the copy already in flight; null
    /// when it was refused (its outcome is already on its way to <paramref name="observer"/>).</summary>
    private PendingRequest? Admit(Request request, TimeSpan timeout, IClientProxyObserver observer, string? link)
    {
        // The signature is checked only once the request has waited a retransmission interval
        // without a quorum: every replica verifies it anyway, and a third check on every request
        // cost the silo one more Ed25519 verification per operation.
        if (RequestVerifier.ExplainShape(request) is { } invalid) return Refuse(request, observer, "invalid request: " + invalid);
        if (_siloStopping.Task.IsCompleted)
        {
            DeactivateOnIdle();
            return Refuse(request, observer, "the client proxy's silo is shutting down; retry the same request");
        }
        var digest = MessageEncoding.RequestDigest(request);
        var key = (request.ClientId, request.Seq);
        var clock = silo.Clock;
        if (_pending.TryGetValue(key, out var pending))
        {
            // The same request again (a retry by the caller) shares the replies collected so far.
            if (!pending.Digest.AsSpan().SequenceEqual(digest))
                return Refuse(request, observer, $"another request with seq {request.Seq} is in flight for this client");
            pending.Observer = observer;
            var wanted = clock.GetElapsedTime(pending.Started) + timeout;
            if (wanted > pending.Timeout) pending.Timeout = wanted;
        }
        else
        {
            if (_pending.Count >= silo.Options.MaxRequestsPerClientProxy)
                return Refuse(request, observer, $"{_pending.Count} requests are in flight at this client proxy; the limit is {silo.Options.MaxRequestsPerClientProxy}");
            // Replies come back here: the hint is outside the request's signature and digest.
            pending = new PendingRequest(request with { ReplyTo = this.GetPrimaryKeyString() }, digest, observer, clock.GetTimestamp(), timeout);
            _pending.Add(key, pending);
        }
        StartSpan(pending, link);

        // The primary first; every replica from the first retransmission on (a Byzantine primary
        // could ignore a request only it knows of, and backups need it to notice that and forward
        // it, or to change the view). A retry of a request in flight goes to every replica at once.
        Send(pending, toAll: pending.Sent);
        if (!pending.Sent)
        {
            pending.Sent = true;
            _ = TrackAsync(pending);
        }
        return pending;
    }

    /// <summary>Resends the request to every replica after <see cref="MinBftOptions.ClientRetransmitInterval"/>,
    /// then at doubling intervals up to <see cref="MinBftOptions.ClientRetransmitMaxInterval"/>, until it
    /// completes, its timeout passes or the silo stops.</summary>
    private async Task TrackAsync(PendingRequest pending)
    {
        var clock = silo.Clock;
        // Resends back off exponentially: at a fixed interval, a burst the cluster orders slowly
        // (100 requests of 60 KB on a loaded machine) was resent faster than the replicas could
        // take it in, and nothing got ordered at all.
        var backoff = silo.Options.ClientRetransmitInterval;
        while (!pending.Done.Task.IsCompleted)
        {
            var remaining = pending.Timeout - clock.GetElapsedTime(pending.Started);
            if (remaining <= TimeSpan.Zero)
            {
                LogTimedOut(logger, pending.Request.ClientId, pending.Request.Seq, pending.Replies.Count, pending.Timeout);
                Finish(pending, null,
                    $"no {silo.Manifest.ReplyQuorum} matching replies within {pending.Timeout} ({pending.Replies.Count} valid replies received)", timedOut: true);
                return;
            }
            // The wait up to the deadline is the last: no resend at the moment of timing out.
            var last = remaining <= backoff;
            var wait = last ? remaining : backoff;
            await Task.WhenAny(pending.Done.Task, Task.Delay(wait, clock), _siloStopping.Task);
            if (pending.Done.Task.IsCompleted) return;
            if (_siloStopping.Task.IsCompleted)
            {
                // Leave as soon as no call is running, so the retry reaches an activation elsewhere.
                DeactivateOnIdle();
                Finish(pending, null, "the client proxy's silo is shutting down; retry the same request");
                return;
            }
            if (!pending.SignatureChecked)
            {
                pending.SignatureChecked = true;
                if (RequestVerifier.Explain(pending.Request) is { } refused)
                {
                    Finish(pending, null, "invalid request: " + refused);
                    return;
                }
            }
            // After the last wait the loop's top ends it (unless a retry extended the timeout).
            if (last) continue;
            Send(pending, toAll: true);
            backoff = backoff * 2 < silo.Options.ClientRetransmitMaxInterval ? backoff * 2 : silo.Options.ClientRetransmitMaxInterval;
        }
    }

    public async Task<ClientSessionAccept[]> OpenSessions(ClientSessionOffer offer, TimeSpan timeout)
    {
        if (MessageLimits.CheckSessionOffer(offer) is { } invalid) throw new ArgumentException("invalid session offer: " + invalid, nameof(offer));
        CheckTimeout(timeout);
        // Each replica on its own: one that is down or slow leaves its MAC slot empty (the
        // client's requests are then checked by signature there), it does not hold up the rest.
        var calls = Enumerable.Range(0, silo.Manifest.N)
            .Select(i => Replicas[i].OpenClientSession(offer).WaitAsync(timeout, silo.Clock))
            .ToArray();
        try
        {
            await Task.WhenAll(calls);
        }
        catch (Exception)
        {
            // Some replicas did not answer; the others' accepts are still returned.
        }
        return calls.Where(c => c.IsCompletedSuccessfully && c.Result is not null).Select(c => c.Result!).ToArray();
    }

    public Task DeliverReplies(Reply[] replies)
    {
        // Never throws: replies come from replicas, any of which may be Byzantine.
        if (replies is null || replies.Length > MessageLimits.MaxRepliesPerDelivery)
        {
            Ignore("Malformed");
            return Task.CompletedTask;
        }
        foreach (var reply in replies)
            if (Accept(reply) is { } reason) Ignore(reason);
        return Task.CompletedTask;
    }

    /// <summary>Counts one reply toward its request's quorum; null, or why it was ignored.</summary>
    private string? Accept(Reply reply)
    {
        if (MessageLimits.CheckReply(reply) is not null) return "Malformed";
        if (reply.ReplicaId < 0 || reply.ReplicaId >= silo.Manifest.N) return "UnknownReplica";
        if (!_pending.TryGetValue((reply.ClientId, reply.Seq), out var pending)) return "NotPending";
        if (pending.Replies.ContainsKey(reply.ReplicaId)) return "DuplicateReplica";
        // A result for another operation under this seq is no answer to this request.
        if (!pending.Digest.AsSpan().SequenceEqual(reply.RequestDigest)) return "WrongRequest";
        // Checked last: it is the expensive check (once per replica and batch), and everything above is free.
        if (!silo.Replies.Verify(reply)) return "InvalidSignature";

        // One reply per replica (the first valid one): a Byzantine replica gets one vote, whatever it sends.
        pending.Replies.Add(reply.ReplicaId, reply);
        _accepted++;
        NoteView(reply.ReplicaId, reply.View);
        var matching = pending.Replies.Values
            .Where(r => r.Status == reply.Status && r.Position == reply.Position && r.Result.AsSpan().SequenceEqual(reply.Result))
            .OrderBy(r => r.ReplicaId)
            .ToArray();
        if (matching.Length >= silo.Manifest.ReplyQuorum)
        {
            Finish(pending, matching, null);
            _completed++;
        }
        return null;
    }

    public Task<ClientProxyStatus> GetStatus() =>
        Task.FromResult(new ClientProxyStatus(_pending.Count, _completed, _accepted, new Dictionary<string, long>(_ignored, StringComparer.Ordinal), _submits, _notifications));

    /// <summary>Ends a request here: no longer in flight, its outcome on its way to the observer.</summary>
    private void Finish(PendingRequest pending, Reply[]? replies, string? failure, bool timedOut = false)
    {
        if (!pending.Done.TrySetResult()) return;
        var key = (pending.Request.ClientId, pending.Request.Seq);
        if (_pending.TryGetValue(key, out var current) && ReferenceEquals(current, pending)) _pending.Remove(key);
        StopSpans(pending, answered: replies is not null);
        Notify(pending.Observer, new ClientProxyOutcome(pending.Request.ClientId, pending.Request.Seq, replies, failure, timedOut));
    }

    private PendingRequest? Refuse(Request request, IClientProxyObserver observer, string why)
    {
        Notify(observer, new ClientProxyOutcome(request.ClientId ?? "", request.Seq, null, why));
        return null;
    }

    /// <summary>
    /// Queues an outcome for its observer. Like requests towards the replicas, outcomes leave
    /// once the current turn yields: one call per observer for everything completed meanwhile
    /// (typically a whole executed batch's requests, since their replies arrive together).
    /// </summary>
    private void Notify(IClientProxyObserver observer, ClientProxyOutcome outcome)
    {
        var id = observer.GetGrainId();
        if (!_outcomes.TryGetValue(id, out var queued)) _outcomes[id] = queued = (observer, []);
        queued.Outcomes.Add(outcome);
        if (_notifyScheduled) return;
        _notifyScheduled = true;
        _ = NotifyAsync();
    }

    private async Task NotifyAsync()
    {
        await Task.Yield();
        _notifyScheduled = false;
        SendOutcomes();
    }

    private void SendOutcomes()
    {
        // Outcomes of many requests: the call belongs to no single request's trace.
        if (Activity.Current is not null) Activity.Current = null;
        RequestContext.Clear();
        foreach (var (observer, outcomes) in _outcomes.Values)
        {
            for (var start = 0; start < outcomes.Count; start += MessageLimits.MaxBatchSize)
            {
                var chunk = outcomes.GetRange(start, Math.Min(MessageLimits.MaxBatchSize, outcomes.Count - start)).ToArray();
                _notifications++;
                try
                {
                    // One-way: an observer that is gone (its client disposed or disconnected)
                    // costs a dropped message, never a wait; its requests' Submit calls still end.
                    var call = observer.Completed(chunk);
                    if (!call.IsCompletedSuccessfully) _ = call.ContinueWith(static t => _ = t.Exception, TaskScheduler.Default);
                }
                catch (Exception e)
                {
                    LogNotifyFailed(logger, this.GetPrimaryKeyString(), chunk.Length, e.GetType().Name, e.Message);
                }
            }
        }
        _outcomes.Clear();
    }

    private static void StartSpan(PendingRequest pending, string? link)
    {
        if (!MinBftTracing.Source.HasListeners()) return;
        // The span outlives this call: keep it out of Activity.Current, which the caller's context owns.
        var previous = Activity.Current;
        var span = link is not null && ActivityContext.TryParse(link, null, out var parent)
            ? MinBftTracing.Source.StartActivity(MinBftTracing.ProxySpan, ActivityKind.Server, parent)
            : MinBftTracing.Source.StartActivity(MinBftTracing.ProxySpan, ActivityKind.Server);
        Activity.Current = previous;
        if (span is null) return;
        if (span.IsAllDataRequested)
        {
            var clientId = pending.Request.ClientId;
            span.SetTag(MinBftTracing.ClientTag, clientId.Length > 12 ? clientId[..12] : clientId);
            span.SetTag(MinBftTracing.SeqTag, pending.Request.Seq);
        }
        (pending.Spans ??= []).Add(span);
        // The replicas' batch spans link to the span of the submission that first sent it.
        if (span.Recorded && pending.Trace == default) pending.Trace = span.Context;
    }

    private static void StopSpans(PendingRequest pending, bool answered)
    {
        if (pending.Spans is not { } spans) return;
        var previous = Activity.Current;
        foreach (var span in spans)
        {
            if (span.IsAllDataRequested)
            {
                span.SetTag(MinBftTracing.RepliesTag, pending.Replies.Count);
                if (!answered) span.SetStatus(ActivityStatusCode.Error);
            }
            span.Stop();
        }
        Activity.Current = previous;
        pending.Spans = null;
    }

    private static void CheckTimeout(TimeSpan timeout)
    {
        if (timeout <= TimeSpan.Zero || timeout > MaxTimeout)
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, $"timeout must be in (0, {MaxTimeout}]");
    }

    /// <summary>Keeps <see cref="_likelyPrimary"/>: the primary of the newest view at least f+1
    /// replicas' verified replies reported (worked out when a view rises, not per send).</summary>
    private void NoteView(int replica, long view)
    {
        _replicaViews ??= new long[silo.Manifest.N];
        if (view <= _replicaViews[replica]) return;
        _replicaViews[replica] = view;
        var views = (long[])_replicaViews.Clone();
        Array.Sort(views);
        _likelyPrimary = (int)(views[views.Length - silo.Manifest.ReplyQuorum] % silo.Manifest.N);
    }

    private void Send(PendingRequest request, bool toAll)
    {
        _outbox ??= Enumerable.Range(0, silo.Manifest.N).Select(_ => new List<PendingRequest>()).ToArray();
        // The likely primary's fault domain has no silo: its copy would be lost, and the backups
        // would first hear of the request at the retransmission, a ClientRetransmitInterval later.
        // Sent to every replica now, it starts their request timers (rule 7.1) at once, and the
        // view change after a primary's silo stopped comes that much sooner.
        if (!toAll && _domains?.HasActiveSilo(_likelyPrimary) == false) toAll = true;
        if (toAll)
            foreach (var queue in _outbox) queue.Add(request);
        else
            _outbox[_likelyPrimary].Add(request);
        if (_flushScheduled) return;
        _flushScheduled = true;
        _ = FlushAsync();
    }

    /// <summary>
    /// Sends what the outbox holds once the current turn yields: calls already queued at this
    /// activation run first and add their requests, so a busy proxy sends one call per replica for
    /// many requests, and an idle one adds no delay.
    /// </summary>
    private async Task FlushAsync()
    {
        await Task.Yield();
        _flushScheduled = false;
        // A batch belongs to no single request's trace: drop the context of the call that
        // scheduled this flush (its span, and the trace and values in Orleans' request context).
        if (Activity.Current is not null) Activity.Current = null;
        RequestContext.Clear();
        for (var replica = 0; replica < _outbox!.Length; replica++)
        {
            var queue = _outbox[replica];
            // Split by count and by bytes: 1,024 requests of 64 KiB would be one 64 MiB call, and a
            // replica refuses a SubmitBatch over MessageLimits.MaxDeliveryBytes.
            foreach (var (start, count) in DeliveryRuns.Split(queue.Count, i => MessageLimits.RequestBytes(queue[i].Request),
                         MessageLimits.MaxBatchSize, MessageLimits.MaxDeliveryBytes))
            {
                var batch = new Request[count];
                string[]? links = null;
                for (var i = 0; i < count; i++)
                {
                    var pending = queue[start + i];
                    batch[i] = pending.Request;
                    if (pending.Trace != default) (links ??= new string[count])[i] = MinBftTracing.ToTraceparent(pending.Trace);
                }
                if (links is not null) RequestContext.Set(MinBftTracing.RequestLinksKey, links);
                // One-way: a replica that is down or slow must not hold up the others; TrackAsync
                // resends until f+1 replies agree.
                var call = count == 1 ? Replicas[replica].Submit(batch[0]) : Replicas[replica].SubmitBatch(batch);
                if (links is not null) RequestContext.Remove(MinBftTracing.RequestLinksKey);
                if (!call.IsCompletedSuccessfully) _ = call.ContinueWith(static t => _ = t.Exception, TaskScheduler.Default);
            }
            queue.Clear();
        }
    }

    private void Ignore(string reason)
    {
        _ignored[reason] = _ignored.GetValueOrDefault(reason) + 1;
        LogIgnored(logger, this.GetPrimaryKeyString(), reason);
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Client proxy {Proxy} ignored a reply: {Reason}")]
    private static partial void LogIgnored(ILogger logger, string proxy, string reason);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Client proxy {Proxy}: reporting {Count} outcomes failed: {ErrorType}: {Reason}")]
    private static partial void LogNotifyFailed(ILogger logger, string proxy, int count, string errorType, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Client {ClientId}: request {Seq} timed out after {Timeout} with {Replies} valid replies")]
    private static partial void LogTimedOut(ILogger logger, string clientId, ulong seq, int replies, TimeSpan timeout);

    private sealed class PendingRequest(Request request, byte[] digest, IClientProxyObserver observer, long started, TimeSpan timeout)
    {
        public Request Request { get; } = request;
        public bool SignatureChecked { get; set; }
        public bool Sent { get; set; }
        public byte[] Digest { get; } = digest;
        public Dictionary<int, Reply> Replies { get; } = [];

        /// <summary>Completes with the request's outcome (replies, timeout, refusal).</summary>
        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>Where its outcome goes: the observer of the latest submission.</summary>
        public IClientProxyObserver Observer { get; set; } = observer;

        /// <summary>Its clock's timestamp when first admitted, and how long after that it may wait
        /// (extended by a later submission of the same request).</summary>
        public long Started { get; } = started;
        public TimeSpan Timeout { get; set; } = timeout;

        /// <summary>A proxy span per submission, open until the outcome (null when not traced).</summary>
        public List<Activity>? Spans { get; set; }

        /// <summary>The proxy span that first sent it (default when not traced).</summary>
        public ActivityContext Trace { get; set; }
    }
}
