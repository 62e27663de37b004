using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using MinBft.Hosting;
using MinBft.Messages;
using MinBft.Usig;
using Orleans.Runtime;
using Orleans.Storage;

namespace MinBft;

/// <summary>
/// The Orleans-facing adapter of USIG i (key = i), placed only in fault domain i. In-process mode:
/// it runs the USIG library's <see cref="UsigCore"/> in the silo, with USIG i's key from the
/// domain's key directory and the counter in the domain's grain storage. Not reentrant: one call
/// at a time, as the core also enforces.
/// </summary>
[FaultDomainPlacement]
public sealed partial class UsigGrain(MinBftSilo silo, IServiceProvider services, ILogger<UsigGrain> logger) : Grain, IUsigGrain, IIncomingGrainCallFilter
{
    private UsigCore? _core;

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        var id = checked((int)this.GetPrimaryKeyLong());
        // Refuse outside fault domain i: there it would find another domain's key and store.
        silo.EnsureLocal(id, "USIG");
        var epoch = silo.Manifest.Replica(id).UsigEpoch;
        var store = new GrainStorageCounterStore(
            services.GetRequiredKeyedService<IGrainStorage>(SqliteGrainStorageSiloBuilderExtensions.DefaultProviderName), this.GetGrainId());
        if (silo.Options.Usig.InitializeEpoch is { } initialize)
        {
            if (initialize != epoch)
                throw new InvalidOperationException($"{MinBftOptions.SectionName}:Usig:InitializeEpoch is {initialize} but the manifest gives USIG {id} epoch {epoch}");
            if (await UsigCore.InitializeAsync(store, epoch, cancellationToken)) LogInitialized(logger, id, epoch);
        }
        _core = new UsigCore(id, epoch, silo.LoadUsigCertifier(id), store);
        // Fails fast on a missing store (never initialised, or lost), another epoch, or a corrupted state.
        var loaded = await _core.LoadAsync(cancellationToken);
        LogActivated(logger, id, epoch, loaded.Counter);
    }

    /// <summary>
    /// Admits CreateUis and ReissueUi only from replica i's grain (see
    /// <see cref="MinBftOptions.UsigServesOnlyItsReplica"/>): a UI issued to anyone else would be
    /// a counter value replica i never certified a message with, a gap its peers stall on. The
    /// caller's id comes from an Orleans message header: this guards against mistakes within the
    /// silo, not against code running in it (isolation is the USIG program's job).
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

    public async Task<UniqueIdentifier?> ReissueUi(ulong counter, byte[] certifiedDigest)
    {
        ArgumentNullException.ThrowIfNull(certifiedDigest);
        return (await Core.ReissueUiAsync(counter, certifiedDigest, CancellationToken.None))?.ToUniqueIdentifier();
    }

    public async Task<UniqueIdentifier[]> CreateUis(ulong firstCounter, byte[][] certifiedDigests)
    {
        // ArgumentException for a null, empty, oversized or wrong-length batch, before any state is touched.
        ArgumentNullException.ThrowIfNull(certifiedDigests);
        if (certifiedDigests.Any(d => d is null)) throw new ArgumentException("a digest is null", nameof(certifiedDigests));
        var core = Core;
        try
        {
            var uis = await core.CreateUisAsync(firstCounter, certifiedDigests.Select(d => (ReadOnlyMemory<byte>)d).ToArray(), CancellationToken.None);
            return [.. uis.Select(u => u.ToUniqueIdentifier())];
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
        var core = Core;
        var current = await core.LoadAsync(CancellationToken.None);
        return new UsigIdentity(core.ReplicaId, core.Epoch, core.Certifier.PublicKey, current.Counter, UsigCore.RecentWindow, UsigCore.MaxBatch);
    }

    private UsigCore Core => _core ?? throw new InvalidOperationException("USIG not activated");

    [LoggerMessage(Level = LogLevel.Information, Message = "USIG {ReplicaId} activated: epoch {Epoch}, last counter {Counter}")]
    private static partial void LogActivated(ILogger logger, int replicaId, ulong epoch, ulong counter);

    [LoggerMessage(Level = LogLevel.Warning, Message = "USIG {ReplicaId}: store initialised for epoch {Epoch} (counter 0), as configured")]
    private static partial void LogInitialized(ILogger logger, int replicaId, ulong epoch);

    [LoggerMessage(Level = LogLevel.Warning, Message = "USIG {ReplicaId} refused a call from {Caller}: only its replica may ask")]
    private static partial void LogRefusedCaller(ILogger logger, long replicaId, string caller);

    [LoggerMessage(Level = LogLevel.Warning, Message = "USIG {ReplicaId}: another activation wrote the counter; deactivating without issuing")]
    private static partial void LogConflictingActivation(ILogger logger, Exception exception, int replicaId);
}
