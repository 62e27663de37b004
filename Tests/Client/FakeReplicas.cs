using System.Collections.Concurrent;
using MinBft.Application;
using MinBft.Client;
using MinBft.Crypto;
using MinBft.Encoding;
using MinBft.Hosting;
using MinBft.Messages;
using Org.BouncyCastle.Security;

namespace MinBft.Tests.Client;

/// <summary>
/// Replica signing keys and a correct reply factory for n = 2f+1 replicas, without any protocol:
/// enough to test what the client accepts and rejects.
/// </summary>
internal sealed class FakeReplicas
{
    private static readonly SecureRandom Random = new();

    public FakeReplicas(int f)
    {
        F = f;
        Keys = Enumerable.Range(0, N).Select(_ => Ed25519KeyPair.Generate(Random)).ToArray();
        KeyRing = new ReplicaKeyRing(Keys.Select(k => k.PublicKey).ToArray());
        Verifier = new ReplyVerifier(N, f, KeyRing);
        Manifest = ClusterManifest.Create(f, UsigScheme.Ed25519, Keys.Select((k, i) =>
            new ReplicaIdentity(i, k.PublicKey, Ed25519KeyPair.Generate(Random).PublicKey, DeploymentKeys.InitialEpoch)));
    }

    /// <summary>A manifest listing these replicas' signing keys (and unused USIG keys).</summary>
    public ClusterManifest Manifest { get; }

    public int F { get; }
    public int N => 2 * F + 1;
    public Ed25519KeyPair[] Keys { get; }
    public ReplicaKeyRing KeyRing { get; }
    public ReplyVerifier Verifier { get; }

    public static ClientSigner NewClient() => new(Ed25519KeyPair.Generate(Random));

    /// <summary>Replica <paramref name="replica"/>'s correctly signed reply.</summary>
    public Reply Reply(int replica, string clientId, ulong seq, byte[] result, long view = 0) =>
        SignAs(Keys[replica], replica, clientId, seq, new byte[MessageLimits.DigestLength], result, view);

    /// <summary>Replica <paramref name="replica"/>'s correctly signed reply to <paramref name="request"/>,
    /// decided at <paramref name="position"/> with <paramref name="status"/>.</summary>
    public Reply Reply(int replica, Request request, byte[] result, long view = 0, ReplyStatus status = ReplyStatus.Executed, ulong position = 0) =>
        SignAs(Keys[replica], replica, request, result, view, status, position);

    /// <summary>A reply to <paramref name="request"/> claiming to be from <paramref name="claimedReplica"/>, signed with <paramref name="key"/>.</summary>
    public static Reply SignAs(Ed25519KeyPair key, int claimedReplica, Request request, byte[] result, long view = 0,
        ReplyStatus status = ReplyStatus.Executed, ulong position = 0) =>
        SignAs(key, claimedReplica, request.ClientId, request.Seq, MessageEncoding.RequestDigest(request), result, view, status, position);

    /// <summary>A reply claiming to be from <paramref name="claimedReplica"/>, signed with <paramref name="key"/> as a batch of one.</summary>
    public static Reply SignAs(Ed25519KeyPair key, int claimedReplica, string clientId, ulong seq, byte[] requestDigest, byte[] result, long view = 0,
        ReplyStatus status = ReplyStatus.Executed, ulong position = 0) =>
        ReplyBatchSigner.Sign(new Ed25519ReplicaSigner(key), claimedReplica, [new ReplyContent(view, clientId, seq, requestDigest, result, status, position)])[0];
}

/// <summary>
/// A client proxy that "replicates" a key-value state machine in memory and answers each
/// submitted request on its own, through the observer, with the replies
/// <see cref="FakeClusterProxies.Respond"/> builds (by default: every replica's correct reply).
/// Records the requests and Submit calls it saw and checks the one-outstanding-request-per-client rule.
/// Probes (empty operations) are requests like any other here: recorded, counted, answered.
/// </summary>
internal sealed class FakeProxy : IClientProxyGrain
{
    private readonly FakeClusterProxies _owner;

    public FakeProxy(FakeClusterProxies owner, string key)
    {
        _owner = owner;
        Key = key;
    }

    public string Key { get; }

    public Task Submit(Request[] requests, TimeSpan timeout, IClientProxyObserver observer)
    {
        _owner.Submits.Enqueue(requests);
        _owner.Observers.Enqueue(observer);
        if (_owner.RefuseSubmit is { } refusal) return Task.FromException(refusal);
        foreach (var request in requests) _owner.Requests.Enqueue(request);
        // Like the real proxy: returns once every request has its outcome.
        return _owner.DeliverTogether ? AnswerTogetherAsync(requests, observer) : Task.WhenAll(requests.Select(r => AnswerAsync(r, observer)));
    }

    private async Task AnswerTogetherAsync(Request[] requests, IClientProxyObserver observer)
    {
        var outcomes = await Task.WhenAll(requests.Select(r => OutcomeAsync(r)));
        foreach (var outcome in outcomes) _owner.Outcomes.Enqueue(outcome);
        await observer.Completed(outcomes);
    }

    private async Task AnswerAsync(Request request, IClientProxyObserver observer)
    {
        var outcome = await OutcomeAsync(request);
        _owner.Outcomes.Enqueue(outcome);
        await observer.Completed([outcome]);
    }

    private async Task<ClientProxyOutcome> OutcomeAsync(Request request)
    {
        await Task.Yield();
        var outstanding = _owner.Outstanding.GetOrAdd(request.ClientId, _ => new IntBox());
        if (Interlocked.Increment(ref outstanding.Value) > 1) _owner.Violations.Enqueue($"two outstanding requests for {request.ClientId}");
        ClientProxyOutcome outcome;
        try
        {
            var attempt = _owner.Attempts.AddOrUpdate(request.Seq + ":" + request.ClientId, 1, (_, n) => n + 1);
            if (_owner.Delay is { } delay) await Task.Delay(delay);
            outcome = new ClientProxyOutcome(request.ClientId, request.Seq, await _owner.Respond(request, attempt), null);
        }
        catch (TimeoutException e)
        {
            outcome = new ClientProxyOutcome(request.ClientId, request.Seq, null, e.Message, TimedOut: true);
        }
        catch (Exception e)
        {
            outcome = new ClientProxyOutcome(request.ClientId, request.Seq, null, $"{e.GetType().Name}: {e.Message}");
        }
        finally
        {
            Interlocked.Decrement(ref outstanding.Value);
        }
        return outcome;
    }

    public Task<ClientSessionAccept[]> OpenSessions(ClientSessionOffer offer, TimeSpan timeout)
    {
        lock (_owner.Sessions)
            return Task.FromResult(_owner.Sessions.Select(s => s.Open(offer)).OfType<ClientSessionAccept>().ToArray());
    }

    public Task DeliverReplies(Reply[] replies) => Task.CompletedTask;

    public Task<ClientProxyStatus> GetStatus() => Task.FromResult(new ClientProxyStatus(0, 0, 0, []));
}

internal sealed class FakeClusterProxies : IClientProxyLink
{
    private readonly IStateMachine _state;
    private readonly Dictionary<string, (ulong Seq, byte[] Result, ulong Position)> _executed = new(StringComparer.Ordinal);
    private ulong _position;
    private readonly ConcurrentDictionary<string, FakeProxy> _proxies = new(StringComparer.Ordinal);

    /// <param name="state">The service the fake replicas run; default the key-value sample.</param>
    public FakeClusterProxies(FakeReplicas replicas, IStateMachine? state = null)
    {
        _state = state ?? new KeyValueStateMachine();
        Replicas = replicas;
        Respond = (request, _) => Task.FromResult(AllCorrect(request));
        Sessions = Enumerable.Range(0, replicas.N).Select(i => new ReplicaClientSessions(i, new Ed25519ReplicaSigner(replicas.Keys[i]))).ToArray();
    }

    /// <summary>Each fake replica's MAC sessions (lock the array to use them).</summary>
    public ReplicaClientSessions[] Sessions { get; }

    public FakeReplicas Replicas { get; }
    public ConcurrentQueue<Request> Requests { get; } = new();

    /// <summary>The requests of each Submit call, in arrival order.</summary>
    public ConcurrentQueue<Request[]> Submits { get; } = new();

    /// <summary>The observer each Submit call named.</summary>
    public ConcurrentQueue<IClientProxyObserver> Observers { get; } = new();

    /// <summary>Every outcome the proxies reported, in order.</summary>
    public ConcurrentQueue<ClientProxyOutcome> Outcomes { get; } = new();

    /// <summary>Report the outcomes of one Submit call in one observer call (as the real proxy
    /// does for requests its replicas executed together); otherwise each on its own.</summary>
    public bool DeliverTogether { get; set; }

    /// <summary>When set, every Submit call fails with it (the call itself, as a dead silo's would).</summary>
    public Exception? RefuseSubmit { get; set; }
    public ConcurrentQueue<string> Violations { get; } = new();
    public ConcurrentDictionary<string, IntBox> Outstanding { get; } = new(StringComparer.Ordinal);
    public ConcurrentDictionary<string, int> Attempts { get; } = new(StringComparer.Ordinal);
    public TimeSpan? Delay { get; set; }

    /// <summary>The proxy's answer to (request, attempt number).</summary>
    public Func<Request, int, Task<Reply[]>> Respond { get; set; }

    public IClientProxyGrain ProxyFor(string key) => _proxies.GetOrAdd(key, k => new FakeProxy(this, k));

    IClientProxyGrain IClientProxyLink.Proxy(string key) => ProxyFor(key);

    // In process: the observer is its own reference.
    public IClientProxyObserver CreateReference(IClientProxyObserver observer) => observer;

    public void DeleteReference(IClientProxyObserver reference) => DeletedReferences.Enqueue(reference);

    public ConcurrentQueue<IClientProxyObserver> DeletedReferences { get; } = new();

    /// <summary>
    /// The position of the replicated history decided last: every request the fake executes or
    /// expires takes the next one (a request answered again keeps its own). Set it to stand for
    /// other clients' requests decided meanwhile.
    /// </summary>
    public ulong Position
    {
        get
        {
            lock (_state) return _position;
        }
        set
        {
            lock (_state) _position = value;
        }
    }

    /// <summary>Executes the request once (exactly-once per client and seq) and returns its result.</summary>
    public byte[] Execute(Request request) => Decide(request).Result;

    /// <summary>
    /// Executes the request once (exactly-once per client and seq): its result and the position it
    /// was decided at. A probe (empty operation) takes a position and runs in no application.
    /// </summary>
    public (byte[] Result, ulong Position) Decide(Request request)
    {
        Assert.Null(RequestVerifier.Explain(request));
        // Every replica that holds a session for the client takes the request on its MAC.
        lock (Sessions)
            foreach (var replica in Sessions) Assert.True(replica.Verify(request));
        lock (_state)
        {
            if (_executed.TryGetValue(request.ClientId, out var last))
            {
                if (request.Seq == last.Seq) return (last.Result, last.Position);
                Assert.True(request.Seq > last.Seq, "client reused an old seq");
            }
            var position = NextPosition(request);
            var result = request.Operation.Length == 0 ? [] : _state.Apply(request.Operation);
            _executed[request.ClientId] = (request.Seq, result, position);
            return (result, position);
        }
    }

    // Under the state's lock. An honest client signs only positions already proven to it, so a
    // request always executes above its incarnation (CLIENT-SESSIONS-DESIGN.md, rule 1).
    private ulong NextPosition(Request request)
    {
        var position = ++_position;
        if (request.Incarnation >= position)
            Violations.Enqueue($"request {request.Seq} of {request.ClientId} signed incarnation {request.Incarnation}, decided at {position}");
        return position;
    }

    /// <summary>Every replica's correct reply: executed once, at its position.</summary>
    public Reply[] AllCorrect(Request request)
    {
        var (result, position) = Decide(request);
        return Enumerable.Range(0, Replicas.N).Select(i => Replicas.Reply(i, request, result, position: position)).ToArray();
    }

    /// <summary>
    /// Every replica's Expired reply, as for an identity whose record was evicted: the request
    /// does not run; it takes the next position, which the replies name.
    /// </summary>
    public Reply[] AllExpired(Request request)
    {
        Assert.Null(RequestVerifier.Explain(request));
        ulong position;
        lock (_state) position = NextPosition(request);
        return Enumerable.Range(0, Replicas.N).Select(i => Replicas.Reply(i, request, [], status: ReplyStatus.Expired, position: position)).ToArray();
    }

    public MinBftClient CreateClient(MinBftClientOptions? options = null, TimeProvider? time = null) =>
        new(this, Replicas.Verifier, options ?? new MinBftClientOptions { IdentityPoolSize = 4 }, timeProvider: time);
}

internal sealed class IntBox
{
    public int Value;
}

/// <summary>
/// An <see cref="IGrainFactory"/> that only knows client proxies and observer references, served by a
/// <see cref="FakeClusterProxies"/>: lets the SDK's public, grain-factory-based surface run
/// without a cluster.
/// </summary>
internal class FakeGrainFactory : System.Reflection.DispatchProxy
{
    private FakeClusterProxies? _cluster;

    public static IGrainFactory Create(FakeClusterProxies cluster)
    {
        var factory = Create<IGrainFactory, FakeGrainFactory>();
        ((FakeGrainFactory)(object)factory)._cluster = cluster;
        return factory;
    }

    protected override object? Invoke(System.Reflection.MethodInfo? targetMethod, object?[]? args)
    {
        if (targetMethod is { Name: nameof(IGrainFactory.GetGrain), IsGenericMethod: true }
            && targetMethod.GetGenericArguments()[0] == typeof(IClientProxyGrain)
            && args is [string key, ..])
        {
            return _cluster!.ProxyFor(key);
        }
        if (targetMethod is { Name: nameof(IGrainFactory.CreateObjectReference), IsGenericMethod: true } && args is [IClientProxyObserver observer])
            return _cluster!.CreateReference(observer);
        if (targetMethod is { Name: nameof(IGrainFactory.DeleteObjectReference), IsGenericMethod: true } && args is [IClientProxyObserver reference])
        {
            _cluster!.DeleteReference(reference);
            return null;
        }
        throw new NotSupportedException($"fake grain factory: {targetMethod}");
    }
}
