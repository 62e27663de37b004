namespace MinBft.Client;

/// <summary>Options of <see cref="MinBftClient"/>, bound from the configuration section <see cref="SectionName"/>.</summary>
public sealed class MinBftClientOptions
{
    public const string SectionName = "MinBft:Client";

    /// <summary>The cluster manifest (n, f, replicas' public keys). Required when the client is built by DI.</summary>
    public string? ManifestPath { get; set; }

    /// <summary>With <c>AddMinBftClient</c>: Orleans' activity propagation, so that a request's
    /// trace continues into the grains (the silos need <c>MinBft:Tracing</c> too). Off by
    /// default: it costs every grain call, listened to or not.</summary>
    public bool Tracing { get; set; }

    /// <summary>
    /// Client identities (signing keys) in the pool. A replica keeps only the last executed
    /// request of each client, so one identity has at most one request outstanding; this is
    /// therefore the number of requests the client runs concurrently. Further calls wait for
    /// an identity to be free.
    /// </summary>
    public int IdentityPoolSize { get; set; } = 16;

    /// <summary>
    /// Directory of the pool's private keys (client-0.key, client-1.key, ...), created and
    /// filled on first use. Null: fresh keys per process (ephemeral identities), which is
    /// right for most applications because replicas need no client registry.
    /// </summary>
    public string? KeyDirectory { get; set; }

    /// <summary>Time one <see cref="MinBftClient.ExecuteAsync"/> may take, retries included.</summary>
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Time the client proxy is given per attempt to collect f+1 replies.</summary>
    public TimeSpan AttemptTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Attempts per request. A retry resends the same signed request: replicas answer it from their reply cache, never execute it twice.</summary>
    public int MaxAttempts { get; set; } = 3;

    /// <summary>Pause before the first retry; doubled for each further one.</summary>
    public TimeSpan RetryDelay { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>
    /// How often each identity renews its MAC sessions with the replicas (one signed offer, one
    /// signed accept per replica). A session lets a replica check a request with a MAC instead of
    /// the Ed25519 signature; a replica that lost it (a restart) checks signatures until the
    /// renewal. <see cref="TimeSpan.Zero"/> turns sessions off: every replica checks every signature.
    /// </summary>
    public TimeSpan SessionRenewal { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>
    /// The cluster keeps a bounded table of client records and evicts the least recently active
    /// ones (<c>maxClientRecords</c> in the manifest). Requests carry a recent position of the
    /// replicated history, proven by f+1 replies, so that an identity evicted while this client was
    /// idle is admitted again. When no reply proved a position for this long (or ever, since the
    /// client started), the next request is preceded by a probe: an empty operation, ordered like
    /// any request and run by no application, whose replies prove one. <see cref="Timeout.InfiniteTimeSpan"/>:
    /// probe only at start.
    /// </summary>
    public TimeSpan ProbeAfterIdle { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>
    /// Redis connection string of the cluster's membership table (silos started with Redis
    /// clustering). When set, <c>IClientBuilder.AddMinBftClient</c> configures Orleans' Redis
    /// clustering for the client, which then finds the gateways there; the client's
    /// <c>ClusterOptions</c> (cluster and service id) must be the silos'. Null: the application
    /// configures clustering itself (e.g. <c>UseStaticClustering</c>). Read when
    /// <c>AddMinBftClient</c> runs, from the configuration section and the configure delegate.
    /// </summary>
    public string? RedisClustering { get; set; }

    /// <summary>
    /// Mutual TLS with the cluster's gateways (section "MinBft:Client:Tls"), decided when
    /// <c>IClientBuilder.AddMinBftClient</c> runs: on when the manifest names a TLS CA (a
    /// deployment made by keygen), which then requires <see cref="MinBftClientTlsOptions.CertificatePath"/>.
    /// </summary>
    public MinBftClientTlsOptions Tls { get; set; } = new();

    internal MinBftClientOptions Clone() => (MinBftClientOptions)MemberwiseClone();

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid option.</summary>
    public void Validate()
    {
        if (IdentityPoolSize < 1) throw new ArgumentException($"{nameof(IdentityPoolSize)} must be at least 1, got {IdentityPoolSize}");
        if (RequestTimeout <= TimeSpan.Zero) throw new ArgumentException($"{nameof(RequestTimeout)} must be positive, got {RequestTimeout}");
        if (AttemptTimeout <= TimeSpan.Zero) throw new ArgumentException($"{nameof(AttemptTimeout)} must be positive, got {AttemptTimeout}");
        if (MaxAttempts < 1) throw new ArgumentException($"{nameof(MaxAttempts)} must be at least 1, got {MaxAttempts}");
        if (SessionRenewal < TimeSpan.Zero) throw new ArgumentException($"{nameof(SessionRenewal)} must not be negative, got {SessionRenewal}");
        if (ProbeAfterIdle <= TimeSpan.Zero && ProbeAfterIdle != Timeout.InfiniteTimeSpan)
            throw new ArgumentException($"{nameof(ProbeAfterIdle)} must be positive or infinite, got {ProbeAfterIdle}");
        if (RetryDelay < TimeSpan.Zero) throw new ArgumentException($"{nameof(RetryDelay)} must not be negative, got {RetryDelay}");
    }
}

/// <summary>The client's side of the deployment's mutual TLS (section "MinBft:Client:Tls").</summary>
public sealed class MinBftClientTlsOptions
{
    /// <summary>False: plaintext even though the manifest names a TLS CA (a cluster whose silos run with <c>--no-tls</c>).</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>This client's certificate (PEM), issued by the deployment's CA: <c>keygen --client-cert NAME</c> writes <c>clients/NAME/tls.crt</c>.</summary>
    public string? CertificatePath { get; set; }

    /// <summary>Its private key (PKCS#8 PEM). Default: <c>tls.key</c> next to the certificate.</summary>
    public string? KeyPath { get; set; }
}
