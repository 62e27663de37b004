using Orleans.Configuration;

namespace MinBft.Silo;

/// <summary>
/// Where one silo listens and which silo is the primary of development clustering; bound from
/// the configuration section <see cref="SectionName"/> ("MinBft:Host"), then command-line flags.
/// The MinBFT settings themselves (fault domain, manifest, keys, data) are in section "MinBft".
/// </summary>
public sealed class SiloHostOptions
{
    public const string SectionName = "MinBft:Host";

    /// <summary>Silo-to-silo port.</summary>
    public int SiloPort { get; set; } = EndpointOptions.DEFAULT_SILO_PORT;

    /// <summary>Client gateway port (0: no gateway on this silo).</summary>
    public int GatewayPort { get; set; } = EndpointOptions.DEFAULT_GATEWAY_PORT;

    /// <summary>
    /// The primary silo of development clustering ("host:port" of its silo port), which holds
    /// the membership table. Unset: this silo is the primary.
    /// </summary>
    public string? PrimarySilo { get; set; }

    public string ClusterId { get; set; } = MinBft.Hosting.LocalClusterOptions.DefaultClusterId;

    public string ServiceId { get; set; } = MinBft.Hosting.LocalClusterOptions.DefaultServiceId;
}
