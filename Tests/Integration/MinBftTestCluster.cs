using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using MinBft.Application;
using MinBft.Crypto;
using MinBft.Hosting;
using MinBft.Messages;
using Orleans;
using Orleans.Configuration;
using Orleans.Hosting;
using Orleans.Runtime;
using Request = MinBft.Messages.Request;
using Orleans.TestingHost;
using Org.BouncyCastle.Security;
using Xunit.Abstractions;

namespace MinBft.Tests.Integration;

/// <summary>How to build one test deployment.</summary>
internal sealed record ClusterSetup
{
    public int F { get; init; } = 1;
    public UsigScheme Scheme { get; init; } = UsigScheme.Ed25519;

    /// <summary>Extra silos without a fault domain (gateways that can host client proxies).</summary>
    public int GatewaySilos { get; init; }

    /// <summary>SQLite in a temp directory (survives silo restarts); false: memory storage named "minbft".</summary>
    public bool Sqlite { get; init; } = true;

    /// <summary>
    /// Redis storage instead of SQLite: fault domain i's connection string is element i (one
    /// Redis server per domain, or one shared; the cluster's service id keeps runs apart).
    /// </summary>
    public IReadOnlyList<string>? RedisStorage { get; init; }

    public bool UsigServesOnlyItsReplica { get; init; } = true;

    /// <summary>Every start of a domain's silo may initialise its USIG for the manifest's epoch
    /// (MinBft:Usig:InitializeEpoch): a test deployment is always a first start.</summary>
    public bool InitializeUsig { get; init; } = true;

    public int CheckpointInterval { get; init; } = ClusterManifest.DefaultCheckpointInterval;
    public int Watermark { get; init; } = ClusterManifest.DefaultWatermark;

    /// <summary>Most client records the replicated state keeps (manifest constant); set low to exercise eviction.</summary>
    public int MaxClientRecords { get; init; } = ClusterManifest.DefaultMaxClientRecords;

    /// <summary>
    /// How long a backup waits for a known request before suspecting the primary, on the grains'
    /// <see cref="TestClock"/>. Longer than any test: on a loaded machine any real-time timeout
    /// short enough to matter made backups suspect correct primaries now and then (views thrashed
    /// with 500 ms, a spurious view change with 10 s). A test that needs suspicion makes the
    /// timers expire when it chooses (<see cref="MinBftTestCluster.ExpireRequestTimersAsync"/>).
    /// </summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>Extra per-silo configuration: (fault domain or null, silo builder).</summary>
    public Action<int?, ISiloBuilder>? ConfigureSilo { get; init; }

    /// <summary>Extra MinBFT options of every silo, after the test defaults.</summary>
    public Action<MinBftOptions>? ConfigureMinBft { get; init; }
}

/// <summary>
/// An in-process MinBFT deployment: silo k (k &lt; n) is fault domain k with its own keys and
/// store; further silos are gateways. Keys come from <see cref="DeploymentKeys.Generate"/> in a
/// temp directory, exactly as a real deployment's would.
/// </summary>
internal sealed class MinBftTestCluster : IAsyncDisposable
{
    public static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    /// <summary>The longest a wait on replica statuses may take while the replicas still make progress.</summary>
    public static readonly TimeSpan MaxWait = TimeSpan.FromSeconds(120);
    public static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(20);
    public static readonly TimeSpan AttemptTimeout = TimeSpan.FromSeconds(5);

    private readonly ITestOutputHelper _output;
    private readonly Stopwatch _clock = Stopwatch.StartNew();

    private MinBftTestCluster(ClusterSetup setup, ITestOutputHelper output)
    {
        Setup = setup;
        _output = output;
        Directory = Path.Combine(Path.GetTempPath(), "minbft-it-" + Guid.NewGuid().ToString("N"));
        Manifest = DeploymentKeys.Generate(setup.F, Directory, setup.Scheme, setup.CheckpointInterval, setup.Watermark, setup.MaxClientRecords);
        Trace = new ClusterTrace(_clock);
        Clock = new TestClock();
        Cluster = null!;
    }

    public ClusterSetup Setup { get; }
    public string Directory { get; }
    public ClusterManifest Manifest { get; }
    public InProcessTestCluster Cluster { get; private set; }
    public int N => Manifest.N;
    public IGrainFactory Grains => Cluster.Client;

    /// <summary>Every call a replica or USIG grain served, with the fault domain of the silo that ran it.</summary>
    public ConcurrentQueue<(string Grain, long Key, int? Domain)> Activations { get; } = new();

    /// <summary>Every call a client proxy served: (proxy key, fault domain of its silo or null for a gateway, method).</summary>
    public ConcurrentQueue<(string ClientId, int? Domain, string Method)> ProxyCalls { get; } = new();

    /// <summary>Every SubmitBatch call a replica received: (replica, requests, their bytes).</summary>
    public ConcurrentQueue<(int Replica, int Requests, long Bytes)> SubmitBatches { get; } = new();

    /// <summary>Every request a replica received, alone or in a batch: (replica, client id, seq).</summary>
    public ConcurrentQueue<(int Replica, string ClientId, ulong Seq)> Submissions { get; } = new();

    /// <summary>The clock of every silo's MinBFT grains (one for all, so they agree on the time).</summary>
    public TestClock Clock { get; }

    /// <summary>Messages delivered to the replicas and the silos' log lines, written to the output at the end.</summary>
    public ClusterTrace Trace { get; }

    /// <summary>Every UI a USIG returned: (replica, counter, digest hex).</summary>
    public ConcurrentQueue<(long Replica, ulong Counter, string Digest)> IssuedUis { get; } = new();

    public static async Task<MinBftTestCluster> StartAsync(ClusterSetup setup, ITestOutputHelper output)
    {
        var cluster = new MinBftTestCluster(setup, output);
        var builder = new InProcessTestClusterBuilder((short)(cluster.N + setup.GatewaySilos));
        // Redis keys start with the service id: every cluster its own, on a server other runs share.
        if (setup.RedisStorage is not null) builder.Options.ServiceId = "minbft-it-" + Guid.NewGuid().ToString("N");
        builder.ConfigureSilo((options, silo) => cluster.ConfigureSilo(cluster.DomainOf(options.SiloName), silo));
        cluster.Cluster = builder.Build();
        await cluster.Cluster.DeployAsync();
        cluster.Log($"{cluster.N + setup.GatewaySilos} silos up");
        await cluster.WaitForReplicasAsync(Enumerable.Range(0, cluster.N));
        cluster.Log("all replicas placed");
        return cluster;
    }

    public void Log(string message)
    {
        _output.WriteLine($"[{_clock.Elapsed.TotalSeconds:F2}s] {message}");
        Trace.Add("test: " + message);
    }

    private static int SiloIndex(string siloName) =>
        int.Parse(siloName.AsSpan(siloName.LastIndexOf('_') + 1), CultureInfo.InvariantCulture);

    private int? DomainOf(string siloName) => SiloIndex(siloName) is var k && k < N ? k : null;

    private void ConfigureSilo(int? domain, ISiloBuilder silo)
    {
        // Before AddMinBft, which registers the system clock only if no clock is there yet.
        silo.Services.AddKeyedSingleton<TimeProvider>(MinBftSilo.ClockServiceKey, Clock);
        void Tune(MinBftOptions options)
        {
            options.UseEmbeddedStorage = Setup.Sqlite || Setup.RedisStorage is not null;
            options.UsigServesOnlyItsReplica = Setup.UsigServesOnlyItsReplica;
            // In-process silos with keys made without a TLS CA (TlsTests run TLS clusters of their own).
            options.Tls.Enabled = false;
            options.Tls.PlaintextReason = "test cluster";
            // Short intervals: a dropped message is asked for again quickly.
            options.Protocol = options.Protocol with
            {
                RequestTimeout = Setup.RequestTimeout,
                ViewChangeTimeout = Setup.RequestTimeout * 2,
                RetransmitInterval = TimeSpan.FromMilliseconds(100),
            };
            options.ClientRetransmitInterval = TimeSpan.FromMilliseconds(500);
            options.ClientRetransmitMaxInterval = TimeSpan.FromSeconds(2);
            options.SafetyTickInterval = TimeSpan.FromMilliseconds(250);
            Setup.ConfigureMinBft?.Invoke(options);
        }

        if (domain is { } d)
        {
            // A fault domain's silo is configured the way a real one is: from configuration, with
            // the manifest on disk and the keys in domain-{i} next to it.
            var settings = new Dictionary<string, string?>
            {
                ["MinBft:FaultDomain"] = d.ToString(CultureInfo.InvariantCulture),
                ["MinBft:ManifestPath"] = Path.Combine(Directory, DeploymentKeys.ManifestFileName),
                ["MinBft:DataDirectory"] = Path.Combine(Directory, "data"),
                ["MinBft:Protocol:MaxBatchWait"] = "00:00:00.002",
            };
            if (Setup.InitializeUsig)
                settings["MinBft:Usig:InitializeEpoch"] = Manifest.Replica(d).UsigEpoch.ToString(CultureInfo.InvariantCulture);
            if (Setup.RedisStorage is { } redis)
            {
                settings["MinBft:Storage"] = "Redis";
                settings["MinBft:RedisStorage"] = redis[d];
            }
            var configuration = new ConfigurationBuilder().AddInMemoryCollection(settings).Build();
            silo.AddMinBft(configuration, Tune);
        }
        else
        {
            silo.AddMinBftGateway(Manifest, Tune);
        }
        if (!Setup.Sqlite && Setup.RedisStorage is null) silo.AddMemoryGrainStorage(SqliteGrainStorageSiloBuilderExtensions.DefaultProviderName);
        silo.Services.AddLogging(logging =>
        {
            logging.AddProvider(Trace.LoggerProvider(domain));
            // MinBFT's own lines; of the rest only errors, without the expected noise of a domain
            // being down (undeliverable messages, placement refused and retried).
            logging.AddFilter<ClusterTraceLoggerProvider>(null, LogLevel.Error);
            logging.AddFilter<ClusterTraceLoggerProvider>("MinBft", LogLevel.Debug);
            foreach (var noise in new[] { "Orleans.Messaging", "Polly", typeof(FaultDomainPlacementDirector).FullName! })
                logging.AddFilter<ClusterTraceLoggerProvider>(noise, LogLevel.None);
        });
        silo.Configure<ClusterMembershipOptions>(membership =>
        {
            // Declare a stopped silo dead within a second or two instead of the default minute.
            membership.ProbeTimeout = TimeSpan.FromMilliseconds(300);
            membership.NumMissedProbesLimit = 2;
            membership.NumVotesForDeathDeclaration = 1;
            membership.TableRefreshTimeout = TimeSpan.FromMilliseconds(500);
            membership.IAmAliveTablePublishTimeout = TimeSpan.FromSeconds(1);
        });
        silo.AddIncomingGrainCallFilter(async context =>
        {
            switch (context.Grain)
            {
                case ReplicaGrain:
                    Activations.Enqueue(("replica", KeyOf(context.TargetId), domain));
                    if (context.MethodName == nameof(IReplicaGrain.Deliver))
                        Trace.Delivered((int)KeyOf(context.TargetId), context.Request.GetArgument(0) as ReplicaMessage);
                    else if (context.MethodName == nameof(IReplicaGrain.Submit))
                    {
                        var request = context.Request.GetArgument(0) as Request;
                        Trace.Submitted((int)KeyOf(context.TargetId), request);
                        if (request is not null) Submissions.Enqueue(((int)KeyOf(context.TargetId), request.ClientId, request.Seq));
                    }
                    else if (context.MethodName == nameof(IReplicaGrain.SubmitBatch) && context.Request.GetArgument(0) is Request[] batch)
                    {
                        SubmitBatches.Enqueue(((int)KeyOf(context.TargetId), batch.Length, Encoding.MessageLimits.BatchBytes(batch)));
                        foreach (var request in batch)
                        {
                            Trace.Submitted((int)KeyOf(context.TargetId), request);
                            if (request is not null) Submissions.Enqueue(((int)KeyOf(context.TargetId), request.ClientId, request.Seq));
                        }
                    }
                    break;
                case UsigGrain:
                    Activations.Enqueue(("usig", KeyOf(context.TargetId), domain));
                    break;
                case ClientProxyGrain:
                    ProxyCalls.Enqueue((context.TargetId.Key.ToString(), domain, context.MethodName));
                    break;
            }
            await context.Invoke();
            if (context.Grain is UsigGrain && context.MethodName == nameof(IUsigGrain.CreateUis) && context.Result is UniqueIdentifier[] uis)
            {
                var digests = (byte[][])context.Request.GetArgument(1)!;
                for (var i = 0; i < uis.Length; i++) IssuedUis.Enqueue((KeyOf(context.TargetId), uis[i].Counter, Convert.ToHexString(digests[i])));
            }
        });
        // A second registration (a host that also opts in itself) must be harmless.
#pragma warning disable ORLEANSEXP003
        if (domain == 1) silo.AddDistributedGrainDirectory();
#pragma warning restore ORLEANSEXP003
        Setup.ConfigureSilo?.Invoke(domain, silo);
    }

    private static long KeyOf(GrainId id) => id.TryGetIntegerKey(out var key, out _) ? key : -1;

    public IReplicaGrain Replica(int i) => Grains.GetGrain<IReplicaGrain>(i);
    public IUsigGrain Usig(int i) => Grains.GetGrain<IUsigGrain>(i);
    public IClientProxyGrain Proxy(string clientId) => Grains.GetGrain<IClientProxyGrain>(clientId);

    public InProcessSiloHandle SiloOf(int domain) =>
        Cluster.Silos.Single(s => s.Name.EndsWith("_" + domain.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal));

    public async Task StopDomainAsync(int domain)
    {
        await Cluster.StopSiloAsync(SiloOf(domain));
        Log($"silo of domain {domain} stopped");
    }

    public async Task RestartDomainAsync(int domain)
    {
        await Cluster.StartSiloAsync(domain, Cluster.Options);
        Log($"silo of domain {domain} started again");
    }

    /// <summary>Until each replica answers (right after start a silo's metadata may not have spread yet).</summary>
    public async Task WaitForReplicasAsync(IEnumerable<int> replicas)
    {
        foreach (var i in replicas) await EventuallyAsync(() => Replica(i).GetStatus(), $"replica {i} reachable");
    }

    public async Task<ReplicaStatus[]> StatusesAsync(IEnumerable<int> replicas) =>
        await Task.WhenAll(replicas.Select(i => Replica(i).GetStatus().WaitAsync(TimeSpan.FromSeconds(5))));

    /// <summary>
    /// Waits until the given replicas have executed the same number of batches with equal
    /// history and state digests, and returns their statuses.
    /// </summary>
    public async Task<ReplicaStatus[]> WaitForAgreementAsync(IReadOnlyCollection<int> replicas, ulong atLeast = 0)
    {
        // Quiet as well: nothing waiting for a UI, everything sent also durable.
        var agreed = await WaitForStatusesAsync(replicas, last => last.All(s => s.Halted is null && s.ExecutedSequence >= atLeast
                && s.AwaitingUi == 0 && s.DurableSentCount == s.SentLogCount
                && s.View == last[0].View
                && s.ExecutedSequence == last[0].ExecutedSequence
                && s.HistoryDigest == last[0].HistoryDigest
                && s.StateDigest == last[0].StateDigest),
            atLeast > 0 ? $"replicas agree at batch {atLeast} or later" : "replicas agree");
        Log($"replicas {string.Join(",", replicas)} agree at batch {agreed[0].ExecutedSequence}");
        return agreed;
    }

    /// <summary>
    /// Polls the given replicas' statuses until <paramref name="condition"/> holds (an assertion
    /// inside it fails at once). The wait fails when those replicas make no progress for
    /// <see cref="Deadline"/> (none executes, checkpoints, certifies a message or changes view),
    /// or after <see cref="MaxWait"/> in all: a stuck cluster fails as soon as with a fixed
    /// deadline, while a cluster that a loaded machine slows down is not failed for being slow.
    /// </summary>
    public async Task<ReplicaStatus[]> WaitForStatusesAsync(IReadOnlyCollection<int> replicas, Func<ReplicaStatus[], bool> condition, string what)
    {
        ReplicaStatus[] last = [];
        Exception? error = null;
        string? progress = null;
        var total = Stopwatch.StartNew();
        var idle = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                last = await StatusesAsync(replicas);
                if (condition(last)) return last;
                var now = string.Join(",", last.Select(s => $"{s.View}/{s.ExecutedSequence}/{s.StableCheckpoint}/{s.LastUiCounter}"));
                if (now != progress)
                {
                    progress = now;
                    idle.Restart();
                }
            }
            catch (Exception e) when (IsTransient(e))
            {
                // A replica being restarted, or slow to answer on a loaded machine: not yet.
                error = e;
            }
            if (idle.Elapsed > Deadline || total.Elapsed > MaxWait)
            {
                var why = idle.Elapsed > Deadline ? $"no progress for {Deadline}" : $"still progressing after {MaxWait}";
                throw new TimeoutException($"{what}: {why}; " + string.Join("; ", last.Select(Describe)) +
                    (error is null ? "" : $"; last status error: {error.GetType().Name}: {error.Message}"), error);
            }
            await Task.Delay(25);
        }
    }

    /// <summary>
    /// A failed call that may succeed when tried again: a timeout, or Orleans refusing it while a
    /// silo stops, starts or is declared dead. Never a failed assertion.
    /// </summary>
    public static bool IsTransient(Exception e) => e is TimeoutException or OrleansException;

    /// <summary>
    /// Makes the backups suspect the primary now, as if their request timers had run out: moves
    /// the grains' clock past every request timer (nine request timeouts; a backed-off timer is at
    /// most eight), and again every few seconds until one of <paramref name="replicas"/> has
    /// joined a view above <paramref name="view"/> (which takes f + 1 suspicious replicas). A
    /// backup suspects only for a request it knows and has not seen executed, so the caller keeps
    /// clients sending. The view change itself runs on its own: its timeout is as long as the
    /// request timeout, so a stalled view change fails the test instead of being retried.
    /// </summary>
    public async Task ExpireRequestTimersAsync(IReadOnlyCollection<int> replicas, long view)
    {
        var clock = Stopwatch.StartNew();
        ReplicaStatus[] last = [];
        while (true)
        {
            Clock.Advance(Setup.RequestTimeout * 9);
            Log($"clock +{Setup.RequestTimeout * 9} (now {Clock.Offset} ahead): request timers expired, replicas {string.Join(",", replicas)} should leave view {view}");
            var wait = Stopwatch.StartNew();
            while (wait.Elapsed < TimeSpan.FromSeconds(3))
            {
                try
                {
                    last = await StatusesAsync(replicas);
                    if (last.Any(s => s.View > view))
                    {
                        Log($"replicas {string.Join(",", replicas)} left view {view}: " + string.Join("; ", last.Select(s => $"r{s.ReplicaId} view {s.View}")));
                        return;
                    }
                }
                catch (Exception e) when (IsTransient(e))
                {
                    // Not yet.
                }
                await Task.Delay(25);
            }
            if (clock.Elapsed > Deadline)
                throw new TimeoutException($"not within {Deadline}: replicas {string.Join(",", replicas)} leave view {view} after their request timers expired; " + string.Join("; ", last.Select(Describe)));
        }
    }

    public static string Describe(ReplicaStatus s) =>
        $"r{s.ReplicaId}: view {s.View} exec {s.ExecutedSequence} stable {s.StableCheckpoint} hist {s.HistoryDigest[..8]} state {s.StateDigest[..8]} ui {s.LastUiCounter} " +
        $"buffered {s.BufferedMessages} pending {s.PendingRequests} halted '{s.Halted}' rejections [{string.Join(",", s.Rejections.Select(p => p.Key + "=" + p.Value))}]";

    public static async Task<T> EventuallyAsync<T>(Func<Task<T>> call, string what)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                return await call().WaitAsync(TimeSpan.FromSeconds(5));
            }
            catch (Exception e) when (clock.Elapsed < Deadline)
            {
                _ = e;
                await Task.Delay(25);
            }
            catch (Exception e)
            {
                throw new TimeoutException($"not within {Deadline}: {what}", e);
            }
        }
    }

    /// <summary>
    /// Polls <paramref name="condition"/> until it holds. A transient failure of the condition's
    /// calls (<see cref="IsTransient"/>) counts as "not yet"; an assertion inside it fails at once.
    /// </summary>
    public static Task UntilAsync(Func<Task<bool>> condition, string what) => UntilAsync(condition, progress: null, what);

    /// <summary>
    /// <see cref="UntilAsync(Func{Task{bool}}, string)"/> for a condition that is approached step
    /// by step (e.g. a count of acknowledged requests): the wait fails after <see cref="Deadline"/>
    /// without <paramref name="progress"/> changing, or after <see cref="MaxWait"/> in all.
    /// </summary>
    public static async Task UntilAsync(Func<Task<bool>> condition, Func<long>? progress, string what)
    {
        var total = Stopwatch.StartNew();
        var idle = Stopwatch.StartNew();
        var seen = progress?.Invoke();
        Exception? error = null;
        while (true)
        {
            try
            {
                if (await condition()) return;
            }
            catch (Exception e) when (IsTransient(e))
            {
                error = e;
            }
            if (progress?.Invoke() is { } now && now != seen)
            {
                seen = now;
                idle.Restart();
            }
            if (idle.Elapsed > Deadline || (progress is not null && total.Elapsed > MaxWait))
            {
                var why = idle.Elapsed > Deadline ? $"not within {Deadline}" + (progress is null ? "" : " without progress") : $"not within {MaxWait}";
                throw new TimeoutException($"{why}: {what}" + (error is null ? "" : $" (last error: {error.GetType().Name}: {error.Message})"), error);
            }
            await Task.Delay(25);
        }
    }

    public async ValueTask DisposeAsync()
    {
        // Where every replica stands and what led there: shown by the console logger only when the test failed.
        foreach (var i in Enumerable.Range(0, N))
        {
            try
            {
                _output.WriteLine("at the end: " + Describe(await Replica(i).GetStatus().WaitAsync(TimeSpan.FromSeconds(2))));
            }
            catch (Exception e)
            {
                _output.WriteLine($"at the end: r{i}: {e.GetType().Name}");
            }
        }
        Trace.WriteTo(_output);
        try
        {
            await Cluster.StopAllSilosAsync();
        }
        catch (Exception e)
        {
            _output.WriteLine("stopping the cluster: " + e.Message);
        }
        await Cluster.DisposeAsync();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
            // A store may still be open for a moment; it is a temp directory.
        }
    }
}

/// <summary>
/// A test client: its own key, its own seq counter, requests through its proxy, reached through
/// the cluster client or through <paramref name="via"/> (e.g. a silo's grain factory).
/// </summary>
internal sealed class TestClient(MinBftTestCluster cluster, string name, IGrainFactory? via = null)
{
    private readonly ClientSigner _signer = new(Ed25519KeyPair.Generate(new SecureRandom()));
    private readonly Lazy<ProxyCaller> _caller = new(() => new ProxyCaller(via ?? cluster.Grains));
    private ulong _seq;

    public string Name { get; } = name;
    public string ClientId => _signer.ClientId;
    public ClientSigner Signer => _signer;

    /// <summary>Replicas whose replies were part of a quorum the proxy returned.</summary>
    public ConcurrentBag<int> Responders { get; } = [];

    public Request NextRequest(byte[] operation) => _signer.CreateRequest(++_seq, operation);

    /// <summary>Executes one operation and checks the f+1 replies as the SDK would.</summary>
    public async Task<KeyValueResult> ExecuteAsync(byte[] operation)
    {
        var request = NextRequest(operation);
        var clock = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                var proxy = (via ?? cluster.Grains).GetGrain<IClientProxyGrain>(ClientId);
                // Bounded here as well: a response lost with a stopping silo would otherwise be
                // waited for until Orleans' response timeout (30 s).
                var replies = await _caller.Value.ExecuteAsync(proxy, request, MinBftTestCluster.AttemptTimeout)
                    .WaitAsync(MinBftTestCluster.AttemptTimeout + TimeSpan.FromSeconds(1));
                return CheckReplies(request, replies);
            }
            catch (Exception e) when (e is TimeoutException or OrleansException && clock.Elapsed < MinBftTestCluster.RequestTimeout)
            {
                // What the SDK does: send the same request again (a proxy's silo may have gone
                // down with it); replicas execute it once and resend their cached replies.
                cluster.Log($"{Name}: retrying request {request.Seq} after {e.GetType().Name}: {e.Message}");
                await Task.Delay(50);
            }
        }
    }

    public KeyValueResult CheckReplies(Request request, Reply[] replies)
    {
        var authenticator = new ReplyAuthenticator(cluster.Manifest.CreateReplicaKeyRing());
        var digest = Encoding.MessageEncoding.RequestDigest(request);
        Assert.True(replies.Length >= cluster.Manifest.ReplyQuorum, $"{replies.Length} replies");
        Assert.Equal(replies.Length, replies.Select(r => r.ReplicaId).Distinct().Count());
        foreach (var reply in replies)
        {
            Assert.Equal(ClientId, reply.ClientId);
            Assert.Equal(request.Seq, reply.Seq);
            Assert.Equal(replies[0].Result, reply.Result);
            Assert.Equal(digest, reply.RequestDigest);
            Assert.Null(authenticator.Explain(reply));
        }
        foreach (var reply in replies) Responders.Add(reply.ReplicaId);
        Assert.True(KeyValueResult.TryDecode(replies[0].Result, out var result));
        return result;
    }

    /// <summary>
    /// A run of puts and gets on this client's own key: every result is known in advance, so
    /// each one is checked. Returns the number of operations.
    /// </summary>
    public async Task<int> RunAsync(int operations)
    {
        var key = "key-" + Name;
        byte[]? last = null;
        for (var i = 0; i < operations; i++)
        {
            if (i % 2 == 0)
            {
                last = System.Text.Encoding.UTF8.GetBytes($"{Name}-value-{i}");
                var put = await ExecuteAsync(KeyValueOperation.EncodePut(key, last));
                Assert.Equal(KeyValueResult.Ok, put);
            }
            else
            {
                var get = await ExecuteAsync(KeyValueOperation.EncodeGet(key));
                Assert.Equal(KeyValueResult.OkWithValue(last!), get);
            }
        }
        return operations;
    }
}
