using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using MinBft.Hosting;
using Orleans;
using Orleans.Configuration;
using Orleans.Connections.Security;
using Orleans.Hosting;

namespace MinBft.Client;

/// <summary>
/// Mutual TLS between a client and the cluster's gateways (the official Orleans TLS middleware):
/// the client shows its certificate of the deployment's CA, and accepts a gateway only if it shows
/// a silo certificate of that CA (see <see cref="DeploymentTls"/>), so a stranger can neither call
/// grains nor pose as the cluster.
/// </summary>
public static partial class MinBftClientTls
{
    /// <summary>
    /// Mutual TLS with the CA(s) of <paramref name="manifest"/> and this client's certificate.
    /// Throws <see cref="ArgumentException"/> when the manifest names no CA, and
    /// <see cref="IOException"/>/<see cref="InvalidDataException"/> (naming the file) when the
    /// certificate is missing, has no key, or is not a client certificate of that CA.
    /// </summary>
    public static IClientBuilder UseMinBftTls(this IClientBuilder builder, ClusterManifest manifest, string certificatePath, string? keyPath = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(manifest);
        ArgumentException.ThrowIfNullOrWhiteSpace(certificatePath);
        if (!manifest.HasTlsCertificateAuthority)
            throw new ArgumentException("the cluster manifest names no TLS CA, so there is nothing to check the gateways' certificates against: this deployment runs plaintext");
        var certificate = DeploymentTls.LoadCertificateWithKey(certificatePath, keyPath);
        DeploymentTls.CheckOwnCertificate(manifest, certificate, TlsPeer.SiloOrClient, certificatePath);
        var authorities = manifest.LoadTlsCertificateAuthorities();
        // What UseTls(IClientBuilder, ...) does, with the connection's services at hand for logging refusals.
        return builder.Configure<ClientConnectionOptions>(connections => connections.ConfigureConnection(connection =>
        {
            var logger = connection.ApplicationServices.GetService<ILoggerFactory>()?.CreateLogger(typeof(MinBftClientTls).FullName!) ?? NullLogger.Instance;
            connection.UseClientTls(new TlsOptions
            {
                LocalCertificate = certificate,
                RemoteCertificateMode = RemoteCertificateMode.RequireCertificate,
                ClientCertificateMode = RemoteCertificateMode.RequireCertificate,
                // The deployment's CA alone, no host names (gateways are found by IP address).
                RemoteCertificateValidation = (remote, _, _) =>
                {
                    if (DeploymentTls.IsAccepted(authorities, remote, TlsPeer.Silo, out var reason)) return true;
                    LogGatewayRefused(logger, remote.Subject, remote.Thumbprint, reason);
                    return false;
                },
            });
        }));
    }

    /// <summary>
    /// <c>AddMinBftClient</c>'s decision: TLS when the manifest (read now, if its path is known)
    /// names a CA and <see cref="MinBftClientTlsOptions.Enabled"/>; then a certificate is required.
    /// </summary>
    internal static void Configure(IClientBuilder builder, MinBftClientOptions options)
    {
        var tls = options.Tls ?? new MinBftClientTlsOptions();
        if (!tls.Enabled) return;
        var certificateGiven = !string.IsNullOrWhiteSpace(tls.CertificatePath);
        if (string.IsNullOrWhiteSpace(options.ManifestPath) || !File.Exists(options.ManifestPath))
        {
            if (certificateGiven)
                throw new ArgumentException($"{MinBftClientOptions.SectionName}:Tls:CertificatePath is set, but the manifest (whose TLS CA the gateways are checked against) is not: set {MinBftClientOptions.SectionName}:ManifestPath to an existing file");
            // No manifest yet: the application configures the connection itself (it is reported missing when the client is resolved).
            return;
        }
        var manifest = ClusterManifest.Load(options.ManifestPath);
        if (!manifest.HasTlsCertificateAuthority)
        {
            if (certificateGiven)
                throw new ArgumentException($"{MinBftClientOptions.SectionName}:Tls:CertificatePath is set, but the manifest {options.ManifestPath} names no TLS CA: this deployment runs plaintext");
            return;
        }
        if (!certificateGiven)
        {
            throw new ArgumentException(
                $"the deployment uses TLS (its manifest names a CA): set {MinBftClientOptions.SectionName}:Tls:CertificatePath to this client's certificate "
                + $"(keygen --client-cert NAME writes clients/NAME/tls.crt), or {MinBftClientOptions.SectionName}:Tls:Enabled=false if its silos run with --no-tls");
        }
        builder.UseMinBftTls(manifest, tls.CertificatePath!, tls.KeyPath);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "TLS: refused the gateway: certificate {Subject} (thumbprint {Thumbprint}) is {Reason}")]
    private static partial void LogGatewayRefused(ILogger logger, string subject, string thumbprint, string reason);
}
