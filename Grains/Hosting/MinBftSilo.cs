using MinBft.Crypto;
using MinBft.Protocol;
using MinBft.Usig;

namespace MinBft.Hosting;

/// <summary>
/// What the MinBFT grains of one silo share: the validated options, the cluster manifest, the
/// silo's fault domain, and access to that domain's private keys. Registered as a singleton by
/// <c>AddMinBft</c>. Key files are read on demand and each only by the component that needs it
/// (the replica its signing key, the in-process USIG its USIG key), never handed around. With an
/// isolated USIG (<see cref="MinBftUsigOptions.Endpoint"/>) the silo never reads the USIG's key:
/// it only talks to the USIG program (<see cref="IsolatedUsig"/>).
/// </summary>
public sealed class MinBftSilo : IDisposable
{
    /// <summary>What status and logs say about an in-process USIG: plainly, it is not isolated.</summary>
    public const string InProcessUsigMode = "in-process (not isolated)";

    public const string IsolatedUsigMode = "isolated";

    private readonly Lazy<UsigClient?> _isolatedUsig;

    /// <summary>Service key of the <see cref="TimeProvider"/> MinBFT grains use (tests register a fake one under it).</summary>
    public const string ClockServiceKey = "minbft";

    public MinBftSilo(MinBftOptions options, ClusterManifest manifest, TimeProvider clock)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(manifest);
        ArgumentNullException.ThrowIfNull(clock);
        if (options.FaultDomain is { } domain && domain >= manifest.N)
            throw new ArgumentException($"{MinBftOptions.SectionName}:{nameof(MinBftOptions.FaultDomain)} {domain} is not a replica of this {manifest.N}-replica cluster");
        Options = options;
        Manifest = manifest;
        Clock = clock;
        ReplicaKeys = manifest.CreateReplicaKeyRing();
        Replies = new ReplyAuthenticator(ReplicaKeys);
        _isolatedUsig = new(() => options.Usig.SocketPath is { } path ? new UsigClient(path, options.Usig.CallTimeout) : null);
    }

    // Each replica's last halt on this silo (reason, clock timestamp): it outlives the halted
    // activation, which deactivates at once (ReplicaGrain.Halt).
    private readonly System.Collections.Concurrent.ConcurrentDictionary<int, (string Reason, long At)> _halts = new();

    /// <summary>Records that replica <paramref name="replicaId"/> halted now, for its status and health.</summary>
    public void NoteHalt(int replicaId, string reason) => _halts[replicaId] = (reason, Clock.GetTimestamp());

    /// <summary>Why replica <paramref name="replicaId"/> last halted on this silo and how long ago; null if it never did.</summary>
    public (string Reason, TimeSpan Ago)? LastHalt(int replicaId) =>
        _halts.TryGetValue(replicaId, out var halt) ? (halt.Reason, Clock.GetElapsedTime(halt.At)) : null;

    /// <summary>True when this domain's USIG is the separate USIG program.</summary>
    public bool UsigIsolated => Options.Usig.SocketPath is not null;

    /// <summary>"isolated" or "in-process (not isolated)".</summary>
    public string UsigMode => UsigIsolated ? IsolatedUsigMode : InProcessUsigMode;

    /// <summary>The connection to this domain's USIG program (isolated mode), or null.</summary>
    public UsigClient? IsolatedUsig => _isolatedUsig.Value;

    public void Dispose()
    {
        if (_isolatedUsig.IsValueCreated) _isolatedUsig.Value?.Dispose();
    }

    public MinBftOptions Options { get; }

    public ClusterManifest Manifest { get; }

    /// <summary>The clock of replica timers and client retransmission.</summary>
    public TimeProvider Clock { get; }

    /// <summary>This silo's fault domain, or null for a silo without replicas (gateway).</summary>
    public int? FaultDomain => Options.FaultDomain;

    /// <summary>Verifies replica signatures (REPLY etc.) with the manifest's keys.</summary>
    public ReplicaKeyRing ReplicaKeys { get; }

    /// <summary>Checks REPLYs for every client proxy of this silo; a batch's signature is checked once.</summary>
    public ReplyAuthenticator Replies { get; }

    /// <summary>
    /// Throws unless grain <paramref name="replicaId"/> (a replica or USIG) belongs on this
    /// silo. Placement should never put it elsewhere; this is the second line of defence, so
    /// that a misplaced activation can never open another domain's keys or store.
    /// </summary>
    public void EnsureLocal(int replicaId, string what)
    {
        if (FaultDomain != replicaId)
        {
            throw new InvalidOperationException(
                $"{what} {replicaId} must run in fault domain {replicaId}, but this silo's fault domain is " +
                (FaultDomain?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "unset") + "; refusing to activate");
        }
        if (replicaId < 0 || replicaId >= Manifest.N)
            throw new InvalidOperationException($"{what} {replicaId} is not in this {Manifest.N}-replica cluster");
    }

    /// <summary>Replica <paramref name="replicaId"/>'s signing key, checked against the manifest.</summary>
    public Ed25519KeyPair LoadSigningKey(int replicaId)
    {
        EnsureLocal(replicaId, "replica");
        return DeploymentKeys.LoadSigningKey(Manifest, replicaId, Options.ResolveKeyDirectory());
    }

    /// <summary>USIG <paramref name="replicaId"/>'s certifier, checked against the manifest. In-process
    /// mode only: with an isolated USIG the silo never reads <c>domain-i/usig/</c>.</summary>
    internal IUsigCertifier LoadUsigCertifier(int replicaId)
    {
        EnsureLocal(replicaId, "USIG");
        if (UsigIsolated) throw new InvalidOperationException($"USIG {replicaId} is isolated ({Options.Usig.Endpoint}): this silo holds no USIG key");
        return DeploymentKeys.LoadUsigCertifier(Manifest, replicaId, Options.ResolveKeyDirectory());
    }

    /// <summary>
    /// Everything replica <paramref name="replicaId"/>'s core needs to authenticate messages. No
    /// USIG secret is among it: with the signature scheme UIs verify with the manifest's public
    /// keys; with the HMAC scheme the replica's own USIG verifies each message's claims before the
    /// core sees it, and the core gets <paramref name="preverified"/>, which answers from those results.
    /// Client requests are checked by <paramref name="requests"/> when given (the replica's MAC
    /// sessions), else by their signatures alone.
    /// </summary>
    public ProtocolCrypto CreateProtocolCrypto(int replicaId, PreverifiedUiVerifier? preverified = null, IRequestVerifier? requests = null)
    {
        var signer = CreateReplicaSigner(replicaId);
        IUiVerifier uiVerifier = Manifest.UsigScheme == UsigScheme.Hmac
            ? preverified ?? throw new ArgumentNullException(nameof(preverified), "the HMAC scheme verifies UIs through the replica's own USIG")
            : Manifest.CreateUsigVerifier();
        return new ProtocolCrypto(uiVerifier, signer, ReplicaKeys, requests ?? new RequestVerifier());
    }

    /// <summary>Replica <paramref name="replicaId"/>'s signer (REPLY roots, VIEW-CHANGE requests, session accepts).</summary>
    public IReplicaSigner CreateReplicaSigner(int replicaId) => new Ed25519ReplicaSigner(LoadSigningKey(replicaId));

    /// <summary>The core settings of replica <paramref name="replicaId"/>.</summary>
    public ProtocolSettings ProtocolSettings(int replicaId) => Options.ToProtocolSettings(Manifest, replicaId);
}
