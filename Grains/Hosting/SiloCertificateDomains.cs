using System.Collections.Concurrent;
using System.Net;
using System.Security.Cryptography.X509Certificates;

namespace MinBft.Hosting;

/// <summary>What a silo's certificate proves about it, for a grain of one fault domain.</summary>
public enum SiloDomainCheck
{
    /// <summary>Its certificate names that fault domain (or it is this silo, of that domain).</summary>
    Verified,

    /// <summary>No TLS handshake with it yet: nothing is proven either way.</summary>
    Unknown,

    /// <summary>Its certificate names another domain, or none (a gateway's).</summary>
    Refused,
}

/// <summary>
/// The fault domain each silo endpoint proved with its certificate, learnt from the TLS handshakes
/// of this silo's outbound silo-to-silo connections (the connections messages leave by). A silo's
/// metadata, membership entry and grain directory entries are its own claims; the certificate is
/// the deployment CA's. One per silo, with mutual TLS only.
/// </summary>
public sealed class SiloCertificateDomains
{
    // Null value: a silo certificate that names no fault domain (the gateway's).
    private readonly ConcurrentDictionary<IPEndPoint, int?> _byEndpoint = new();

    /// <summary>Records the certificate an outbound connection's peer showed (the TLS middleware checked it already).</summary>
    public void Note(EndPoint? endpoint, X509Certificate2? certificate)
    {
        if (endpoint is IPEndPoint ip && certificate is not null) _byEndpoint[ip] = DeploymentCertificates.FaultDomainOf(certificate);
    }

    /// <summary>Whether the silo at <paramref name="endpoint"/> proved it may host fault domain <paramref name="faultDomain"/>'s grains.</summary>
    public SiloDomainCheck Check(IPEndPoint endpoint, int faultDomain) =>
        !_byEndpoint.TryGetValue(endpoint, out var proven) ? SiloDomainCheck.Unknown
        : proven == faultDomain ? SiloDomainCheck.Verified
        : SiloDomainCheck.Refused;

    /// <summary>The fault domain the silo at <paramref name="endpoint"/> proved, "none" (a gateway's certificate) or "unknown", for messages.</summary>
    public string Describe(IPEndPoint endpoint) =>
        !_byEndpoint.TryGetValue(endpoint, out var proven) ? "unknown"
        : proven is { } domain ? DeploymentCertificates.DomainName(domain)
        : "none";
}
