using Microsoft.Extensions.Logging;
using MinBft.Hosting;
using MinBft.Messages;
using MinBft.Usig;
using Orleans.Runtime;
using Orleans.Storage;

namespace MinBft;

/// <summary>What the USIG grain stores: the USIG's counter state (null until the first issue).</summary>
[GenerateSerializer, Alias("minbft.UsigGrainState")]
public sealed class UsigGrainState
{
    [Id(0)]
    public UsigState? Usig { get; set; }
}

/// <summary>
/// The trusted USIG of replica i (key = i), a thin adapter around <see cref="UsigCore"/>: it
/// loads USIG i's private key from fault domain i's key directory and keeps the counter in
/// fault domain i's storage. Not reentrant: one issue at a time, as the core also enforces.
/// </summary>
[FaultDomainPlacement]
public sealed partial class UsigGrain(
    MinBftSilo silo,
    [PersistentState("usig", SqliteGrainStorageSiloBuilderExtensions.DefaultProviderName)] IPersistentState<UsigGrainState> state,
    ILogger<UsigGrain> logger) : Grain, IUsigGrain, IIncomingGrainCallFilter
{
    private UsigCore? _core;
    private byte[] _publicKey = [];

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        var id = checked((int)this.GetPrimaryKeyLong());
        // Refuse outside fault domain i: there it would find another domain's key and store.
        silo.EnsureLocal(id, "USIG");
        var certifier = silo.LoadUsigCertifier(id);
        _publicKey = certifier is Ed25519UsigCertifier ed25519 ? ed25519.PublicKey : [];
        var epoch = silo.Manifest.Replica(id).UsigEpoch;
        _core = new UsigCore(id, epoch, certifier, new GrainStateCounterStore(state));
        // Fails fast on a store of another epoch or a corrupted state.
        var loaded = await _core.LoadAsync(cancellationToken);
        LogActivated(logger, id, epoch, loaded.Counter);
    }

    /// <summary>
    /// Admits CreateUi only from replica i's grain (see
    /// <see cref="MinBftOptions.UsigServesOnlyItsReplica"/>): a UI issued to anyone else would be
    /// a counter value replica i never certified a message with, a gap its peers stall on.
    /// </summary>
    public Task Invoke(IIncomingGrainCallContext context)
    {
        if (silo.Options.UsigServesOnlyItsReplica
            && context.MethodName is nameof(CreateUis) or nameof(ReissueUi)
            && context.SourceId != GrainFactory.GetGrain<IReplicaGrain>(this.GetPrimaryKeyLong()).GetGrainId())
        {
            LogRefusedCaller(logger, this.GetPrimaryKeyLong(), context.SourceId?.ToString() ?? "unknown");
            throw new UnauthorizedAccessException($"USIG {this.GetPrimaryKeyLong()} issues UIs only to replica {this.GetPrimaryKeyLong()}");
        }
        return context.Invoke();
    }

    public Task<UniqueIdentifier?> ReissueUi(ulong counter, byte[] certifiedDigest)
    {
        ArgumentNullException.ThrowIfNull(certifiedDigest);
        var core = _core ?? throw new InvalidOperationException("USIG not activated");
        return core.ReissueUiAsync(counter, certifiedDigest, CancellationToken.None);
    }

    public async Task<UniqueIdentifier[]> CreateUis(ulong firstCounter, byte[][] certifiedDigests)
    {
        // ArgumentException for a null, empty, oversized or wrong-length batch, from the core,
        // before any state is touched.
        ArgumentNullException.ThrowIfNull(certifiedDigests);
        if (certifiedDigests.Any(d => d is null)) throw new ArgumentException("a digest is null", nameof(certifiedDigests));
        var core = _core ?? throw new InvalidOperationException("USIG not activated");
        try
        {
            return [.. await core.CreateUisAsync(firstCounter, certifiedDigests.Select(d => (ReadOnlyMemory<byte>)d).ToArray(), CancellationToken.None)];
        }
        catch (InconsistentStateException e)
        {
            // Another activation of this USIG wrote the counter (Orleans may briefly run two).
            // This one's view of the counter is stale: it must never issue again. Deactivate so
            // the next call reaches a fresh activation that reloads the store.
            LogConflictingActivation(logger, e, core.ReplicaId);
            DeactivateOnIdle();
            throw;
        }
    }

    public async Task<UsigIdentity> GetIdentity()
    {
        var core = _core ?? throw new InvalidOperationException("USIG not activated");
        var current = await core.LoadAsync(CancellationToken.None);
        return new UsigIdentity(core.ReplicaId, core.Epoch, (byte[])_publicKey.Clone(), current.Counter, UsigCore.RecentWindow, UsigCore.MaxBatch);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "USIG {ReplicaId} activated: epoch {Epoch}, last counter {Counter}")]
    private static partial void LogActivated(ILogger logger, int replicaId, ulong epoch, ulong counter);

    [LoggerMessage(Level = LogLevel.Warning, Message = "USIG {ReplicaId} refused a call from {Caller}: only its replica may ask")]
    private static partial void LogRefusedCaller(ILogger logger, long replicaId, string caller);

    [LoggerMessage(Level = LogLevel.Warning, Message = "USIG {ReplicaId}: another activation wrote the counter; deactivating without issuing")]
    private static partial void LogConflictingActivation(ILogger logger, Exception exception, int replicaId);

    /// <summary>
    /// The USIG's counter store over the grain's persistent state. Writes go through the
    /// provider's ETag check, so a write based on a stale read fails instead of forking the
    /// counter; a read always goes back to storage, because the core only re-reads after a
    /// write whose outcome is unknown.
    /// </summary>
    private sealed class GrainStateCounterStore(IPersistentState<UsigGrainState> state) : IUsigCounterStore
    {
        public async Task<UsigState?> ReadAsync(CancellationToken cancellationToken)
        {
            // The activation already read the state once; reading again costs a query but also
            // refreshes the ETag after a failed write, which a retry must write against.
            await state.ReadStateAsync(cancellationToken);
            return state.State.Usig;
        }

        public async Task WriteAsync(UsigState usig, CancellationToken cancellationToken)
        {
            // A new object per write: the provider may serialize it after this method yields.
            state.State = new UsigGrainState { Usig = usig };
            await state.WriteStateAsync(cancellationToken);
        }
    }
}
