using Orleans.Configuration;

namespace MinBft.Silo;

/// <summary>How the silos of a cluster find each other (<see cref="SiloHostOptions.Clustering"/>).</summary>
public enum SiloClustering
{
    /// <summary>Orleans development clustering: one primary silo holds the membership table.</summary>
    Development,

    /// <summary>The membership table in Redis (<see cref="SiloHostOptions.RedisClustering"/>): no primary silo.</summary>
    Redis,
}

/// <summary>
/// Where one silo listens and how it finds the cluster; bound from the configuration section
/// <see cref="SectionName"/> ("MinBft:Host"), then command-line flags.
/// The MinBFT settings themselves (fault domain, manifest, keys, storage) are in section "MinBft".
/// </summary>
public sealed class SiloHostOptions
{
    public const string SectionName = "MinBft:Host";

    /// <summary>
    /// Orleans' <c>ClusterMembershipOptions</c> (how fast a silo that stopped answering is
    /// declared dead: ProbeTimeout, NumMissedProbesLimit, NumVotesForDeathDeclaration, ...),
    /// bound from this section when present; Orleans' defaults otherwise.
    /// </summary>
    public const string MembershipSectionName = SectionName + ":Membership";

    /// <summary>
    /// Orleans' <c>GrainDirectoryOptions</c>, bound from this section when present. Its
    /// <c>RangeLeaseDuration</c> is how long, after a silo crashed (not after a graceful stop),
    /// grains registered on it cannot be activated again anywhere: the strongly consistent
    /// directory's guard against a crashed-but-still-running silo. A restarted fault domain's
    /// replica and USIG come back only after it.
    /// </summary>
    public const string GrainDirectorySectionName = SectionName + ":GrainDirectory";

    /// <summary>Silo-to-silo port.</summary>
    public int SiloPort { get; set; } = EndpointOptions.DEFAULT_SILO_PORT;

    /// <summary>Client gateway port (0: no gateway on this silo).</summary>
    public int GatewayPort { get; set; } = EndpointOptions.DEFAULT_GATEWAY_PORT;

    /// <summary>
    /// Port of this silo's HTTP endpoint: <c>/healthz</c> (the replica's health). Unset: the
    /// endpoint listens on a free loopback port, printed at start. It binds the address the silo
    /// advertises (loopback with development clustering unless <see cref="AdvertisedIp"/> is set).
    /// </summary>
    public int? HttpPort { get; set; }

    /// <summary>
    /// Serve the MinBFT status page (<c>/minbft</c>) and the Orleans dashboard (<c>/dashboard/</c>)
    /// on the HTTP endpoint; both answer loopback callers only.
    /// </summary>
    public bool Dashboard { get; set; }

    /// <summary>Development clustering (default) or Redis clustering.</summary>
    public SiloClustering Clustering { get; set; } = SiloClustering.Development;

    /// <summary>
    /// The primary silo of development clustering ("host:port" of its silo port), which holds
    /// the membership table. Unset: this silo is the primary. Not used with Redis clustering.
    /// </summary>
    public string? PrimarySilo { get; set; }

    /// <summary>
    /// With Redis clustering: the connection string of the Redis server holding the membership
    /// table ("host:port[,password=...]"); the same for every silo and client of the cluster.
    /// </summary>
    public string? RedisClustering { get; set; }

    /// <summary>
    /// The IP address this silo advertises to the others (and listens on). Default: loopback
    /// with development clustering; with Redis clustering, the address Orleans picks for this
    /// host (set it on a machine with several addresses).
    /// </summary>
    public string? AdvertisedIp { get; set; }

    public string ClusterId { get; set; } = MinBft.Hosting.LocalClusterOptions.DefaultClusterId;

    public string ServiceId { get; set; } = MinBft.Hosting.LocalClusterOptions.DefaultServiceId;
}
