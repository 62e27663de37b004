using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using MinBft.Crypto;
using MinBft.Application;
using MinBft.Hosting;
using MinBft.Hosting.Journal;
using MinBft.Messages;
using MinBft.Protocol;
using MinBft.ReplicaHost;
using Orleans.Concurrency;
using Orleans.Runtime;
using Orleans.Storage;
using Request = MinBft.Messages.Request;

namespace MinBft;

/// <summary>
/// Replica i (key = i): I/O around a <see cref="ReplicaCore"/>, which decides everything (see
/// Grains/Hosting/HOSTING.md, "The replica grain"). Inputs go into the core one at a time; its
/// effects are applied as they come: sends go out at once (<see cref="ReplicaTransport"/>), and
/// each of the three durable operations (log write, USIG batch, checkpoint store) runs in the
/// background (<see cref="DurableOperations"/>), one of each kind at a time, and reports its
/// completion back to the core. Reentrant, so the replica keeps taking messages while its store
/// or USIG is busy; every core step runs to completion within one turn.
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
    private ReplicaTransport _transport = null!;
    private ReplicaStore? _store;
    private DurableOperations _durable = null!;
    private CommitLatency _commitLatency = null!;
    private BatchTracing _tracing = null!;

    // HMAC scheme: the replica's own USIG verifies the UI claims of what the core is given.
    private UiPreverifier? _preverifier;
    private ReplicaClientSessions? _sessions;

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
        var settings = silo.ProtocolSettings(_id) with
        {
            UsigReissueWindow = usig.ReissueWindow, UsigMaxBatch = usig.MaxBatch, UsigMaxKeptBytes = usig.MaxKeptBytes,
        };
        var keptCodec = new SerializerKeptMessageCodec(services.GetRequiredService<Orleans.Serialization.Serializer>());
        if (silo.Manifest.UsigScheme == UsigScheme.Hmac) _preverifier = new UiPreverifier(_usig, silo.Manifest.CreatePreverifiedUiVerifier());
        _sessions = new ReplicaClientSessions(_id, silo.CreateReplicaSigner(_id), silo.Options.MaxClientSessions);
        _core = new ReplicaCore(settings, silo.CreateProtocolCrypto(_id, _preverifier?.Verifier, _sessions), _app, keptCodec);
        _started = silo.Clock.GetTimestamp();
        _transport = new ReplicaTransport(_id, silo.Manifest.N, GrainFactory, logger, _sessions);
        _durable = new DurableOperations(_id, silo.Options.RetryDelay, silo.Options.MaxRetryDelay, silo.Clock, logger);
        _commitLatency = new CommitLatency(_id, silo.Clock);
        _tracing = new BatchTracing(_id);

        // Fault domain i's own store: the journal of its stream, the checkpoint in grain storage.
        var storage = services.GetRequiredKeyedService<IGrainStorage>(SqliteGrainStorageSiloBuilderExtensions.DefaultProviderName);
        _store = new ReplicaStore(journals.Create(this.GetGrainId()), new ReplicaCheckpointStore(storage, this.GetGrainId(), services.GetService<CheckpointSnapshotFiles>()));
        // The journal, then what the USIG kept for counters the journal did not reach (a crash
        // between the USIG's write and the journal's).
        var state = (await _store.LoadAsync(usig.LastCounter, cancellationToken)).WithKept(DecodeKept(keptCodec, usig.KeptMessages ?? []));
        // UIs the USIG issued for logged or kept intents but that never became durable: it
        // re-issues them for exactly those digests, so the restarted replica's stream has no gap.
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
        LogActivated(logger, _id, silo.Manifest.N, state.Log.Count, reissue.Count, state.Certificate?.Sequence ?? 0, _core.View);
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
        if (BatchTracing.TakeLinks() is { } links) _tracing.Note([request], links);
        Step(static (core, r, now) => core.OnRequest(r, now), request);
        return Task.CompletedTask;
    }

    public Task SubmitBatch(Request[] requests)
    {
        // Bounded before the core sees it: a proxy may be Byzantine.
        var links = BatchTracing.TakeLinks();
        if (requests is null || requests.Length > MinBft.Encoding.MessageLimits.MaxBatchSize
            || MinBft.Encoding.MessageLimits.BatchBytes(requests) > MinBft.Encoding.MessageLimits.MaxDeliveryBytes)
        {
            Count("MalformedSubmitBatch");
            return Task.CompletedTask;
        }
        if (links is not null) _tracing.Note(requests, links);
        Step(static (core, r, now) => core.OnRequests(r, now), requests);
        return Task.CompletedTask;
    }

    public Task<ClientSessionAccept?> OpenClientSession(ClientSessionOffer offer) =>
        // Never throws: offers come through untrusted proxies; a bad one gets no session.
        Task.FromResult(_sessions?.Open(offer));

    public Task<ReplicaStatus> GetStatus() => Task.FromResult(Status(stateDigest: true));

    public Task<ReplicaStatus> GetStatusWithoutStateDigest() => Task.FromResult(Status(stateDigest: false));

    private ReplicaStatus Status(bool stateDigest) =>
        ReplicaStatusReport.Of(_id, _core, stateDigest ? _app : null, _grainRejections, _halted, silo.UsigMode, _sessions, _durable.FailingFor, silo.LastHalt(_id),
            silo.IsolatedUsig?.PeerProcessCpu());

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
            var (view, evictions, withheld) = (_core.View, _core.ClientEvictions, _core.ViewChangesWithheld);
            var ready = input(_core, argument, Now);
            if (_core.View > view) metrics.ViewChanged(_id, _core.View - view);
            if (_core.ClientEvictions > evictions) metrics.ClientsEvicted(_id, _core.ClientEvictions - evictions);
            if (_core.ViewChangesWithheld > withheld) LogViewChangeWithheld(logger, _id, _core.View, _core.StableCheckpoint.Sequence, _core.GapCommitHorizon);
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
        var stateInstalled = false;
        foreach (var effect in ready.Effects)
        {
            var commit = _commitLatency.Observe(effect);
            if (commit is { } took) metrics.Committed(_id, took);
            if (_transport.Dispatch(effect)) continue;
            switch (effect)
            {
                case WriteLog write:
                    Durably("log", () => _store!.WriteLogAsync(write.Write), static (core, _, now) => core.OnLogWritten(now),
                        took => metrics.StorageWritten(_id, "log", took));
                    break;
                case CertifyUis certify:
                    Durably("USIG", () => _usig.CreateUis(certify.FirstCounter, certify.Digests.ToArray(), certify.Kept?.ToArray()), static (core, uis, now) => core.OnUisIssued(uis, now),
                        took => metrics.UsigIssued(_id, took));
                    break;
                case StoreCheckpoint store:
                    Durably("checkpoint", () => _store!.StoreCheckpointAsync(store), static (core, _, now) => core.OnCheckpointStored(now),
                        took => metrics.StorageWritten(_id, "checkpoint", took));
                    break;
                case Executed executed:
                    LogExecuted(logger, _id, executed.Sequence, executed.View, executed.PrimaryCounter, executed.Requests.Count);
                    metrics.Executed(_id, executed.Requests.Count);
                    _tracing.Executed(executed, commit);
                    break;
                case Rejected rejected:
                    LogRejected(logger, _id, rejected.From, rejected.Reason, rejected.Detail);
                    metrics.Rejected(_id, rejected.Reason.ToString());
                    break;
                case StateInstalled installed:
                    stateInstalled = true;
                    LogStateInstalled(logger, _id, installed.Sequence, installed.From);
                    break;
            }
        }
        _transport.Flush();
        _commitLatency.AfterStep(_core.View, _core.ExecutedSequence, stateInstalled);
        ScheduleTick(ready.NextTick);
    }

    /// <summary>Runs a durable operation in the background until it succeeds, then hands its
    /// result to the core (<see cref="DurableOperations"/>).</summary>
    private void Durably<T>(string what, Func<Task<T>> operation, Func<ReplicaCore, T, TimeSpan, Ready> completed, Action<TimeSpan> took) =>
        _durable.Run(
            what,
            operation,
            (result, elapsed) =>
            {
                took(elapsed);
                Step(completed, result);
            },
            conflict: e => Halt(e, $"another activation of this replica wrote its {what}: {e.Message}"),
            halted: () => _halted is not null);

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        LogDeactivating(logger, _id, reason.ReasonCode, reason.Description);
        // Durable operations still retrying stop here: what they had not completed is recovered
        // by the next activation, exactly as after a crash. Only then is the journal closed.
        if (_durable is not null) await _durable.StopAsync(cancellationToken);
        if (_store is not null) await _store.DisposeAsync();
        _sessions?.Dispose();
    }

    /// <summary>The messages the USIG kept, decoded; none if any fails to decode (then the counters
    /// they cover are a gap the core handles, and the USIG's re-issue would refuse them anyway).</summary>
    private IReadOnlyList<CertifiedMessage> DecodeKept(SerializerKeptMessageCodec codec, byte[][] kept)
    {
        try
        {
            return kept.Select(m => codec.Decode(m)).ToList();
        }
        catch (Exception e)
        {
            LogKeptUndecodable(logger, e, _id, kept.Length);
            return [];
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
        silo.NoteHalt(_id, reason);
        LogHalted(logger, exception, _id, reason);
        // The next message reactivates the replica from its durable state.
        DeactivateOnIdle();
    }

    private void Count(string reason) => _grainRejections[reason] = _grainRejections.GetValueOrDefault(reason) + 1;
}
