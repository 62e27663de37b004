using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using MinBft.Crypto;
using MinBft.Encoding;
using MinBft.Hosting;
using MinBft.Messages;

namespace MinBft.Client;

/// <summary>
/// Submits operations to a MinBFT cluster and returns results it has verified itself.
/// <para>
/// Each request is signed with a client identity leased from a pool and handed to this
/// client's <see cref="IClientProxyGrain"/> (one for all its identities, under a key of its own).
/// Requests travel in batches all the way: those started together leave in one call to the
/// proxy, which reports each one's replies to this client's observer as soon as it has them
/// (one call for all the requests it completed meanwhile). A result is accepted only when f+1
/// replicas' signed replies prove it (<see cref="ReplyVerifier"/>): the proxy, the silos it
/// runs on and the network are not trusted. Failed attempts are retried with the same signed
/// request, which replicas answer from their reply cache, so an operation executes at most once.
/// </para>
/// Thread-safe; meant to be a singleton. Concurrency is bounded by the identity pool size.
/// </summary>
public sealed partial class MinBftClient : IDisposable
{
    private readonly ClientProxyChannel _channel;
    private readonly ReplyVerifier _verifier;
    private readonly MinBftClientOptions _options;
    private readonly ClientIdentityPool _pool;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly ProvenPosition _positions;

    /// <param name="grainFactory">Reaches the cluster: an <c>IClusterClient</c>, or a silo's grain factory.</param>
    /// <param name="manifest">The cluster manifest: n, f and the replicas' public keys.</param>
    /// <param name="options">Pool, keys and timeouts; validated here.</param>
    /// <param name="logger">Failed attempts and sessions (none if null).</param>
    /// <param name="timeProvider">The clock of timeouts and retries (the system clock if null).</param>
    public MinBftClient(
        IGrainFactory grainFactory,
        ClusterManifest manifest,
        MinBftClientOptions options,
        ILogger<MinBftClient>? logger = null,
        TimeProvider? timeProvider = null)
        : this(LinkOf(grainFactory), ReplyVerifier.FromManifest(manifest), options, logger, timeProvider)
    {
    }

    /// <summary>For dependency injection: the manifest is read from <see cref="MinBftClientOptions.ManifestPath"/>.</summary>
    public MinBftClient(IGrainFactory grainFactory, IOptions<MinBftClientOptions> options, ILogger<MinBftClient> logger)
        : this(grainFactory, LoadManifest(options), options.Value, logger)
    {
    }

    /// <param name="grainFactory">Reaches the cluster: an <c>IClusterClient</c>, or a silo's grain factory.</param>
    /// <param name="verifier">The cluster's n, f and replica keys (from its manifest).</param>
    /// <param name="options">Pool, keys and timeouts; validated here.</param>
    /// <param name="logger">Failed attempts and sessions (none if null).</param>
    /// <param name="timeProvider">The clock of timeouts and retries (the system clock if null).</param>
    public MinBftClient(
        IGrainFactory grainFactory,
        ReplyVerifier verifier,
        MinBftClientOptions options,
        ILogger<MinBftClient>? logger = null,
        TimeProvider? timeProvider = null)
        : this(LinkOf(grainFactory), verifier, options, logger, timeProvider)
    {
    }

    /// <summary>The seam tests use to stand in for the cluster: the proxy by key, and observer references.</summary>
    internal MinBftClient(
        IClientProxyLink link,
        ReplyVerifier verifier,
        MinBftClientOptions options,
        ILogger<MinBftClient>? logger = null,
        TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(link);
        ArgumentNullException.ThrowIfNull(verifier);
        ArgumentNullException.ThrowIfNull(options);
        // A snapshot: changing the options object later must not change a running client.
        options = options.Clone();
        options.Validate();
        // Random, so that two client instances never share a proxy (nor its in-flight bound).
        ProxyKey = "client-" + Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(12));
        _verifier = verifier;
        _options = options;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        _time = timeProvider ?? TimeProvider.System;
        _positions = new ProvenPosition(_time);
        _pool = options.KeyDirectory is { Length: > 0 } directory
            ? ClientIdentityPool.LoadOrCreate(directory, options.IdentityPoolSize, _time.GetUtcNow())
            : ClientIdentityPool.CreateEphemeral(options.IdentityPoolSize);
        try
        {
            _channel = new ClientProxyChannel(link, ProxyKey, _time);
        }
        catch
        {
            _pool.Dispose();
            throw;
        }
    }

    /// <summary>Number of replicas.</summary>
    public int N => _verifier.N;

    /// <summary>Number of faulty replicas tolerated.</summary>
    public int F => _verifier.F;

    /// <summary>Replies this client took on their session MAC, with no signature check.</summary>
    public long RepliesProvenByMac => _verifier.ProvenByMac;

    /// <summary>Replies whose signature this client checked (no session with their replica, or no valid MAC).</summary>
    public long ReplySignaturesChecked => _verifier.SignaturesChecked;

    /// <summary>The key of this client's proxy grain (replicas address their replies to it).</summary>
    public string ProxyKey { get; }

    /// <summary>The path to the proxy (tests look at its batching).</summary>
    internal ClientProxyChannel Channel => _channel;

    /// <summary>The client ids of the identity pool (hex SHA-256 of each public key).</summary>
    public IReadOnlyList<string> ClientIds => _pool.Identities.Select(i => i.ClientId).ToArray();

    /// <summary>
    /// Executes <paramref name="operation"/> on the replicated state machine and returns its
    /// result once f+1 replicas proved it.
    /// </summary>
    /// <exception cref="MinBftReplyVerificationException">The last attempt's replies proved no result.</exception>
    /// <exception cref="TimeoutException"><see cref="MinBftClientOptions.RequestTimeout"/> elapsed.</exception>
    /// <exception cref="MinBftException">Every attempt failed otherwise (the inner exception is the last failure).</exception>
    /// <exception cref="MinBftRequestExpiredException">The cluster evicted the identity's record while the request was in flight: its outcome is unknown.</exception>
    /// <exception cref="ArgumentException"><paramref name="operation"/> is empty (the protocol's probe) or longer than <see cref="MessageLimits.MaxOperationLength"/>.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled. The operation may still execute.</exception>
    public async Task<byte[]> ExecuteAsync(byte[] operation, CancellationToken cancellationToken = default) =>
        (await ExecuteVerifiedAsync(operation, cancellationToken).ConfigureAwait(false)).Result;

    /// <summary>Like <see cref="ExecuteAsync"/>, and also returns the replies that prove the result.</summary>
    public async Task<VerifiedResult> ExecuteVerifiedAsync(byte[] operation, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(operation);
        // Refused here, not after a trip to the proxy (which would refuse it every attempt).
        if (operation.Length > MessageLimits.MaxOperationLength)
            throw new ArgumentException($"the operation has {operation.Length} bytes; the limit is {MessageLimits.MaxOperationLength}", nameof(operation));
        if (operation.Length == 0)
            throw new ArgumentException("the operation is empty: an empty operation is the protocol's probe, which runs in no application", nameof(operation));
        // Null while nothing listens to the MinBft source: every use below is null-conditional.
        using var span = MinBftTracing.Source.StartActivity(MinBftTracing.RequestSpan, ActivityKind.Client);
        var started = _time.GetTimestamp();
        using var timeout = new CancellationTokenSource(_options.RequestTimeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        ClientIdentityPool.Lease lease;
        try
        {
            lease = await _pool.LeaseAsync(linked.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException(
                $"No client identity became free within {_options.RequestTimeout} (pool size {_options.IdentityPoolSize}; raise {nameof(MinBftClientOptions.IdentityPoolSize)} for more concurrent requests).");
        }

        using (lease)
        {
            var identity = lease.Identity;
            span?.SetTag(MinBftTracing.ClientTag, Short(identity.ClientId));
            // The proxy continues this trace in a span of its own (the call carries other requests too).
            var link = span is null ? null : MinBftTracing.ToTraceparent(span.Context);
            var deadline = new Deadline(started, timeout, linked.Token, cancellationToken);
            if (!_positions.IsFresh(_options.ProbeAfterIdle)) await ProbeAsync(identity, link, deadline).ConfigureAwait(false);
            // Signed once: every retry sends the very same request, so it executes at most once.
            var request = identity.Signer.CreateRequest(identity.TakeSeq(), operation, _positions.Latest);
            span?.SetTag(MinBftTracing.SeqTag, request.Seq);
            var result = await SendUntilProvenAsync(identity, request, span, link, deadline).ConfigureAwait(false);
            _positions.Note(result.Position);
            if (result.Status == ReplyStatus.Expired)
            {
                span?.SetStatus(ActivityStatusCode.Error, nameof(ReplyStatus.Expired));
                throw new MinBftRequestExpiredException(identity.ClientId, request.Seq, result.Position);
            }
            return result;
        }
    }

    /// <summary>The request's clock: when it started, its timeout, and the tokens that stop it.</summary>
    private readonly record struct Deadline(long Started, CancellationTokenSource Timeout, CancellationToken Linked, CancellationToken Caller);

    /// <summary>
    /// Learns a recent position of the replicated history before a request: an empty operation,
    /// ordered and answered like any request, that runs in no application. Its replies prove a
    /// position whichever their status (an Expired probe changes nothing either).
    /// </summary>
    private async Task ProbeAsync(PooledIdentity identity, string? link, Deadline deadline)
    {
        try
        {
            await _positions.ProbeGate.WaitAsync(deadline.Linked).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!deadline.Caller.IsCancellationRequested)
        {
            throw new TimeoutException($"the probe of another request did not finish within {_options.RequestTimeout}");
        }
        try
        {
            if (_positions.IsFresh(_options.ProbeAfterIdle)) return; // another request probed meanwhile
            var probe = identity.Signer.CreateRequest(identity.TakeSeq(), [], _positions.Latest);
            _positions.Note((await SendUntilProvenAsync(identity, probe, null, link, deadline).ConfigureAwait(false)).Position);
        }
        finally
        {
            _positions.ProbeGate.Release();
        }
    }

    /// <summary>Sends <paramref name="request"/> until f+1 replies prove its outcome, retrying the
    /// same signed request while time and attempts remain.</summary>
    private async Task<VerifiedResult> SendUntilProvenAsync(PooledIdentity identity, Request request, Activity? span, string? link, Deadline deadline)
    {
        var session = await SessionAsync(identity, deadline.Linked).ConfigureAwait(false);
        if (session is not null) request = session.Authenticate(request);
        var (started, timeout) = (deadline.Started, deadline.Timeout);
        Exception? lastFailure = null;
        // The request timeout's token is the one clock deciding when to stop; elapsed time
        // only sizes each attempt.
        var attempts = 0;
        for (var attempt = 1; attempt <= _options.MaxAttempts && !timeout.IsCancellationRequested; attempt++)
        {
            attempts = attempt;
            span?.SetTag(MinBftTracing.AttemptsTag, attempt);
            var remaining = _options.RequestTimeout - _time.GetElapsedTime(started);
            var attemptTimeout = Min(_options.AttemptTimeout, remaining > MinAttemptTimeout ? remaining : MinAttemptTimeout);
            try
            {
                // The proxy is untrusted and may never answer: the channel bounds the wait locally too.
                var replies = await _channel.SendAsync(request, attemptTimeout, link, deadline.Linked).ConfigureAwait(false);
                return _verifier.Verify(request, replies, session);
            }
            catch (OperationCanceledException) when (deadline.Caller.IsCancellationRequested)
            {
                throw;
            }
            catch (OperationCanceledException) when (timeout.IsCancellationRequested)
            {
                lastFailure ??= new TimeoutException($"no answer from the client proxy within {_options.RequestTimeout}");
                break;
            }
            catch (ObjectDisposedException)
            {
                throw; // this client was disposed meanwhile
            }
            catch (MinBftReplyVerificationException e)
            {
                lastFailure = e;
                LogVerificationFailed(_logger, request.Seq, Short(identity.ClientId), attempt, e.Message);
            }
            catch (Exception e)
            {
                // Timeouts, unavailable silos or fault domains, proxy errors: all worth
                // another try with the same request while time remains.
                lastFailure = e;
                LogAttemptFailed(_logger, request.Seq, Short(identity.ClientId), attempt, e.GetType().Name, e.Message);
            }

            if (attempt < _options.MaxAttempts)
            {
                var delay = Min(_options.RetryDelay * Math.Pow(2, attempt - 1), _options.RequestTimeout - _time.GetElapsedTime(started));
                if (delay > TimeSpan.Zero)
                {
                    try
                    {
                        await Task.Delay(delay, _time, deadline.Linked).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException) when (!deadline.Caller.IsCancellationRequested)
                    {
                        break; // the request timeout: report below
                    }
                }
            }
        }

        var elapsed = _time.GetElapsedTime(started);
        span?.SetStatus(ActivityStatusCode.Error, lastFailure?.GetType().Name);
        if (lastFailure is MinBftReplyVerificationException verification) throw verification;
        var outOfTime = timeout.IsCancellationRequested || elapsed >= _options.RequestTimeout;
        var what = string.Create(CultureInfo.InvariantCulture,
            $"Request {request.Seq} of client {Short(identity.ClientId)} ")
            + (request.Operation.Length == 0 ? "(a probe) " : "")
            + (outOfTime ? $"did not complete within {_options.RequestTimeout}" : $"failed {attempts} attempts in {elapsed.TotalSeconds:F1} s");
        var cause = lastFailure is null ? "no attempt was made" : $"{lastFailure.GetType().Name}: {lastFailure.Message}";
        if (lastFailure is null or TimeoutException || outOfTime) throw new TimeoutException($"{what} (last: {cause})", lastFailure);
        throw new MinBftException($"{what} (last: {cause})", lastFailure);
    }

    public void Dispose()
    {
        _channel.Dispose();
        foreach (var identity in _pool.Identities) identity.Session?.Dispose();
        _pool.Dispose();
        _positions.ProbeGate.Dispose();
    }

    /// <summary>
    /// The identity's MAC sessions, opened or renewed when due. Failing to open them is not an
    /// error: the replicas then check the request's signature, as they would without sessions.
    /// </summary>
    private async Task<ClientSession?> SessionAsync(PooledIdentity identity, CancellationToken cancellationToken)
    {
        if (_options.SessionRenewal == TimeSpan.Zero) return null;
        if (identity.Session is { } current && _time.GetElapsedTime(identity.SessionOpenedAt) < _options.SessionRenewal) return current;
        // Later offers of an identity must carry larger epochs: replicas keep the newest session.
        long epoch;
        lock (_epochLock)
        {
            epoch = _lastSessionEpoch = Math.Max(_time.GetUtcNow().UtcTicks, _lastSessionEpoch + 1);
        }
        var session = new ClientSession(identity.Signer, _verifier.N, epoch);
        try
        {
            var timeout = Min(_options.AttemptTimeout, SessionTimeout);
            var accepts = await _channel.Proxy.OpenSessions(session.Offer, timeout).WaitAsync(timeout + ClientProxyChannel.LocalGrace, _time, cancellationToken).ConfigureAwait(false);
            foreach (var accept in accepts ?? []) session.TryAccept(accept, _verifier.ReplicaKeys);
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            LogSessionFailed(_logger, Short(identity.ClientId), e.GetType().Name, e.Message);
        }
        // Renewed either way: a cluster that cannot open sessions now is asked again next period.
        identity.Session?.Dispose();
        identity.Session = session;
        identity.SessionOpenedAt = _time.GetTimestamp();
        return session;
    }

    private readonly Lock _epochLock = new();
    private long _lastSessionEpoch;

    // Opening sessions is an optimisation: never wait long for it.
    private static readonly TimeSpan SessionTimeout = TimeSpan.FromSeconds(2);

    // The shortest timeout handed to the proxy: less could not even reach a replica.
    private static readonly TimeSpan MinAttemptTimeout = TimeSpan.FromMilliseconds(10);

    private static ClusterManifest LoadManifest(IOptions<MinBftClientOptions> options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var path = options.Value.ManifestPath;
        if (string.IsNullOrWhiteSpace(path))
            throw new ArgumentException($"{MinBftClientOptions.SectionName}:{nameof(MinBftClientOptions.ManifestPath)} is required (the cluster manifest)");
        return ClusterManifest.Load(path);
    }

    private static GrainFactoryLink LinkOf(IGrainFactory grainFactory)
    {
        ArgumentNullException.ThrowIfNull(grainFactory);
        return new GrainFactoryLink(grainFactory);
    }

    private static TimeSpan Min(TimeSpan a, TimeSpan b) => a <= b ? a : b;

    private static string Short(string clientId) => clientId.Length > 12 ? clientId[..12] : clientId;

    [LoggerMessage(Level = LogLevel.Warning, Message = "Request {Seq} of client {ClientId}: attempt {Attempt} returned unverifiable replies: {Reason}")]
    private static partial void LogVerificationFailed(ILogger logger, ulong seq, string clientId, int attempt, string reason);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Client {ClientId}: opening MAC sessions failed ({ErrorType}: {Reason}); replicas check request signatures")]
    private static partial void LogSessionFailed(ILogger logger, string clientId, string errorType, string reason);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Request {Seq} of client {ClientId}: attempt {Attempt} failed: {ErrorType}: {Reason}")]
    private static partial void LogAttemptFailed(ILogger logger, ulong seq, string clientId, int attempt, string errorType, string reason);
}
