using System.Collections.Concurrent;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using MinBft.Crypto;
using MinBft.Application;
using MinBft.Hosting;
using MinBft.Hosting.Journal;
using MinBft.Messages;
using MinBft.Protocol;
using Orleans.Concurrency;
using Orleans.Runtime;
using Orleans.Storage;
using Request = MinBft.Messages.Request;

namespace MinBft;

/// <summary>
/// Replica i (key = i): I/O around a <see cref="ReplicaCore"/>, which decides everything (see
/// Grains/Hosting/HOSTING.md, "The replica grain"). Inputs go into the core one at a time; its
/// effects are applied as they come: sends go out at once, and each of the three durable
/// operations (log write, USIG batch, checkpoint store) runs in the background, one of each kind
/// at a time, and reports its completion back to the core. Reentrant, so the replica keeps taking
/// messages while its store or USIG is busy; every core step runs to completion within one turn.
/// </summary>
[FaultDomainPlacement]
[Reentrant]
[KeepAlive] // The core's state lives in memory: idle collection would throw it away.
public sealed partial class ReplicaGrain(
    MinBftSilo silo,
    IStateMachineFactory stateMachines,
    IReplicaJournalFactory journals,
    IServiceProvider services,
    MinBftMetrics metrics,
    ILogger<ReplicaGrain> logger) : Grain, IReplicaGrain
{
    private readonly Dictionary<string, long> _grainRejections = new(StringComparer.Ordinal);
    private int _id;
    private ReplicaCore _core = null!;
    private IStateMachine _app = null!;
    private long _started;
    private string? _halted;
    private IGrainTimer? _tickTimer;
    private TimeSpan? _tickAt;
    private IUsigGrain _usig = null!;
    private IReplicaGrain[] _peers = [];
    private IReplicaJournal _journal = null!;
    private ReplicaCheckpointStore _checkpoints = null!;
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<Task, byte> _durable = new();
    private readonly Dictionary<ulong, long> _prepareSent = []; // sequence -> timestamp, at the primary, for commit latency
    private long _prepareSentView;

    private static readonly string ProcessName = $"{Environment.MachineName}:{Environment.ProcessId}";

    // HMAC scheme: the replica's own USIG verifies the UI claims of what the core is given.
    private UiPreverifier? _preverifier;
    private ReplicaClientSessions? _sessions;

    // Client proxy references by client id: GetGrain resolves the interface type on every call,
    // which cost about 3% of the silo's CPU when done per reply. Bounded: cleared when full.
    private readonly Dictionary<string, IClientProxyGrain> _proxies = new(StringComparer.Ordinal);

    private IClientProxyGrain ProxyOf(string clientId)
    {
        if (_proxies.TryGetValue(clientId, out var proxy)) return proxy;
        if (_proxies.Count >= 16_384) _proxies.Clear();
        return _proxies[clientId] = GrainFactory.GetGrain<IClientProxyGrain>(clientId);
    }

    private TimeSpan Now => silo.Clock.GetElapsedTime(_started);

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        _id = checked((int)this.GetPrimaryKeyLong());
        // Refuse outside fault domain i: there it would hold another domain's keys and store.
        silo.EnsureLocal(_id, "replica");
        _app = stateMachines.Create(_id);
        _usig = GrainFactory.GetGrain<IUsigGrain>(_id);
        // The USIG's limits are its own: the core reads them, it does not copy them.
        var usig = await _usig.GetIdentity();
        var settings = silo.ProtocolSettings(_id) with { UsigReissueWindow = usig.ReissueWindow, UsigMaxBatch = usig.MaxBatch };
        if (silo.Manifest.UsigScheme == UsigScheme.Hmac) _preverifier = new UiPreverifier(_usig, silo.Manifest.CreatePreverifiedUiVerifier());
        _sessions = new ReplicaClientSessions(_id, silo.CreateReplicaSigner(_id), silo.Options.MaxClientSessions);
        _core = new ReplicaCore(settings, silo.CreateProtocolCrypto(_id, _preverifier?.Verifier, _sessions), _app);
        _started = silo.Clock.GetTimestamp();
        _peers = Enumerable.Range(0, silo.Manifest.N).Select(i => GrainFactory.GetGrain<IReplicaGrain>(i)).ToArray();

        // Fault domain i's own store: the journal of its stream, the checkpoint in grain storage.
        _journal = journals.Create(this.GetGrainId());
        var storage = services.GetRequiredKeyedService<IGrainStorage>(SqliteGrainStorageSiloBuilderExtensions.DefaultProviderName);
        _checkpoints = new ReplicaCheckpointStore(storage, this.GetGrainId());
        var log = await _journal.OpenAsync(cancellationToken);
        var checkpoint = await _checkpoints.LoadAsync();
        var state = new RecoveredState(log.View, checkpoint.Certificate, checkpoint.Snapshot, checkpoint.ViewStarts,
            log.FirstCounter, log.Entries, usig.LastCounter);
        // UIs the USIG issued for logged intents but that never became durable: it re-issues them
        // for exactly those digests, so the restarted replica's stream has no gap.
        var reissue = state.UisToReissue();
        var reissued = new List<UniqueIdentifier?>(reissue.Count);
        foreach (var (counter, digest) in reissue) reissued.Add(await _usig.ReissueUi(counter, digest));
        if (_preverifier is not null) await _preverifier.PrepareAsync(state);
        var ready = _core.Restore(state.WithReissued(reissued), Now);
        if (_core.RestartedAfterCounterGap) LogCounterGap(logger, _id, usig.LastCounter);

        _tickTimer = this.RegisterGrainTimer(OnTickTimer, new GrainTimerCreationOptions(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan)
        {
            Interleave = true,
        });
        var safety = silo.Options.SafetyTickInterval;
        this.RegisterGrainTimer(OnSafetyTick, new GrainTimerCreationOptions(safety, safety) { Interleave = true, KeepAlive = true });
        LogActivated(logger, _id, silo.Manifest.N, log.Entries.Count, reissue.Count, checkpoint.Certificate?.Sequence ?? 0, _core.View);
        Apply(ready);
    }

    // ----- inputs: network input never throws; the core authenticates, rejects and counts -----

    public Task Deliver(ReplicaMessage message)
    {
        if (_preverifier is { } preverifier) return DeliverPreverifiedAsync(preverifier, message);
        Step(static (core, m, now) => core.OnMessage(m, now), message);
        return Task.CompletedTask;
    }

    /// <summary>HMAC scheme: the message's UI claims go to the replica's own USIG first.</summary>
    private async Task DeliverPreverifiedAsync(UiPreverifier preverifier, ReplicaMessage message)
    {
        try
        {
            await preverifier.PrepareAsync(message);
        }
        catch (Exception e)
        {
            // Unverified, so not handed on: the sender retransmits what matters.
            Count("UsigVerifyFailed");
            LogVerifyFailed(logger, e, _id);
            return;
        }
        Step(static (core, m, now) => core.OnMessage(m, now), message);
    }

    public Task Submit(Request request)
    {
        Step(static (core, r, now) => core.OnRequest(r, now), request);
        return Task.CompletedTask;
    }

    public Task<ClientSessionAccept?> OpenClientSession(ClientSessionOffer offer) =>
        // Never throws: offers come through untrusted proxies; a bad one gets no session.
        Task.FromResult(_sessions?.Open(offer));

    public Task<ReplicaStatus> GetStatus()
    {
        var rejections = new Dictionary<string, long>(_grainRejections, StringComparer.Ordinal);
        foreach (var (reason, count) in _core.Rejections) rejections[reason.ToString()] = count;
        var own = _core.OwnLogPositions;
        return Task.FromResult(new ReplicaStatus(
            _id,
            _core.View,
            _core.Primary,
            _core.ExecutedSequence,
            Convert.ToHexString(_app.Digest()),
            rejections,
            _core.BufferedMessages,
            _core.SentLogCount,
            _core.PendingRequests,
            _core.LastAccepted(_id),
            _core.AwaitingUiCount,
            (int)Math.Min(int.MaxValue, own.UiDurable + 1 - Math.Min(own.UiDurable + 1, _core.SentLogFirstCounter)),
            _halted,
            Convert.ToHexString(_core.HistoryDigest),
            _core.StableCheckpoint.Sequence,
            silo.UsigMode)
        {
            Process = ProcessName,
            ProcessCpu = Environment.CpuUsage.TotalTime,
            RequestsAuthenticatedByMac = _sessions?.AuthenticatedByMac ?? 0,
            RequestSignaturesChecked = _sessions?.SignaturesChecked ?? 0,
            ClientSessions = _sessions?.Count ?? 0,
        });
    }

    private Task OnTickTimer()
    {
        _tickAt = null;
        Step(static (core, _, now) => core.OnTick(now), 0);
        return Task.CompletedTask;
    }

    private Task OnSafetyTick()
    {
        Step(static (core, _, now) => core.OnTick(now), 0);
        return Task.CompletedTask;
    }

    // ----- the core step and its effects -----

    /// <summary>Runs one core step and applies its effects. The core is synchronous, so a step
    /// never interleaves with another even though the grain is reentrant.</summary>
    private void Step<T>(Func<ReplicaCore, T, TimeSpan, Ready> input, T argument)
    {
        if (_halted is not null)
        {
            Count("Halted");
            return;
        }
        try
        {
            var view = _core.View;
            var ready = input(_core, argument, Now);
            if (_core.View > view) metrics.ViewChanged(_id, _core.View - view);
            Apply(ready);
        }
        catch (Exception e)
        {
            // The core never throws on input; an exception is a violated invariant (a bug, or a
            // USIG that broke its promises), and the core may be half-way through a step.
            Halt(e, e.Message);
        }
    }

    private void Apply(Ready ready)
    {
        foreach (var effect in ready.Effects)
        {
            switch (effect)
            {
                case WriteLog write:
                    Track(Durably("log", () => Timed(() => WriteLogAsync(write.Write), static (m, id, t) => m.StorageWritten(id, "log", t)), static (core, _, now) => core.OnLogWritten(now)));
                    break;
                case CertifyUis certify:
                    Track(Durably("USIG", () => Timed(() => _usig.CreateUis(certify.FirstCounter, certify.Digests.ToArray()), static (m, id, t) => m.UsigIssued(id, t)),
                        static (core, uis, now) => core.OnUisIssued(uis, now)));
                    break;
                case StoreCheckpoint store:
                    Track(Durably("checkpoint", () => Timed(() => StoreCheckpointAsync(store), static (m, id, t) => m.StorageWritten(id, "checkpoint", t)), static (core, _, now) => core.OnCheckpointStored(now)));
                    break;
                case Send or ForwardRequest or SendReply:
                    if (effect is Send { Message: Prepare prepare } && prepare.PrimaryId == _id)
                        _prepareSent.TryAdd(prepare.Sequence, silo.Clock.GetTimestamp());
                    Dispatch(effect);
                    break;
                case Executed executed:
                    LogExecuted(logger, _id, executed.Sequence, executed.View, executed.PrimaryCounter, executed.Requests.Count);
                    metrics.Executed(_id, executed.Requests.Count);
                    if (_prepareSent.Remove(executed.Sequence, out var sent)) metrics.Committed(_id, silo.Clock.GetElapsedTime(sent));
                    break;
                case Rejected rejected:
                    LogRejected(logger, _id, rejected.From, rejected.Reason, rejected.Detail);
                    metrics.Rejected(_id, rejected.Reason.ToString());
                    break;
                case StateInstalled installed:
                    LogStateInstalled(logger, _id, installed.Sequence, installed.From);
                    break;
            }
        }
        // A batch executed through a snapshot, or prepared but abandoned by a view change, never
        // reports its own execution. Only those two events leave such entries, so only they sweep
        // (not every step: this runs per message).
        if (_prepareSent.Count > 0)
        {
            if (_core.View != _prepareSentView) _prepareSent.Clear();
            else if (ready.Effects.Any(static e => e is StateInstalled))
                foreach (var sequence in _prepareSent.Keys.Where(s => s <= _core.ExecutedSequence).ToList()) _prepareSent.Remove(sequence);
        }
        _prepareSentView = _core.View;
        ScheduleTick(ready.NextTick);
    }

    /// <summary>Keeps a durable operation until it ends, so deactivation can wait for it.</summary>
    private void Track(Task operation)
    {
        if (operation.IsCompleted) return;
        _durable.TryAdd(operation, 0);
        _ = operation.ContinueWith(
            static (t, s) => ((ConcurrentDictionary<Task, byte>)s!).TryRemove(t, out _),
            _durable, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    private void Dispatch(Effect effect)
    {
        switch (effect)
        {
            case Send { To: null } send:
                // One-way: a replica never waits on a peer (a slow or Byzantine peer must not
                // stall it); a lost message is repaired by the protocol's retransmission.
                for (var peer = 0; peer < _peers.Length; peer++)
                    if (peer != _id) OneWay(_peers[peer].Deliver(send.Message), "Deliver", peer);
                break;
            case Send { To: { } to } send:
                if (to != _id && to >= 0 && to < _peers.Length) OneWay(_peers[to].Deliver(send.Message), "Deliver", to);
                break;
            case ForwardRequest forward:
                // One-way: forwarding only helps a primary that missed the request; nothing waits on it.
                if (forward.To >= 0 && forward.To < _peers.Length) OneWay(_peers[forward.To].Submit(forward.Request), "Submit", forward.To);
                break;
            case SendReply reply:
                // One-way: the proxy is untrusted and may be gone; the client retransmits and the
                // core resends the cached reply.
                OneWay(ProxyOf(reply.Reply.ClientId).DeliverReply(reply.Reply), "DeliverReply", -1);
                break;
        }
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
            (logger, _id, method, target),
            CancellationToken.None,
            TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously,
            TaskScheduler.Default);
    }

    // ----- durable operations: the only places that await -----

    /// <summary>A log write: the truncation a restart asks for first, then the append. Retried
    /// unchanged after a failure (the journal finds out whether a failed append landed).</summary>
    private async Task WriteLogAsync(LogWrite write)
    {
        if (write.Truncation is { } cut)
        {
            if (cut.Gap) await _journal.RestartAtAsync(cut.From, CancellationToken.None);
            else await _journal.DropFromAsync(cut.From, CancellationToken.None);
        }
        await _journal.AppendAsync(new JournalAppend(write.View, write.FirstIntentCounter, write.Intents, write.Uis, write.KeepFrom), CancellationToken.None);
    }

    /// <summary>Times one attempt of a durable operation for the meter.</summary>
    private async Task<T> Timed<T>(Func<Task<T>> operation, Action<MinBftMetrics, int, TimeSpan> record)
    {
        var started = silo.Clock.GetTimestamp();
        var result = await operation();
        record(metrics, _id, silo.Clock.GetElapsedTime(started));
        return result;
    }

    private async Task Timed(Func<Task> operation, Action<MinBftMetrics, int, TimeSpan> record)
    {
        var started = silo.Clock.GetTimestamp();
        await operation();
        record(metrics, _id, silo.Clock.GetElapsedTime(started));
    }

    private Task StoreCheckpointAsync(StoreCheckpoint store) =>
        _checkpoints.WriteAsync(new ReplicaCheckpointRecord
        {
            Certificate = store.Certificate,
            Snapshot = store.Snapshot,
            View = store.View,
            ViewStarts = store.ViewStarts.ToArray(),
        });

    /// <summary>
    /// Runs an idempotent durable operation until it succeeds (a USIG batch returns the same UIs
    /// when retried; a checkpoint store overwrites), then hands its result to the core.
    /// </summary>
    private async Task Durably<T>(string what, Func<Task<T>> operation, Func<ReplicaCore, T, TimeSpan, Ready> completed)
    {
        var delay = silo.Options.RetryDelay;
        while (_halted is null && !_stopping.IsCancellationRequested)
        {
            T result;
            try
            {
                result = await operation();
            }
            catch (InconsistentStateException e)
            {
                Halt(e, $"another activation of this replica wrote its {what}");
                return;
            }
            catch (Exception e) when (_halted is null && !_stopping.IsCancellationRequested)
            {
                LogRetry(logger, e, _id, what, delay);
                try
                {
                    await Task.Delay(delay, silo.Clock, _stopping.Token);
                }
                catch (OperationCanceledException)
                {
                    return; // deactivating: the next activation recovers from what is durable
                }
                delay = delay * 2 < silo.Options.MaxRetryDelay ? delay * 2 : silo.Options.MaxRetryDelay;
                continue;
            }
            if (_stopping.IsCancellationRequested) return;
            Step(completed, result);
            return;
        }
    }

    private async Task Durably(string what, Func<Task> operation, Func<ReplicaCore, int, TimeSpan, Ready> completed) =>
        await Durably(what, async () => { await operation(); return 0; }, completed);

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        // Durable operations still retrying stop here: what they had not completed is recovered
        // by the next activation, exactly as after a crash. Only then is the journal closed.
        await _stopping.CancelAsync();
        try
        {
            await Task.WhenAll(_durable.Keys).WaitAsync(cancellationToken);
        }
        catch (Exception e) when (e is OperationCanceledException or TimeoutException)
        {
            // Deactivation is being cut short; the journal refuses writes once disposed.
        }
        catch (Exception)
        {
            // A failed operation was already logged by its retry loop.
        }
        // The SQLite journal holds a connection of its own.
        if (_journal is not null) await _journal.DisposeAsync();
        _sessions?.Dispose();
    }

    // ----- timers -----

    private void ScheduleTick(TimeSpan? next)
    {
        if (next is not { } at || _halted is not null || _tickTimer is null) return;
        if (_tickAt is { } scheduled && scheduled <= at) return;
        _tickAt = at;
        var due = at - Now;
        _tickTimer.Change(due > TimeSpan.Zero ? due : TimeSpan.Zero, Timeout.InfiniteTimeSpan);
    }

    // ----- failure -----

    private void Halt(Exception? exception, string reason)
    {
        if (_halted is not null) return;
        _halted = reason;
        LogHalted(logger, exception, _id, reason);
        // The next message reactivates the replica from its durable state.
        DeactivateOnIdle();
    }

    private void Count(string reason) => _grainRejections[reason] = _grainRejections.GetValueOrDefault(reason) + 1;

    [LoggerMessage(Level = LogLevel.Information, Message = "Replica {ReplicaId} of {N} activated: {Logged} messages in its durable log ({Reissued} UIs re-issued), stored checkpoint {Checkpoint}, view {View}")]
    private static partial void LogActivated(ILogger logger, int replicaId, int n, int logged, int reissued, ulong checkpoint, long view);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Replica {ReplicaId}: the USIG (at {Usig}) issued counters whose messages are not in the log; its stream resumes after them")]
    private static partial void LogCounterGap(ILogger logger, int replicaId, ulong usig);

    [LoggerMessage(Level = LogLevel.Information, Message = "Replica {ReplicaId} installed the snapshot at {Sequence} from replica {From}")]
    private static partial void LogStateInstalled(ILogger logger, int replicaId, ulong sequence, int from);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Replica {ReplicaId} rejected input from {From}: {Reason} ({Detail})")]
    private static partial void LogRejected(ILogger logger, int replicaId, int? from, RejectReason reason, string detail);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Replica {ReplicaId} executed batch {Sequence} (view {View}, primary counter {Counter}, {Requests} requests)")]
    private static partial void LogExecuted(ILogger logger, int replicaId, ulong sequence, long view, ulong counter, int requests);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Replica {ReplicaId}: one-way {Method} to {Target} failed")]
    private static partial void LogSendFailed(ILogger logger, Exception exception, int replicaId, string method, int target);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Replica {ReplicaId}: {What} failed; retrying the same in {Delay}")]
    private static partial void LogRetry(ILogger logger, Exception exception, int replicaId, string what, TimeSpan delay);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Replica {ReplicaId}: its USIG could not verify a message's UIs; the message is dropped")]
    private static partial void LogVerifyFailed(ILogger logger, Exception exception, int replicaId);

    [LoggerMessage(Level = LogLevel.Critical, Message = "Replica {ReplicaId} halted: {Reason}")]
    private static partial void LogHalted(ILogger logger, Exception? exception, int replicaId, string reason);
}
