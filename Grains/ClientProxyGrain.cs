using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using MinBft.Crypto;
using MinBft.Encoding;
using MinBft.Hosting;
using MinBft.Messages;
using Orleans.Concurrency;
using Orleans.Placement;
using Request = MinBft.Messages.Request;

namespace MinBft;

/// <summary>
/// The proxy of one client (key = client id), placed on the silo that routes the client's
/// first call (usually its gateway: one hop less), which may be a silo of any fault domain or
/// one with none. It sends the client's signed
/// request to all n replicas, resends it while fewer than f+1 replicas agree, and returns f+1
/// matching replies. Every reply is checked (client id, seq, request digest, and its batch
/// root's signature under the manifest's key of the replica it names, once per batch for the
/// whole silo) and each replica counts once, so neither a forged reply nor a
/// Byzantine replica's different result can make up a quorum. The proxy itself is not trusted:
/// the SDK verifies the f+1 replies again.
/// Reentrant so that DeliverReply runs while Execute waits; per-client state is bounded by
/// <see cref="MinBftOptions.MaxRequestsPerClientProxy"/> requests of at most n replies each.
/// </summary>
[Reentrant]
[PreferLocalPlacement]
public sealed partial class ClientProxyGrain(MinBftSilo silo, IServiceProvider services, ILogger<ClientProxyGrain> logger) : Grain, IClientProxyGrain
{
    /// <summary>Longest wait a caller may ask for; longer would outlive any sensible call timeout.</summary>
    public static readonly TimeSpan MaxTimeout = TimeSpan.FromMinutes(10);

    private readonly Dictionary<ulong, PendingRequest> _pending = [];

    // Made once: GetGrain resolves the interface type on every call (a profile showed 5% of the
    // silo's CPU in that resolution when it ran per request).
    private IReplicaGrain[]? _replicas;

    private IReplicaGrain[] Replicas => _replicas ??= Enumerable.Range(0, silo.Manifest.N).Select(i => GrainFactory.GetGrain<IReplicaGrain>(i)).ToArray();
    private readonly Dictionary<string, long> _ignored = new(StringComparer.Ordinal);
    private long _completed;
    private long _accepted;

    // Completes when this silo starts shutting down. A waiting Execute then gives up at once:
    // the silo would otherwise wait for it, while the replies already go to the proxy's next
    // activation. The caller retries the same request (safe: replicas execute a seq once and
    // resend the cached reply).
    private readonly TaskCompletionSource _siloStopping = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private CancellationTokenRegistration _stoppingRegistration;

    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        if (services.GetService<IHostApplicationLifetime>() is { } lifetime)
            _stoppingRegistration = lifetime.ApplicationStopping.Register(static s => ((TaskCompletionSource)s!).TrySetResult(), _siloStopping);
        return Task.CompletedTask;
    }

    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        _stoppingRegistration.Dispose();
        return Task.CompletedTask;
    }

    public async Task<Reply[]> Execute(Request request, TimeSpan timeout)
    {
        // Bad input from the caller gets a clear error and changes nothing. The signature is
        // checked only once the request has waited a retransmission interval without a quorum:
        // every replica verifies it anyway, and a third check on every request cost the silo one
        // more Ed25519 verification per operation.
        if (RequestVerifier.ExplainShape(request) is { } invalid) throw new ArgumentException("invalid request: " + invalid, nameof(request));
        CheckCaller(request.ClientId, "request", nameof(request), timeout);

        var digest = MessageEncoding.RequestDigest(request);
        if (_pending.TryGetValue(request.Seq, out var pending))
        {
            // The same request again (a retry by the caller) shares the replies collected so far.
            if (!pending.Digest.AsSpan().SequenceEqual(digest))
                throw new ArgumentException($"another request with seq {request.Seq} is in flight for this client", nameof(request));
        }
        else
        {
            if (_pending.Count >= silo.Options.MaxRequestsPerClientProxy)
                throw new InvalidOperationException($"{_pending.Count} requests of this client are in flight; the limit is {silo.Options.MaxRequestsPerClientProxy}");
            pending = new PendingRequest(request, digest);
            _pending.Add(request.Seq, pending);
        }

        pending.Waiters++;
        var clock = silo.Clock;
        var started = clock.GetTimestamp();
        try
        {
            while (true)
            {
                // Every replica gets it, not only the primary: a Byzantine primary could ignore a
                // request only it knows of, and backups need it to notice that and forward it.
                SubmitToAll(pending.Request);
                var remaining = timeout - clock.GetElapsedTime(started);
                if (remaining <= TimeSpan.Zero) break;
                var wait = remaining < silo.Options.ClientRetransmitInterval ? remaining : silo.Options.ClientRetransmitInterval;
                await Task.WhenAny(pending.Done.Task, Task.Delay(wait, clock), _siloStopping.Task);
                if (pending.Done.Task.IsCompleted) return await pending.Done.Task;
                if (_siloStopping.Task.IsCompleted)
                {
                    // Leave as soon as no call is running, so the retry reaches an activation elsewhere.
                    DeactivateOnIdle();
                    throw new TimeoutException($"request {request.Seq}: the client proxy's silo is shutting down; retry the same request");
                }
                if (!pending.SignatureChecked)
                {
                    pending.SignatureChecked = true;
                    if (RequestVerifier.Explain(pending.Request) is { } refused)
                        throw new ArgumentException("invalid request: " + refused, nameof(request));
                }
                if (clock.GetElapsedTime(started) >= timeout) break;
            }
            LogTimedOut(logger, request.ClientId, request.Seq, pending.Replies.Count, timeout);
            throw new TimeoutException(
                $"request {request.Seq} of client {request.ClientId}: no {silo.Manifest.ReplyQuorum} matching replies within {timeout} " +
                $"({pending.Replies.Count} valid replies received)");
        }
        finally
        {
            if (--pending.Waiters == 0 && _pending.TryGetValue(request.Seq, out var current) && ReferenceEquals(current, pending))
                _pending.Remove(request.Seq);
        }
    }

    public async Task<ClientSessionAccept[]> OpenSessions(ClientSessionOffer offer, TimeSpan timeout)
    {
        if (MessageLimits.CheckSessionOffer(offer) is { } invalid) throw new ArgumentException("invalid session offer: " + invalid, nameof(offer));
        CheckCaller(offer.ClientId, "offer", nameof(offer), timeout);
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

    public Task DeliverReply(Reply reply)
    {
        // Never throws: replies come from replicas, any of which may be Byzantine.
        if (MessageLimits.CheckReply(reply) is not null) return Ignore("Malformed");
        if (!string.Equals(reply.ClientId, this.GetPrimaryKeyString(), StringComparison.Ordinal)) return Ignore("WrongClient");
        if (reply.ReplicaId < 0 || reply.ReplicaId >= silo.Manifest.N) return Ignore("UnknownReplica");
        if (!_pending.TryGetValue(reply.Seq, out var pending) || pending.Done.Task.IsCompleted) return Ignore("NotPending");
        if (pending.Replies.ContainsKey(reply.ReplicaId)) return Ignore("DuplicateReplica");
        // A result for another operation under this seq is no answer to this request.
        if (!pending.Digest.AsSpan().SequenceEqual(reply.RequestDigest)) return Ignore("WrongRequest");
        // Checked last: it is the expensive check (once per replica and batch), and everything above is free.
        if (!silo.Replies.Verify(reply)) return Ignore("InvalidSignature");

        // One reply per replica (the first valid one): a Byzantine replica gets one vote, whatever it sends.
        pending.Replies.Add(reply.ReplicaId, reply);
        _accepted++;
        var matching = pending.Replies.Values
            .Where(r => r.Result.AsSpan().SequenceEqual(reply.Result))
            .OrderBy(r => r.ReplicaId)
            .ToArray();
        if (matching.Length >= silo.Manifest.ReplyQuorum && pending.Done.TrySetResult(matching)) _completed++;
        return Task.CompletedTask;
    }

    public Task<ClientProxyStatus> GetStatus() =>
        Task.FromResult(new ClientProxyStatus(_pending.Count, _completed, _accepted, new Dictionary<string, long>(_ignored, StringComparer.Ordinal)));

    // What every caller input must satisfy: this proxy's own client, and a sensible timeout.
    private void CheckCaller(string clientId, string what, string paramName, TimeSpan timeout)
    {
        if (!string.Equals(clientId, this.GetPrimaryKeyString(), StringComparison.Ordinal))
            throw new ArgumentException($"the {what}'s client id is not this proxy's client", paramName);
        if (timeout <= TimeSpan.Zero || timeout > MaxTimeout)
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, $"timeout must be in (0, {MaxTimeout}]");
    }

    private void SubmitToAll(Request request)
    {
        for (var i = 0; i < silo.Manifest.N; i++)
        {
            // One-way: a replica that is down or slow must not hold up the others; the loop in
            // Execute resends until f+1 replies agree.
            var call = Replicas[i].Submit(request);
            if (!call.IsCompletedSuccessfully) _ = call.ContinueWith(static t => _ = t.Exception, TaskScheduler.Default);
        }
    }

    private Task Ignore(string reason)
    {
        _ignored[reason] = _ignored.GetValueOrDefault(reason) + 1;
        LogIgnored(logger, this.GetPrimaryKeyString(), reason);
        return Task.CompletedTask;
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Client proxy {ClientId} ignored a reply: {Reason}")]
    private static partial void LogIgnored(ILogger logger, string clientId, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Client proxy {ClientId}: request {Seq} timed out after {Timeout} with {Replies} valid replies")]
    private static partial void LogTimedOut(ILogger logger, string clientId, ulong seq, int replies, TimeSpan timeout);

    private sealed class PendingRequest(Request request, byte[] digest)
    {
        public Request Request { get; } = request;
        public bool SignatureChecked { get; set; }
        public byte[] Digest { get; } = digest;
        public Dictionary<int, Reply> Replies { get; } = [];
        public TaskCompletionSource<Reply[]> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public int Waiters { get; set; }
    }
}
