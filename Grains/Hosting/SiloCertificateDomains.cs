using System.Collections.Concurrent;
using System.Net;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Connections;
using Orleans.Runtime;

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
/// of this silo's outbound silo-to-silo connections (the silo at that address answered). A silo's
/// metadata, membership entry, directory entries and the address it claims on an inbound
/// connection are its own claims; the certificate is the deployment CA's. One per silo, with
/// mutual TLS only.
/// </summary>
public sealed class SiloCertificateDomains(TimeProvider? time = null)
{
    /// <summary>How often a contradicted proof may be checked again by dialing its address.</summary>
    public static readonly TimeSpan RecheckInterval = TimeSpan.FromSeconds(10);

    private readonly TimeProvider _time = time ?? TimeProvider.System;

    // Null value: a silo certificate that names no fault domain (the gateway's).
    private readonly ConcurrentDictionary<IPEndPoint, int?> _byEndpoint = new();

    // When each endpoint's proof was last checked again because a claim contradicted it.
    private readonly ConcurrentDictionary<IPEndPoint, DateTimeOffset> _rechecked = new();

    // Inbound silo connections still open, with the silo endpoint each claims and the domain its certificate names.
    private readonly ConcurrentDictionary<ConnectionContext, (IPEndPoint Claimed, int? Domain)> _inbound = new();

    /// <summary>
    /// Records the certificate an outbound connection's peer showed (the TLS middleware checked it
    /// already), and aborts inbound connections that claimed that silo's address with another
    /// domain's certificate before it was known. Returns what it aborted, for the log.
    /// </summary>
    public IReadOnlyList<string> Note(EndPoint? endpoint, X509Certificate2? certificate)
    {
        if (endpoint is not IPEndPoint ip || certificate is null) return [];
        var proven = DeploymentCertificates.FaultDomainOf(certificate);
        _byEndpoint[ip] = proven;
        var aborted = new List<string>();
        foreach (var (connection, claim) in _inbound)
        {
            if (!claim.Claimed.Equals(ip) || claim.Domain == proven) continue;
            var why = Mismatch(ip, claim.Domain, proven);
            connection.Abort(new ConnectionAbortedException(why));
            _inbound.TryRemove(connection, out _);
            aborted.Add(why);
        }
        return aborted;
    }

    /// <summary>
    /// An inbound silo connection that claims to be the silo at <paramref name="claimed"/>: Orleans
    /// also sends that silo's messages over it. Refused (the reason) when this silo's own connection
    /// to that address proved another domain than the inbound certificate names; otherwise null,
    /// and the connection is remembered until <see cref="Forget"/>, in case that proof comes later.
    /// </summary>
    public string? Admit(ConnectionContext connection, SiloAddress? claimed, X509Certificate2? certificate)
    {
        ArgumentNullException.ThrowIfNull(connection);
        if (claimed?.Endpoint is not { } endpoint) return null; // no claim: Orleans sends nothing over it
        if (certificate is null) return $"the connection claiming silo {claimed} showed no certificate";
        var domain = DeploymentCertificates.FaultDomainOf(certificate);
        _inbound[connection] = (endpoint, domain);
        // Checked after remembering it: a proof noted meanwhile is either seen here or aborts it in Note.
        if (_byEndpoint.TryGetValue(endpoint, out var proven) && proven != domain)
        {
            _inbound.TryRemove(connection, out _);
            return Mismatch(endpoint, domain, proven);
        }
        return null;
    }

    /// <summary>Whether this silo knows what the silo at <paramref name="endpoint"/> proved.</summary>
    public bool IsKnown(IPEndPoint endpoint) => _byEndpoint.ContainsKey(endpoint);

    /// <summary>
    /// Whether an inbound claim to be the silo at <paramref name="endpoint"/>, with
    /// <paramref name="certificate"/>, should first have the address dialed again: its proof is
    /// known and names another domain, and it was not checked again in the last
    /// <see cref="RecheckInterval"/>. A silo that restarted at the same address with another
    /// domain's certificate is then admitted once the address proves the new domain, instead of
    /// being refused until this silo happens to reconnect to it. An impostor gains nothing: the
    /// address still answers with its own certificate. The interval keeps an impostor's repeated
    /// claims from making this silo dial out for each.
    /// </summary>
    public bool ShouldRecheck(IPEndPoint endpoint, X509Certificate2? certificate)
    {
        if (certificate is null || !_byEndpoint.TryGetValue(endpoint, out var proven)) return false;
        if (proven == DeploymentCertificates.FaultDomainOf(certificate)) return false;
        var now = _time.GetUtcNow();
        while (true)
        {
            if (!_rechecked.TryGetValue(endpoint, out var last))
            {
                if (_rechecked.TryAdd(endpoint, now)) return true;
                continue;
            }
            if (now - last < RecheckInterval) return false;
            if (_rechecked.TryUpdate(endpoint, now, last)) return true;
        }
    }

    /// <summary>The inbound connection ended.</summary>
    public void Forget(ConnectionContext connection) => _inbound.TryRemove(connection, out _);

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

    private static string Mismatch(IPEndPoint claimed, int? shown, int? proven) =>
        $"a connection claims to be the silo at {claimed} with a certificate of {Name(shown)}, but that silo proved {Name(proven)} on this silo's own connection to it";

    private static string Name(int? domain) => domain is { } d ? "fault domain " + DeploymentCertificates.DomainName(d) : "no fault domain";
}
