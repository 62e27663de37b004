using System.Security.Cryptography;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using MinBft.Application;
using MinBft.Encoding;
using MinBft.Hosting;
using MinBft.Messages;
using MinBft.Protocol;
using Orleans.Concurrency;
using Orleans.Runtime;
using Orleans.Storage;
using Request = MinBft.Messages.Request;

namespace MinBft;

/// <summary>
/// Replica i (key = i): a thin adapter that hosts a <see cref="ReplicaCore"/>. Inputs (peer
/// messages, client requests, timer ticks, UIs from the USIG) go into the core synchronously,
/// one at a time; the effects it returns are applied in order:
/// <list type="bullet">
/// <item>RequestUi: the message is appended to the sent log without its UI (an intent) and made
/// durable by the persist pump (several coalesce into one write, which rewrites only the
/// segments touched, see <see cref="ReplicaLogStore"/>); the USIG pump asks USIG i for one UI
/// at a time, in order, each only once its intent is durable;</item>
/// <item>PersistSent: the certified message replaces its intent; the persist pump writes its UI
/// lazily. Until then the USIG can re-issue that UI (it keeps the digests of its last
/// <see cref="Usig.UsigCore.RecentWindow"/> issues, and the pump never runs further ahead), so
/// after a crash every counter the USIG issued is recovered from the log: no gap;</item>
/// <item>Send, ForwardRequest, SendReply: released in order; a certified message's body is
/// already durable and its UI recoverable (persist before send);</item>
/// <item>Executed, Rejected: counted and logged.</item>
/// </list>
/// Only the two pumps await, so the grain is reentrant: it keeps taking messages while its USIG
/// or its storage is busy, which is what lets the primary pipeline batches. Interleaving is safe
/// because every core step runs to completion within one turn.
/// </summary>
/// <remarks>
/// Crash recovery: a reactivated replica hands the core what it kept durably (its latest stable
/// checkpoint with snapshot, its view, its sent log, and the USIG's counter) and the core resumes
/// from there (<see cref="ReplicaCore.Restore"/>): peers' streams are picked up at their
/// CHECKPOINT anchors and a newer snapshot is fetched from peers when they have moved on. The
/// durable stable checkpoint is written off the send path (a certified checkpoint can always be
/// fetched again), and the sent log is trimmed only below what that stored checkpoint covers.
/// </remarks>
[FaultDomainPlacement]
[Reentrant]
[KeepAlive] // The core's state lives in memory: idle collection would throw it away.
public sealed partial class ReplicaGrain(
    MinBftSilo silo,
    IStateMachineFactory stateMachines,
    IServiceProvider services,
    ILogger<ReplicaGrain> logger) : Grain, IReplicaGrain
{
    // Effects held back while the sent log is not durable (or UI requests while the USIG fails);
    // beyond this many, storage or USIG is considered down.
    private const int MaxOutbox = 100_000;

    private readonly Queue<RequestUi> _uiRequests = new();
    private readonly Queue<(ulong DurableNeeded, Effect Effect)> _outbox = new();
    // This replica's certified messages from counter _sentLogFirst on: the durable ones and
    // those waiting for the persist pump (dropped once durable and garbage-collected by the core).
    private readonly List<CertifiedMessage> _sentLog = [];
    private readonly Dictionary<string, long> _grainRejections = new(StringComparer.Ordinal);

    private int _id;
    private ReplicaCore _core = null!;
    private IStateMachine _app = null!;
    private long _started;
    private ulong _sentLogFirst = 1;
    // Counters whose entry (intent or certified) is durable; whose UI is in memory; whose UI is durable.
    private ulong _durable;
    private ulong _certified;
    private ulong _uiDurable;
    private TaskCompletionSource _persisted = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private bool _usigPumpRunning;
    private bool _persistPumpRunning;
    private string? _halted;
    private IGrainTimer? _tickTimer;
    private TimeSpan? _tickAt;
    private IUsigGrain _usig = null!;
    private IReplicaGrain[] _peers = [];
    private ReplicaLogStore _log = null!;
    private ReplicaCheckpointStore _checkpoints = null!;
    // The newest stable checkpoint waiting to be stored, and the position of the stored one.
    private CheckpointStable? _checkpointToStore;
    private ulong _storedCheckpoint;
    private bool _checkpointPumpRunning;

    private TimeSpan Now => silo.Clock.GetElapsedTime(_started);

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        _id = checked((int)this.GetPrimaryKeyLong());
        // Refuse outside fault domain i: there it would hold another domain's keys and store.
        silo.EnsureLocal(_id, "replica");
        _app = stateMachines.Create(_id);
        _core = new ReplicaCore(silo.ProtocolSettings(_id), silo.CreateProtocolCrypto(_id), _app);
        _started = silo.Clock.GetTimestamp();
        _usig = GrainFactory.GetGrain<IUsigGrain>(_id);
        _peers = Enumerable.Range(0, silo.Manifest.N).Select(i => GrainFactory.GetGrain<IReplicaGrain>(i)).ToArray();

        // Fault domain i's own store ("minbft" is bound per silo to the domain's storage).
        var storage = services.GetRequiredKeyedService<IGrainStorage>(SqliteGrainStorageSiloBuilderExtensions.DefaultProviderName);
        _log = new ReplicaLogStore(storage, this.GetGrainId(), silo.Options.SentLogSegmentSize);
        _checkpoints = new ReplicaCheckpointStore(storage, this.GetGrainId());
        var (view, first, log) = await _log.LoadAsync();
        var checkpoint = await _checkpoints.LoadAsync();
        _storedCheckpoint = checkpoint.Certificate?.Sequence ?? 0;
        // The USIG's counter tells which logged intents it certified: their UIs are re-issued;
        // the others were never certified, so never sent, and are dropped.
        var usig = await _usig.GetIdentity();
        var storedUis = log.TakeWhile(m => !m.Ui.IsNone).Count();
        for (var i = storedUis; i < log.Count; i++)
        {
            var counter = first + (ulong)i;
            var ui = counter <= usig.LastCounter ? await _usig.ReissueUi(counter, MessageEncoding.CertifiedDigest(log[i])) : null;
            if (ui is null)
            {
                log.RemoveRange(i, log.Count - i);
                break;
            }
            log[i] = log[i].WithUi(ui);
        }
        var ready = _core.Restore(
            new RecoveredState(view, checkpoint.Certificate, checkpoint.Snapshot, checkpoint.ViewStarts, log, usig.LastCounter),
            Now);
        if (_core.RestartedAfterCounterGap)
        {
            // Those counters were never sent (persist before send) and cannot be filled: the
            // stored log resumes after them.
            await _log.ResetAsync(usig.LastCounter + 1);
            _sentLogFirst = usig.LastCounter + 1;
            _durable = _certified = _uiDurable = usig.LastCounter;
            LogCounterGap(logger, _id, first + (ulong)log.Count - 1, usig.LastCounter);
        }
        else
        {
            _sentLog.AddRange(log);
            _sentLogFirst = log.Count > 0 ? first : usig.LastCounter + 1;
            _durable = _certified = _sentLogFirst + (ulong)log.Count - 1;
            _uiDurable = Math.Min(_durable, _sentLogFirst + (ulong)storedUis - 1); // re-issued UIs get written
        }

        _tickTimer = this.RegisterGrainTimer(OnTickTimer, new GrainTimerCreationOptions(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan)
        {
            Interleave = true,
        });
        var safety = silo.Options.SafetyTickInterval;
        this.RegisterGrainTimer(OnSafetyTick, new GrainTimerCreationOptions(safety, safety) { Interleave = true, KeepAlive = true });
        LogActivated(logger, _id, silo.Manifest.N, log.Count, _storedCheckpoint, _core.View);
        Apply(ready);
    }

    // ----- inputs: network input never throws; the core authenticates, rejects and counts -----

    public Task Deliver(ReplicaMessage message)
    {
        Step(static (core, m, now) => core.OnMessage(m, now), message);
        return Task.CompletedTask;
    }

    public Task Submit(Request request)
    {
        Step(static (core, r, now) => core.OnRequest(r, now), request);
        return Task.CompletedTask;
    }

    public Task<ReplicaStatus> GetStatus()
    {
        var rejections = new Dictionary<string, long>(_grainRejections, StringComparer.Ordinal);
        foreach (var (reason, count) in _core.Rejections) rejections[reason.ToString()] = count;
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
            (int)Math.Min(int.MaxValue, _uiDurable - Math.Min(_uiDurable, _core.SentLogFirstCounter - 1)),
            _halted,
            Convert.ToHexString(_core.HistoryDigest),
            _core.StableCheckpoint.Sequence));
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
            Apply(input(_core, argument, Now));
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
                case RequestUi request:
                    // Logged before it is certified (an intent), so a crash cannot lose a certified message.
                    ProtocolInvariantException.Check(request.Message.Ui.IsNone, "an intent has no UI yet");
                    _sentLog.Add(request.Message);
                    _uiRequests.Enqueue(request);
                    if (_uiRequests.Count > MaxOutbox)
                    {
                        Halt(null, $"{_uiRequests.Count} messages waiting for a UI; the USIG keeps failing");
                        return;
                    }
                    break;
                case PersistSent persist:
                    AppendSent(persist.Message);
                    break;
                case Send or ForwardRequest or SendReply:
                    // Released once every message persisted before it in this order is durable.
                    _outbox.Enqueue((_certified, effect));
                    if (_outbox.Count > MaxOutbox)
                    {
                        // Storage has been failing for long while the core goes on: stop (and
                        // reload from storage later) rather than grow without bound.
                        Halt(null, $"{_outbox.Count} messages waiting for the sent log to become durable; storage keeps failing");
                        return;
                    }
                    break;
                case Executed executed:
                    OnExecuted(executed);
                    break;
                case Rejected rejected:
                    LogRejected(logger, _id, rejected.From, rejected.Reason, rejected.Detail);
                    break;
                case CheckpointStable stable:
                    _checkpointToStore = stable;
                    break;
                case StateInstalled installed:
                    LogStateInstalled(logger, _id, installed.Sequence, installed.From);
                    break;
            }
        }
        if (_uiRequests.Count > 0 && !_usigPumpRunning) _ = RunUsigPump();
        if ((_durable < LastSent || _uiDurable < _certified) && !_persistPumpRunning) _ = RunPersistPump();
        if (_checkpointToStore is not null && !_checkpointPumpRunning) _ = RunCheckpointPump();
        FlushOutbox();
        ScheduleTick(ready.NextTick);
    }

    private ulong LastSent => _sentLogFirst + (ulong)_sentLog.Count - 1;

    private void AppendSent(CertifiedMessage message)
    {
        // The USIG pump already put the certified message in place of its intent.
        var counter = message.Ui.Counter;
        ProtocolInvariantException.Check(counter >= _sentLogFirst && counter <= _certified
            && ReferenceEquals(_sentLog[(int)(counter - _sentLogFirst)], message), "a counter is used for one message only, logged as its intent first");
    }

    private void OnExecuted(Executed executed)
    {
        LogExecuted(logger, _id, executed.Sequence, executed.View, executed.PrimaryCounter, executed.Requests.Count);
    }

    private void FlushOutbox()
    {
        while (_halted is null && _outbox.TryPeek(out var next) && next.DurableNeeded <= _durable)
        {
            _outbox.Dequeue();
            Dispatch(next.Effect);
        }
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
                // One-way, as above.
                if (to != _id && to >= 0 && to < _peers.Length) OneWay(_peers[to].Deliver(send.Message), "Deliver", to);
                break;
            case ForwardRequest forward:
                // One-way: forwarding only helps a primary that missed the request; nothing waits on it.
                if (forward.To >= 0 && forward.To < _peers.Length) OneWay(_peers[forward.To].Submit(forward.Request), "Submit", forward.To);
                break;
            case SendReply reply:
                // One-way: the proxy is untrusted and may be gone; the client retransmits and the
                // core resends the cached reply.
                OneWay(GrainFactory.GetGrain<IClientProxyGrain>(reply.Reply.ClientId).DeliverReply(reply.Reply), "DeliverReply", -1);
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

    // ----- pumps: the only places that await -----

    /// <summary>
    /// Asks the USIG for one UI at a time, in the order the core requested them. A failed call
    /// is retried with the same digest: the USIG returns the same UI if the failed call had in
    /// fact issued it, so a retry never burns a counter and never leaves a gap.
    /// </summary>
    private async Task RunUsigPump()
    {
        _usigPumpRunning = true;
        try
        {
            var backoff = new Backoff(silo.Options.RetryDelay, silo.Options.MaxRetryDelay, silo.Clock);
            while (_halted is null && _uiRequests.TryPeek(out var request))
            {
                var counter = _certified + 1;
                // Persist before certify: the intent is durable, and the USIG's re-issue window
                // still covers every UI not yet durable in the log.
                while (_halted is null && (_durable < counter || counter - _uiDurable >= (ulong)Usig.UsigCore.RecentWindow))
                {
                    // Taken before the pump starts: a write that completes synchronously signals it.
                    var written = _persisted.Task;
                    if (!_persistPumpRunning) _ = RunPersistPump();
                    await written;
                }
                if (_halted is not null) return;
                CertifiedMessage certified;
                try
                {
                    // Awaited: the UI is needed before the message can exist. The USIG is in
                    // this fault domain (same silo), so the call is local.
                    var ui = await _usig.CreateUi(request.CertifiedDigest);
                    certified = request.Message.WithUi(ui);
                    backoff.Reset();
                }
                catch (Exception e) when (_halted is null)
                {
                    LogUsigRetry(logger, e, _id, backoff.Delay);
                    await backoff.WaitAsync();
                    continue;
                }
                if (_halted is not null) return;
                if (certified.Ui.Counter != counter)
                {
                    Halt(null, $"USIG issued counter {certified.Ui.Counter} where {counter} was logged: another caller used it");
                    return;
                }
                _sentLog[(int)(counter - _sentLogFirst)] = certified;
                _certified = counter;
                _uiRequests.Dequeue();
                Step(static (core, m, now) => core.OnUiIssued(m, now), certified);
            }
        }
        finally
        {
            _usigPumpRunning = false;
        }
    }

    /// <summary>
    /// Makes the sent log durable. Everything appended while a write is in flight goes into the
    /// next write, so a burst of messages costs one or two writes, not one each.
    /// </summary>
    private async Task RunPersistPump()
    {
        _persistPumpRunning = true;
        try
        {
            var backoff = new Backoff(silo.Options.RetryDelay, silo.Options.MaxRetryDelay, silo.Clock);
            while (_halted is null && (_durable < LastSent || _uiDurable < _certified))
            {
                var target = LastSent;
                var certifiedTarget = _certified;
                try
                {
                    // Awaited: a message is certified only once its intent is durable. The store
                    // copies what it writes before yielding; other turns keep appending.
                    await _log.WriteAsync(_core.View, _sentLog, _sentLogFirst, _durable, _uiDurable, certifiedTarget);
                    _durable = target;
                    _uiDurable = certifiedTarget;
                    var persisted = _persisted;
                    _persisted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    persisted.TrySetResult();
                    backoff.Reset();
                    FlushOutbox();
                    await TrimAsync();
                }
                catch (InconsistentStateException e)
                {
                    // Another activation of this replica wrote its state: this one is stale.
                    Halt(e, "another activation of this replica wrote its state");
                    return;
                }
                catch (Exception e) when (_halted is null)
                {
                    LogPersistRetry(logger, e, _id, backoff.Delay);
                    await backoff.WaitAsync();
                }
            }
        }
        finally
        {
            _persistPumpRunning = false;
        }
    }

    /// <summary>
    /// Drops, in storage and in memory, the whole segments the core no longer keeps (below its
    /// sent-log anchor after a stable checkpoint): storage and memory stay bounded. Only durable
    /// messages are dropped, and never the segment still being written.
    /// </summary>
    private async Task TrimAsync()
    {
        // Never drop messages the stored checkpoint does not cover yet: after a restart, they
        // say what this replica committed above it.
        if (_storedCheckpoint < _core.StableCheckpoint.Sequence) return;
        var keepFrom = Math.Min(_core.SentLogFirstCounter, _uiDurable + 1);
        if (keepFrom < _sentLogFirst + (ulong)_log.SegmentSize) return;
        var first = await _log.TrimAsync(keepFrom);
        if (first <= _sentLogFirst) return;
        _sentLog.RemoveRange(0, (int)(first - _sentLogFirst));
        _sentLogFirst = first;
    }

    /// <summary>
    /// Stores the newest stable checkpoint (snapshot included), latest wins. Off the send path:
    /// nothing waits for it, since peers can serve a certified checkpoint again.
    /// </summary>
    private async Task RunCheckpointPump()
    {
        _checkpointPumpRunning = true;
        try
        {
            var backoff = new Backoff(silo.Options.RetryDelay, silo.Options.MaxRetryDelay, silo.Clock);
            while (_halted is null && _checkpointToStore is { } next)
            {
                try
                {
                    await _checkpoints.WriteAsync(new ReplicaCheckpointRecord
                    {
                        Certificate = next.Certificate,
                        Snapshot = next.Snapshot,
                        View = next.View,
                        ViewStarts = next.ViewStarts.ToArray(),
                    });
                    _storedCheckpoint = next.Certificate.Sequence;
                    if (ReferenceEquals(_checkpointToStore, next)) _checkpointToStore = null;
                    backoff.Reset();
                }
                catch (InconsistentStateException e)
                {
                    Halt(e, "another activation of this replica wrote its checkpoint");
                    return;
                }
                catch (Exception e) when (_halted is null)
                {
                    LogCheckpointRetry(logger, e, _id, backoff.Delay);
                    await backoff.WaitAsync();
                }
            }
        }
        finally
        {
            _checkpointPumpRunning = false;
        }
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
        _outbox.Clear();
        _persisted.TrySetResult(); // a pump waiting for a write gives up
        LogHalted(logger, exception, _id, reason);
        // The next message reactivates the replica from its durable state.
        DeactivateOnIdle();
    }

    private void Count(string reason) => _grainRejections[reason] = _grainRejections.GetValueOrDefault(reason) + 1;

    /// <summary>Retry delays for the pumps: start small, double on each failure up to a cap.</summary>
    private sealed class Backoff(TimeSpan initial, TimeSpan max, TimeProvider clock)
    {
        private readonly TimeSpan _initial = initial;

        public TimeSpan Delay { get; private set; } = initial;

        public void Reset() => Delay = _initial;

        public async Task WaitAsync()
        {
            await Task.Delay(Delay, clock);
            Delay = Delay * 2 < max ? Delay * 2 : max;
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Replica {ReplicaId} of {N} activated: {Logged} sent messages in its durable log, stored checkpoint {Checkpoint}, view {View}")]
    private static partial void LogActivated(ILogger logger, int replicaId, int n, int logged, ulong checkpoint, long view);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Replica {ReplicaId}: the USIG issued counters {Logged}+1..{Usig} for messages that never became durable; its stream resumes after them")]
    private static partial void LogCounterGap(ILogger logger, int replicaId, ulong logged, ulong usig);

    [LoggerMessage(Level = LogLevel.Information, Message = "Replica {ReplicaId} installed the snapshot at {Sequence} from replica {From}")]
    private static partial void LogStateInstalled(ILogger logger, int replicaId, ulong sequence, int from);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Replica {ReplicaId}: storing the stable checkpoint failed; retrying in {Delay}")]
    private static partial void LogCheckpointRetry(ILogger logger, Exception exception, int replicaId, TimeSpan delay);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Replica {ReplicaId} rejected input from {From}: {Reason} ({Detail})")]
    private static partial void LogRejected(ILogger logger, int replicaId, int? from, RejectReason reason, string detail);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Replica {ReplicaId} executed batch {Sequence} (view {View}, primary counter {Counter}, {Requests} requests)")]
    private static partial void LogExecuted(ILogger logger, int replicaId, ulong sequence, long view, ulong counter, int requests);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Replica {ReplicaId}: one-way {Method} to {Target} failed")]
    private static partial void LogSendFailed(ILogger logger, Exception exception, int replicaId, string method, int target);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Replica {ReplicaId}: USIG call failed; retrying the same digest in {Delay}")]
    private static partial void LogUsigRetry(ILogger logger, Exception exception, int replicaId, TimeSpan delay);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Replica {ReplicaId}: writing the sent log failed; retrying in {Delay}")]
    private static partial void LogPersistRetry(ILogger logger, Exception exception, int replicaId, TimeSpan delay);

    [LoggerMessage(Level = LogLevel.Critical, Message = "Replica {ReplicaId} halted: {Reason}")]
    private static partial void LogHalted(ILogger logger, Exception? exception, int replicaId, string reason);
}
