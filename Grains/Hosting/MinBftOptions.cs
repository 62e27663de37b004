using System.Globalization;
using System.Reflection;
using Microsoft.Extensions.Configuration;
using MinBft.Protocol;

namespace MinBft.Hosting;

/// <summary>
/// Configuration of MinBFT on one silo, bound from the configuration section
/// <see cref="SectionName"/> ("MinBft"). Durations use TimeSpan syntax ("00:00:00.200").
/// The protocol knobs map onto <see cref="ProtocolSettings"/> (see there for their meaning);
/// n comes from the manifest, never from here, so one silo cannot disagree with the others.
/// </summary>
public sealed class MinBftOptions
{
    public const string SectionName = "MinBft";

    /// <summary>
    /// This silo's fault domain (0..n-1): it hosts replica and USIG i = FaultDomain and keeps
    /// that domain's storage and keys. Null for a silo that only hosts client proxies (a
    /// gateway or membership-only silo): it hosts no replica and opens no store.
    /// </summary>
    public int? FaultDomain { get; set; }

    /// <summary>Path of the cluster manifest (manifest.json). Ignored when <see cref="Manifest"/> is set.</summary>
    public string? ManifestPath { get; set; }

    /// <summary>The manifest itself, for hosts that build it in code (tests, the dev cluster). Not bound from configuration.</summary>
    public ClusterManifest? Manifest { get; set; }

    /// <summary>
    /// Directory of this fault domain's private keys (signing.key, usig.key or usig-hmac.key).
    /// Default: <c>domain-{FaultDomain}</c> next to the manifest, the layout
    /// <see cref="DeploymentKeys.Generate(int, string, UsigScheme)"/> writes.
    /// </summary>
    public string? KeyDirectory { get; set; }

    /// <summary>Directory of the embedded SQLite store (one file per fault domain); used with <see cref="MinBftStorageKind.Sqlite"/>.</summary>
    public string DataDirectory { get; set; } = "minbft-data";

    /// <summary>
    /// Which store backs this fault domain's grain storage provider "minbft": an embedded SQLite
    /// file in <see cref="DataDirectory"/> (default), or the domain's own Redis server
    /// (<see cref="RedisStorage"/>). Only read on a silo with a <see cref="FaultDomain"/>.
    /// </summary>
    public MinBftStorageKind Storage { get; set; } = MinBftStorageKind.Sqlite;

    /// <summary>
    /// With <see cref="MinBftStorageKind.Redis"/>: the StackExchange.Redis connection string of
    /// this fault domain's own Redis server ("host:port[,password=...]"). One Redis per fault
    /// domain: a server shared by two domains would be a single point of failure for both. The
    /// USIG's counter is only as durable as that server (run it with <c>appendonly yes</c> and
    /// <c>appendfsync always</c>).
    /// </summary>
    public string? RedisStorage { get; set; }

    /// <summary>
    /// Register the grain storage provider "minbft" selected by <see cref="Storage"/> (SQLite or
    /// Redis). Set false to register a provider under that name yourself (memory storage in
    /// tests, ADO.NET); <see cref="Storage"/> must then stay at its default.
    /// </summary>
    public bool UseEmbeddedStorage { get; set; } = true;

    /// <summary>
    /// The replicated service a fault domain's replica runs (configuration "MinBft:StateMachine",
    /// flag <c>--state-machine</c>): the key-value sample (default) or the ledger sample. Every
    /// replica of a cluster must run the same one. An <see cref="IStateMachineFactory"/> the host
    /// registers itself (before or after <c>AddMinBft</c>) wins over this setting.
    /// </summary>
    public MinBftStateMachineKind StateMachine { get; set; } = MinBftStateMachineKind.KeyValue;

    // ----- protocol -----

    /// <summary>
    /// The core's local tuning knobs (section "MinBft:Protocol", e.g. <c>MinBft:Protocol:MaxBatchSize</c>),
    /// documented on <see cref="ProtocolTuning"/>. The cluster-wide constants (n, checkpoint
    /// interval, watermark) come from the manifest, the USIG's limits from the USIG.
    /// </summary>
    public ProtocolTuning Protocol { get; set; } = new();

    // ----- grain hosting -----

    /// <summary>
    /// The replica ticks its core at least this often even when the core asked for no tick, so
    /// that a lost timer can never leave it silent for long.
    /// </summary>
    public TimeSpan SafetyTickInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>First wait before retrying a failed USIG call or state write; doubles up to <see cref="MaxRetryDelay"/>.</summary>
    public TimeSpan RetryDelay { get; set; } = TimeSpan.FromMilliseconds(50);

    public TimeSpan MaxRetryDelay { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// Use Orleans' strongly consistent (distributed) grain directory. With the default, eventually
    /// consistent directory, a silo leaving can make a call create a second activation of a
    /// replica in its (healthy) domain while the first still runs: for the replica a restart,
    /// which a primary cannot recover from without view change. Every silo of a cluster must
    /// make the same choice.
    /// </summary>
    public bool UseStronglyConsistentDirectory { get; set; } = true;

    /// <summary>
    /// Orleans' activity propagation across grain calls, so that a request's spans (the
    /// <c>MinBft</c> ActivitySource) form one trace across grains and silos. Off by default: its
    /// filters run on every grain call even with nothing listening, which measured 25% fewer
    /// plain grain calls and 10% fewer one-client MinBFT operations per second on the 2-core
    /// bench machine. The silo host turns it on when OTEL_EXPORTER_OTLP_ENDPOINT is set.
    /// </summary>
    public bool Tracing { get; set; }

    /// <summary>
    /// USIG i issues UIs only to replica i's grain. Anyone else able to call it (another grain,
    /// a client of the cluster) could burn counter values, and replica i would then halt on the
    /// gap. Turn off only in tests that drive a USIG directly.
    /// </summary>
    public bool UsigServesOnlyItsReplica { get; set; } = true;

    /// <summary>Where this domain's USIG runs, and its first start (section "MinBft:Usig").</summary>
    public MinBftUsigOptions Usig { get; set; } = new();

    /// <summary>Mutual TLS on the silo's connections (section "MinBft:Tls"): on by default when the manifest names a TLS CA.</summary>
    public MinBftTlsOptions Tls { get; set; } = new();

    /// <summary>How long a client proxy waits for f+1 matching replies before it resends a request
    /// to every replica (the first send goes to the primary only).</summary>
    public TimeSpan ClientRetransmitInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>The longest wait between two resends of one request: each resend waits twice as
    /// long as the one before it, from <see cref="ClientRetransmitInterval"/> up to this. A cluster
    /// slowed by load then gets fewer copies of the requests it is still ordering, not as many.</summary>
    public TimeSpan ClientRetransmitMaxInterval { get; set; } = TimeSpan.FromSeconds(8);

    /// <summary>Requests one client proxy tracks at once; more are refused (bounded state per
    /// proxy). A proxy serves every identity of one client SDK instance, so this bounds that
    /// instance's concurrency (its identity pool size).</summary>
    public int MaxRequestsPerClientProxy { get; set; } = 1024;

    /// <summary>Client MAC sessions a replica keeps (about 100 bytes each; the oldest go first).
    /// A client without one still gets through: its requests' signatures are checked instead.</summary>
    public int MaxClientSessions { get; set; } = 100_000;

    /// <summary>
    /// The settings of replica <paramref name="replicaId"/>'s core: n and the cluster-wide
    /// protocol constants from the manifest, the local knobs from these options. The USIG's limits
    /// (re-issue window, largest batch) are left for the replica to read from its USIG.
    /// </summary>
    public ProtocolSettings ToProtocolSettings(ClusterManifest manifest, int replicaId)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        var settings = ToProtocolSettings(manifest.N, replicaId) with
        {
            CheckpointInterval = manifest.CheckpointInterval,
            Watermark = manifest.Watermark,
            MaxClientRecords = manifest.MaxClientRecords,
        };
        (settings with { UsigReissueWindow = 1, UsigMaxBatch = 1 }).Validate();
        return settings;
    }

    /// <summary>The settings of replica <paramref name="replicaId"/>'s core in an <paramref name="n"/>-replica
    /// cluster with the default cluster-wide constants.</summary>
    public ProtocolSettings ToProtocolSettings(int n, int replicaId)
    {
        var settings = new ProtocolSettings
        {
            N = n,
            ReplicaId = replicaId,
            Tuning = Protocol ?? throw new ArgumentException($"{SectionName}:{nameof(Protocol)} is null"),
        };
        // The USIG's limits are read from the USIG when the replica activates; the rest is checked here.
        (settings with { UsigReissueWindow = 1, UsigMaxBatch = 1 }).Validate();
        return settings;
    }

    /// <summary>
    /// Sets these options from the "MinBft" section of <paramref name="configuration"/> (the
    /// configuration root). A misspelt or misplaced key (say MinBft:MaxBatchSize, which belongs
    /// in MinBft:Protocol) throws instead of silently leaving a default in place.
    /// </summary>
    public void Bind(IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        var section = configuration.GetSection(SectionName);
        RejectUnknownKeys(section, typeof(MinBftOptions), SectionName);
        section.Bind(this);
    }

    /// <summary>Sections under "MinBft" that other components read: the silo host's and the client SDK's.</summary>
    private static readonly string[] SiblingSections = ["Host", "Client"];

    private static void RejectUnknownKeys(IConfigurationSection section, Type type, string path)
    {
        var known = type.GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.CanWrite)
            .ToDictionary(p => p.Name, StringComparer.OrdinalIgnoreCase);
        foreach (var child in section.GetChildren())
        {
            if (type == typeof(MinBftOptions) && SiblingSections.Contains(child.Key, StringComparer.OrdinalIgnoreCase)) continue;
            if (!known.TryGetValue(child.Key, out var property))
            {
                var hint = type == typeof(MinBftOptions) && typeof(ProtocolTuning).GetProperty(child.Key, BindingFlags.Public | BindingFlags.Instance | BindingFlags.IgnoreCase) is not null
                    ? $" (a protocol knob: set {SectionName}:{nameof(Protocol)}:{child.Key})"
                    : "";
                throw new ArgumentException($"{path}:{child.Key} is not a {type.Name} setting{hint}");
            }
            if (property.PropertyType == typeof(ProtocolTuning) || property.PropertyType == typeof(MinBftUsigOptions) || property.PropertyType == typeof(MinBftTlsOptions))
                RejectUnknownKeys(child, property.PropertyType, $"{path}:{child.Key}");
        }
    }

    /// <summary>The directory of this domain's private keys (see <see cref="KeyDirectory"/>).</summary>
    public string ResolveKeyDirectory()
    {
        if (!string.IsNullOrWhiteSpace(KeyDirectory)) return KeyDirectory;
        if (FaultDomain is not { } domain)
            throw new InvalidOperationException($"{SectionName}:{nameof(FaultDomain)} is not set: this silo holds no replica keys");
        if (string.IsNullOrWhiteSpace(ManifestPath))
            throw new InvalidOperationException($"{SectionName}:{nameof(KeyDirectory)} is not set and there is no {nameof(ManifestPath)} to find it next to");
        return DeploymentKeys.DomainDirectory(Path.GetDirectoryName(Path.GetFullPath(ManifestPath)) ?? ".", domain);
    }

    /// <summary>
    /// This silo's TLS certificate: <see cref="MinBftTlsOptions.CertificatePath"/>, or <c>tls/tls.crt</c>
    /// in <see cref="KeyDirectory"/>, or in <c>domain-i/</c> (<c>gateway/</c> for a silo without fault
    /// domain) next to the manifest. Null when none of those can be named.
    /// </summary>
    public string? ResolveTlsCertificatePath()
    {
        if (!string.IsNullOrWhiteSpace(Tls?.CertificatePath)) return Tls.CertificatePath;
        var directory = !string.IsNullOrWhiteSpace(KeyDirectory) ? KeyDirectory
            : string.IsNullOrWhiteSpace(ManifestPath) ? null
            : Path.Combine(Path.GetDirectoryName(Path.GetFullPath(ManifestPath)) ?? ".",
                FaultDomain is { } domain ? DeploymentCertificates.DomainName(domain) : DeploymentCertificates.GatewayDirectoryName);
        return directory is null ? null : Path.Combine(directory, DeploymentTls.DirectoryName, DeploymentTls.CertificateFileName);
    }

    /// <summary>Throws <see cref="ArgumentException"/> naming the first bad setting.</summary>
    public void Validate()
    {
        if (FaultDomain is < 0) throw new ArgumentException($"{SectionName}:{nameof(FaultDomain)} must be >= 0, got {FaultDomain}");
        if (Manifest is null && string.IsNullOrWhiteSpace(ManifestPath))
            throw new ArgumentException($"{SectionName}:{nameof(ManifestPath)} is required (the cluster manifest)");
        ValidateStorage();
        Positive(SafetyTickInterval, nameof(SafetyTickInterval));
        Positive(RetryDelay, nameof(RetryDelay));
        Positive(MaxRetryDelay, nameof(MaxRetryDelay));
        Positive(ClientRetransmitInterval, nameof(ClientRetransmitInterval));
        if (ClientRetransmitMaxInterval < ClientRetransmitInterval)
            throw new ArgumentException($"{SectionName}:{nameof(ClientRetransmitMaxInterval)} ({ClientRetransmitMaxInterval}) must not be shorter than {nameof(ClientRetransmitInterval)} ({ClientRetransmitInterval})");
        if (MaxClientSessions < 1) throw new ArgumentException($"{SectionName}:{nameof(MaxClientSessions)} must be >= 1");
        if (MaxRequestsPerClientProxy < 1) throw new ArgumentException($"{SectionName}:{nameof(MaxRequestsPerClientProxy)} must be >= 1");
        (Usig ?? throw new ArgumentException($"{SectionName}:{nameof(Usig)} is null")).Validate();
        if (Tls is null) throw new ArgumentException($"{SectionName}:{nameof(Tls)} is null");
        try
        {
            // The protocol knobs are checked by ProtocolSettings itself (n=1 and id 0 always exist).
            ToProtocolSettings(1, 0);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"{SectionName}:{nameof(Protocol)}: {e.Message}", e);
        }
    }

    private void ValidateStorage()
    {
        if (!Enum.IsDefined(Storage))
            throw new ArgumentException($"{SectionName}:{nameof(Storage)} must be {nameof(MinBftStorageKind.Sqlite)} or {nameof(MinBftStorageKind.Redis)}, got {Storage}");
        if (Storage != MinBftStorageKind.Redis && !string.IsNullOrWhiteSpace(RedisStorage))
        {
            throw new ArgumentException(
                $"{SectionName}:{nameof(RedisStorage)} is set but {SectionName}:{nameof(Storage)} is {Storage}: "
                + $"set {SectionName}:{nameof(Storage)}={nameof(MinBftStorageKind.Redis)} to use it, or remove it");
        }
        if (!UseEmbeddedStorage)
        {
            if (Storage != MinBftStorageKind.Sqlite)
            {
                throw new ArgumentException(
                    $"{SectionName}:{nameof(Storage)}={Storage} registers grain storage 'minbft', but {SectionName}:{nameof(UseEmbeddedStorage)}=false "
                    + "says the host registers its own: choose one");
            }
            return;
        }
        // A silo without a fault domain opens no store, whatever a shared configuration says.
        if (FaultDomain is null) return;
        switch (Storage)
        {
            case MinBftStorageKind.Sqlite when string.IsNullOrWhiteSpace(DataDirectory):
                throw new ArgumentException($"{SectionName}:{nameof(DataDirectory)} is required with SQLite storage");
            case MinBftStorageKind.Redis when string.IsNullOrWhiteSpace(RedisStorage):
                throw new ArgumentException(
                    $"{SectionName}:{nameof(Storage)} is {nameof(MinBftStorageKind.Redis)} but {SectionName}:{nameof(RedisStorage)} is not set: "
                    + string.Create(CultureInfo.InvariantCulture, $"give the connection string of fault domain {FaultDomain}'s own Redis server (host:port)"));
            case MinBftStorageKind.Redis:
                RedisConnection.Parse(RedisStorage, $"{SectionName}:{nameof(RedisStorage)}");
                break;
        }
    }

    private static void Positive(TimeSpan value, string name)
    {
        if (value <= TimeSpan.Zero)
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"{SectionName}:{name} must be positive, got {value}"));
    }
}

/// <summary>
/// Mutual TLS between silos and between clients and gateways (section "MinBft:Tls"). With
/// <see cref="Enabled"/> (the default) and a manifest that names a TLS CA, every silo-to-silo and
/// gateway connection is TLS, and both ends must show a certificate of that CA: a silo's (server
/// and client authentication) to join the cluster, a silo's or client's to use a gateway. A
/// manifest without a CA (local development, test clusters, deployments made before TLS) gives
/// plaintext, with a warning; the silo host (<c>MinBft.Silo --fault-domain</c>) refuses that
/// unless told <c>--no-tls</c>.
/// </summary>
public sealed class MinBftTlsOptions
{
    /// <summary>False: plaintext connections even though the manifest names a CA (<c>--no-tls</c>); logged as a warning.</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>
    /// With <see cref="Enabled"/>: a manifest that names no TLS CA stops the silo instead of giving
    /// plaintext with a warning. The silo host sets it for its per-domain and gateway modes (the
    /// multi-machine deployments), where plaintext must be asked for with <c>--no-tls</c>.
    /// </summary>
    public bool Required { get; set; }

    /// <summary>This silo's certificate (PEM). Default: <c>tls/tls.crt</c> in the key directory (<c>domain-i/</c>, or <c>gateway/</c> next to the manifest).</summary>
    public string? CertificatePath { get; set; }

    /// <summary>Its private key (PKCS#8 PEM). Default: <c>tls.key</c> next to the certificate.</summary>
    public string? KeyPath { get; set; }

    /// <summary>
    /// Why this silo runs without TLS, when that is intended (e.g. "local development"): it is then
    /// logged at Information as <c>transport=plaintext (REASON)</c> instead of a warning.
    /// </summary>
    public string? PlaintextReason { get; set; }
}

/// <summary>Options of fault domain i's USIG (section "MinBft:Usig").</summary>
public sealed class MinBftUsigOptions
{
    /// <summary>
    /// <c>unix:PATH</c>: fault domain i's USIG program (<c>MinBft.Usig serve</c>) listens on that
    /// Unix domain socket, and the silo holds no USIG key: it never reads <c>domain-i/usig/</c>
    /// ("usig=isolated"). Unset: the USIG runs inside the silo ("usig=in-process (not isolated)"),
    /// with its key from <c>domain-i/usig/</c> and its counter in a counter file in
    /// <see cref="MinBftOptions.DataDirectory"/> (SQLite storage) or in the domain's grain storage (Redis).
    /// </summary>
    public string? Endpoint { get; set; }

    /// <summary>How long one call to the USIG program may take before the connection is dropped
    /// and the call fails (the replica retries it; a retried batch gets the same UIs).</summary>
    public TimeSpan CallTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>The socket path of <see cref="Endpoint"/>; null in in-process mode.</summary>
    public string? SocketPath =>
        Endpoint is { Length: > 0 } endpoint && endpoint.StartsWith("unix:", StringComparison.Ordinal) ? endpoint["unix:".Length..] : null;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first bad setting.</summary>
    public void Validate()
    {
        const string section = MinBftOptions.SectionName + ":Usig";
        if (!string.IsNullOrEmpty(Endpoint) && string.IsNullOrWhiteSpace(SocketPath))
            throw new ArgumentException($"{section}:Endpoint must be unix:PATH (the USIG program's socket), got '{Endpoint}'");
        if (SocketPath is { Length: > 100 } path)
            throw new ArgumentException($"{section}:Endpoint: a Unix socket path must be shorter than 100 bytes, got {path.Length}: {path}");
        if (SocketPath is not null && InitializeEpoch is not null)
            throw new ArgumentException($"{section}:InitializeEpoch is for the in-process USIG; an isolated one is initialised by 'MinBft.Usig init'");
        if (CallTimeout <= TimeSpan.Zero) throw new ArgumentException($"{section}:CallTimeout must be positive");
    }

    /// <summary>
    /// In-process mode only: initialise the USIG's store for this epoch, which must be the
    /// manifest's, if it holds nothing (the first start) or an older epoch (after
    /// <c>keygen --rotate-usig</c>). Without it a USIG with no state refuses to start: a lost
    /// store must never make it start over at counter 1. Set it for the first start only.
    /// </summary>
    public ulong? InitializeEpoch { get; set; }
}
