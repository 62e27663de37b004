using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using MinBft.Encoding;
using MinBft.Hosting;
using MinBft.Messages;
using MinBft.Usig;
using Orleans.Runtime;
using Orleans.Storage;

namespace MinBft;

/// <summary>
/// The Orleans-facing adapter of USIG i (key = i), placed only in fault domain i. Not reentrant:
/// one call at a time, as the USIG itself also enforces.
/// <list type="bullet">
/// <item>isolated (<see cref="MinBftUsigOptions.Endpoint"/>): it forwards every call to fault
/// domain i's USIG program and holds no key;</item>
/// <item>in-process: it runs the same <see cref="UsigCore"/> from the USIG library in the silo,
/// with USIG i's key from <c>domain-i/usig/</c> and the counter in the domain's counter file
/// (<see cref="EmbeddedUsigCounterFile"/>, embedded storage) or grain storage (Redis).
/// Whoever controls the silo process then controls the USIG: not isolated, and said so.</item>
/// </list>
/// </summary>
[FaultDomainPlacement]
public sealed partial class UsigGrain(MinBftSilo silo, IServiceProvider services, ILogger<UsigGrain> logger) : Grain, IUsigGrain, IIncomingGrainCallFilter
{
    private UsigCore? _core;
    private UsigClient? _remote;
    // In-process with embedded storage: the counter file this activation holds (and locks).
    private IDisposable? _counterFile;

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        var id = checked((int)this.GetPrimaryKeyLong());
        // Refuse outside fault domain i: there it would find another domain's key and store.
        silo.EnsureLocal(id, "USIG");
        var epoch = silo.Manifest.Replica(id).UsigEpoch;
        if (silo.IsolatedUsig is { } remote)
        {
            // The program must be USIG i of this manifest: the identity peers verify its UIs under.
            var identity = await remote.GetIdentityAsync(cancellationToken);
            if (IdentityMismatch(silo.Manifest, id, identity) is { } mismatch)
                throw new InvalidOperationException($"the USIG at {remote.SocketPath} {mismatch}: refusing it");
            _remote = remote;
            LogActivated(logger, id, epoch, identity.LastCounter, MinBftSilo.IsolatedUsigMode + " at " + silo.Options.Usig.Endpoint);
            return;
        }
        var initialize = silo.Options.Usig.InitializeEpoch;
        if (initialize is not null && initialize != epoch)
            throw new InvalidOperationException($"{MinBftOptions.SectionName}:Usig:InitializeEpoch is {initialize} but the manifest gives USIG {id} epoch {epoch}");
        IUsigCounterStore store = new GrainStorageCounterStore(
            services.GetRequiredKeyedService<IGrainStorage>(SqliteGrainStorageSiloBuilderExtensions.DefaultProviderName), this.GetGrainId());
        if (OperatingSystem.IsLinux() && silo.Options is { UseEmbeddedStorage: true, Storage: MinBftStorageKind.Sqlite })
        {
            var file = await EmbeddedUsigCounterFile.OpenAsync(
                EmbeddedUsigCounterFile.PathFor(silo.Options.DataDirectory, id), id, (GrainStorageCounterStore)store, initializing: initialize is not null);
            (store, _counterFile) = (file, file);
        }
        try
        {
            if (initialize is not null && await UsigCore.InitializeAsync(store, epoch, cancellationToken)) LogInitialized(logger, id, epoch);
            _core = new UsigCore(id, epoch, silo.LoadUsigCertifier(id), store);
            // Fails fast on a missing store (never initialised, or lost), another epoch, or a corrupted state.
            var loaded = await _core.LoadAsync(cancellationToken);
            LogActivated(logger, id, epoch, loaded.Counter, MinBftSilo.InProcessUsigMode);
        }
        catch
        {
            // The file stays locked while open: a failed activation must not keep it from the next.
            _counterFile?.Dispose();
            _counterFile = null;
            throw;
        }
    }

    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        _counterFile?.Dispose();
        _counterFile = null;
        return Task.CompletedTask;
    }

    /// <summary>
    /// Admits CreateUis and ReissueUi only from replica i's grain (see
    /// <see cref="MinBftOptions.UsigServesOnlyItsReplica"/>): a UI issued to anyone else would be
    /// a counter value replica i never certified a message with, a gap its peers stall on. The
    /// caller's id comes from an Orleans message header: this guards against mistakes within the
    /// silo, not against code running in it (isolation is the USIG program's job).
    /// </summary>
    // Replica i's grain id, made once (GetGrain resolves the interface type on every call).
    private GrainId? _replica;

    public Task Invoke(IIncomingGrainCallContext context)
    {
        if (silo.Options.UsigServesOnlyItsReplica
            && context.MethodName is nameof(CreateUis) or nameof(ReissueUi)
            && context.SourceId != (_replica ??= GrainFactory.GetGrain<IReplicaGrain>(this.GetPrimaryKeyLong()).GetGrainId()))
        {
            LogRefusedCaller(logger, this.GetPrimaryKeyLong(), context.SourceId?.ToString() ?? "unknown");
            throw new UnauthorizedAccessException($"USIG {this.GetPrimaryKeyLong()} issues UIs only to replica {this.GetPrimaryKeyLong()}");
        }
        return context.Invoke();
    }

    public async Task<UniqueIdentifier?> ReissueUi(ulong counter, byte[] certifiedDigest)
    {
        ArgumentNullException.ThrowIfNull(certifiedDigest);
        var ui = _remote is { } remote
            ? await remote.ReissueUiAsync(counter, certifiedDigest, CancellationToken.None)
            : await Core.ReissueUiAsync(counter, certifiedDigest, CancellationToken.None);
        return ui?.ToUniqueIdentifier();
    }

    public async Task<UniqueIdentifier[]> CreateUis(ulong firstCounter, byte[][] certifiedDigests, byte[][]? keptMessages)
    {
        // ArgumentException for a null, empty, oversized or wrong-length batch, before any state is touched.
        ArgumentNullException.ThrowIfNull(certifiedDigests);
        if (certifiedDigests.Any(d => d is null)) throw new ArgumentException("a digest is null", nameof(certifiedDigests));
        // The same for kept messages. A null one must not pass as an empty message: the USIG would
        // keep nothing where the replica counts on a message being recoverable.
        if (keptMessages is not null)
        {
            if (keptMessages.Any(m => m is null)) throw new ArgumentException("a kept message is null", nameof(keptMessages));
            if (keptMessages.Length != certifiedDigests.Length)
                throw new ArgumentException($"one kept message per digest ({certifiedDigests.Length}), got {keptMessages.Length}", nameof(keptMessages));
            if (keptMessages.Sum(m => (long)m.Length) > UsigCore.MaxKeptBytes)
                throw new ArgumentException($"kept messages hold at most {UsigCore.MaxKeptBytes} bytes in all", nameof(keptMessages));
        }
        if (_remote is { } remote)
        {
            if (certifiedDigests.Length is < 1 or > UsigCore.MaxBatch) throw new ArgumentException($"a batch holds 1..{UsigCore.MaxBatch} digests", nameof(certifiedDigests));
            return [.. (await remote.CreateUisAsync(firstCounter, certifiedDigests, keptMessages, CancellationToken.None)).Select(u => u.ToUniqueIdentifier())];
        }
        var core = Core;
        try
        {
            var uis = await core.CreateUisAsync(firstCounter, certifiedDigests.Select(d => (ReadOnlyMemory<byte>)d).ToArray(),
                keptMessages?.Select(m => (ReadOnlyMemory<byte>)m).ToArray(), CancellationToken.None);
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

    /// <summary>
    /// Why an isolated USIG program is not USIG <paramref name="id"/> of <paramref name="manifest"/>
    /// (null if it is): peers verify replica i's UIs under the manifest's epoch and key for i, so a
    /// program of another replica, epoch, scheme or key (a stale manifest half-way through a USIG
    /// rotation, or a wrong socket) would only produce UIs every peer rejects.
    /// </summary>
    internal static string? IdentityMismatch(ClusterManifest manifest, int id, UsigProgramIdentity identity)
    {
        var expected = manifest.Replica(id);
        var scheme = ClusterManifest.SchemeName(manifest.UsigScheme);
        if (identity.ReplicaId == id && identity.Epoch == expected.UsigEpoch && identity.Scheme == scheme
            && identity.PublicKey.AsSpan().SequenceEqual(expected.UsigPublicKey ?? []))
            return null;
        return $"is replica {identity.ReplicaId}'s, epoch {identity.Epoch}, scheme {identity.Scheme}, " +
               $"but the manifest expects USIG {id}, epoch {expected.UsigEpoch}, scheme {scheme} with its key";
    }

    public async Task<UsigIdentity> GetIdentity()
    {
        if (_remote is { } remote)
        {
            var identity = await remote.GetIdentityAsync(CancellationToken.None);
            return new UsigIdentity(identity.ReplicaId, identity.Epoch, identity.PublicKey, identity.LastCounter, identity.ReissueWindow, identity.MaxBatch,
                identity.MaxKeptBytes, identity.KeptMessages);
        }
        var core = Core;
        var current = await core.LoadAsync(CancellationToken.None);
        return new UsigIdentity(core.ReplicaId, core.Epoch, core.Certifier.PublicKey, current.Counter, UsigCore.RecentWindow, UsigCore.MaxBatch,
            UsigCore.MaxKeptBytes, current.KeptMessages);
    }

    public async Task<bool[]> VerifyUis(UiClaim[] claims)
    {
        ArgumentNullException.ThrowIfNull(claims);
        var converted = claims.Select(c => new UsigClaim(c.ReplicaId, c.Ui.Epoch, c.Ui.Counter, c.Digest, c.Ui.Certificate)).ToArray();
        if (_remote is not { } remote) return Core.VerifyUis(converted);
        var valid = new List<bool>(converted.Length);
        foreach (var chunk in converted.Chunk(UsigWire.MaxVerify)) valid.AddRange(await remote.VerifyUisAsync(chunk, CancellationToken.None));
        return [.. valid];
    }

    private UsigCore Core => _core ?? throw new InvalidOperationException("USIG not activated");

    [LoggerMessage(Level = LogLevel.Information, Message = "USIG {ReplicaId} activated: epoch {Epoch}, last counter {Counter}, usig={UsigMode}")]
    private static partial void LogActivated(ILogger logger, int replicaId, ulong epoch, ulong counter, string usigMode);

    [LoggerMessage(Level = LogLevel.Warning, Message = "USIG {ReplicaId}: store initialised for epoch {Epoch} (counter 0), as configured")]
    private static partial void LogInitialized(ILogger logger, int replicaId, ulong epoch);

    [LoggerMessage(Level = LogLevel.Warning, Message = "USIG {ReplicaId} refused a call from {Caller}: only its replica may ask")]
    private static partial void LogRefusedCaller(ILogger logger, long replicaId, string caller);

    [LoggerMessage(Level = LogLevel.Warning, Message = "USIG {ReplicaId}: another activation wrote the counter; deactivating without issuing")]
    private static partial void LogConflictingActivation(ILogger logger, Exception exception, int replicaId);
}
