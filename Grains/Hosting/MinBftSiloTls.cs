using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Orleans;
using Orleans.Configuration;
using Orleans.Connections.Security;
using Orleans.Hosting;
using Orleans.Runtime;

namespace MinBft.Hosting;

/// <summary>How this silo's connections are secured, decided when <c>AddMinBft</c> runs (a singleton).</summary>
public sealed class MinBftTransport
{
    public const string MutualTlsMode = "mtls";
    public const string PlaintextMode = "plaintext";

    private MinBftTransport(X509Certificate2? certificate, string? plaintextReason, bool plaintextIntended)
    {
        Certificate = certificate;
        PlaintextReason = plaintextReason;
        PlaintextIntended = plaintextIntended;
    }

    /// <summary>Mutual TLS with the deployment's CA.</summary>
    public bool IsMutualTls => Certificate is not null;

    /// <summary>This silo's certificate (with mutual TLS).</summary>
    public X509Certificate2? Certificate { get; }

    /// <summary>Why the connections are plaintext.</summary>
    public string? PlaintextReason { get; }

    /// <summary>Plaintext on purpose (local development, tests), as opposed to a deployment that should have TLS.</summary>
    public bool PlaintextIntended { get; }

    /// <summary>"mtls", or "plaintext (REASON)": what the silo host and the local cluster print as <c>transport=</c>.</summary>
    public string Description => IsMutualTls ? MutualTlsMode : $"{PlaintextMode} ({PlaintextReason})";

    internal static MinBftTransport MutualTls(X509Certificate2 certificate) => new(certificate, null, false);

    internal static MinBftTransport Plaintext(string reason, bool intended) => new(null, reason, intended);
}

/// <summary>
/// Mutual TLS on a MinBFT silo with the official Orleans TLS middleware
/// (Microsoft.Orleans.Connections.Security). Three rules, one per kind of connection: silo-to-silo
/// connections, both ways, accept only silo certificates of the deployment's CA (so neither a
/// stranger nor a client can join the cluster or speak as a silo); the gateway accepts silo or
/// client certificates of that CA (so only the deployment's clients can call grains).
/// </summary>
internal static partial class MinBftSiloTls
{
    public static MinBftTransport Configure(ISiloBuilder builder, MinBftOptions options, ClusterManifest manifest)
    {
        var tls = options.Tls;
        if (!tls.Enabled)
        {
            return MinBftTransport.Plaintext(
                tls.PlaintextReason ?? $"TLS turned off by {MinBftOptions.SectionName}:Tls:Enabled=false or --no-tls",
                intended: tls.PlaintextReason is not null);
        }
        if (!manifest.HasTlsCertificateAuthority)
        {
            if (tls.Required)
            {
                throw new ArgumentException(
                    "TLS is required but the cluster manifest names no TLS CA: generate the deployment with keygen (it issues a CA "
                    + $"and certificates), or run this silo with --no-tls ({MinBftOptions.SectionName}:Tls:Enabled=false) for plaintext connections");
            }
            return MinBftTransport.Plaintext(tls.PlaintextReason ?? "the cluster manifest names no TLS CA", intended: tls.PlaintextReason is not null);
        }
        var path = options.ResolveTlsCertificatePath()
            ?? throw new ArgumentException(
                $"the manifest names a TLS CA, but this silo's certificate cannot be found: set {MinBftOptions.SectionName}:Tls:CertificatePath "
                + $"(or {MinBftOptions.SectionName}:KeyDirectory), or {MinBftOptions.SectionName}:Tls:Enabled=false for plaintext");
        var certificate = DeploymentTls.LoadCertificateWithKey(path, tls.KeyPath);
        DeploymentTls.CheckOwnCertificate(manifest, certificate, TlsPeer.Silo, path);
        CheckFaultDomain(certificate, options.FaultDomain, path);
        var authorities = manifest.LoadTlsCertificateAuthorities();
        var domains = new SiloCertificateDomains();
        var probe = new SiloCertificateProbe(certificate, authorities);
        builder.Services.AddSingleton(domains);
        builder.Configure<SiloConnectionOptions>(connections =>
        {
            connections.ConfigureSiloInboundConnection(c =>
            {
                c.UseServerTls(Options(certificate, authorities, TlsPeer.Silo, "silo-to-silo (inbound)", c.ApplicationServices));
                // Orleans also sends a silo's messages over the connections that claim its address:
                // the claim must agree with what that address proved (SiloCertificateDomains.Admit).
                var preamble = new SiloConnectionPreamble(c.ApplicationServices);
                var logger = Logger(c.ApplicationServices);
                c.Use(next => async context =>
                {
                    var (ended, claimed) = await preamble.PeekSiloAddressAsync(context).ConfigureAwait(false);
                    if (ended) return; // closed before its preamble (a probe): nothing for Orleans to read
                    var shown = context.Features.Get<ITlsConnectionFeature>()?.RemoteCertificate;
                    if (claimed?.Endpoint is { } endpoint && (!domains.IsKnown(endpoint) || domains.ShouldRecheck(endpoint, shown)))
                    {
                        // Never checked against another claim: ask the address itself first (again,
                        // when the claim contradicts an older proof: the silo there may have changed).
                        try
                        {
                            foreach (var aborted in domains.Note(endpoint, await probe.FetchAsync(endpoint, context.ConnectionClosed).ConfigureAwait(false)))
                                LogClaimRefused(logger, aborted);
                        }
                        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or AuthenticationException or InvalidDataException)
                        {
                            var why = $"it claims to be the silo at {endpoint}, whose certificate could not be fetched to check the claim ({e.Message})";
                            LogClaimRefused(logger, why);
                            context.Abort(new ConnectionAbortedException(why));
                            return;
                        }
                    }
                    if (domains.Admit(context, claimed, shown) is { } refused)
                    {
                        LogClaimRefused(logger, refused);
                        context.Abort(new ConnectionAbortedException(refused));
                        return;
                    }
                    try
                    {
                        await next(context).ConfigureAwait(false);
                    }
                    finally
                    {
                        domains.Forget(context);
                    }
                });
            });
            connections.ConfigureSiloOutboundConnection(c =>
            {
                c.UseClientTls(Options(certificate, authorities, TlsPeer.Silo, "silo-to-silo (outbound)", c.ApplicationServices));
                // After the handshake: the domain this peer's certificate names, for the check where messages leave.
                var logger = Logger(c.ApplicationServices);
                c.Use(next => context =>
                {
                    foreach (var aborted in domains.Note(context.RemoteEndPoint, context.Features.Get<ITlsConnectionFeature>()?.RemoteCertificate))
                        LogClaimRefused(logger, aborted);
                    return next(context);
                });
            });
            connections.ConfigureGatewayInboundConnection(c => c.UseServerTls(Options(certificate, authorities, TlsPeer.SiloOrClient, "gateway", c.ApplicationServices)));
        });
        return MinBftTransport.MutualTls(certificate);
    }

    /// <summary>
    /// A silo of fault domain i must show the certificate keygen issued to domain i (CN minbft-silo-domain-i).
    /// Placement puts replica and USIG i on the silos that declare domain i, so a silo declaring it
    /// with another domain's certificate would stand in for domain i with credentials of another.
    /// Throws <see cref="InvalidDataException"/> naming both.
    /// </summary>
    internal static void CheckFaultDomain(X509Certificate2 certificate, int? faultDomain, string source)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        if (faultDomain is not { } domain) return; // a gateway silo hosts no replica
        // The same reading of the certificate that peers apply to this silo (SiloCertificateDomains).
        if (DeploymentCertificates.FaultDomainOf(certificate) != domain)
        {
            var expected = DeploymentCertificates.SiloCommonName(DeploymentCertificates.DomainName(domain));
            var name = certificate.GetNameInfo(X509NameType.SimpleName, forIssuer: false);
            throw new InvalidDataException(
                $"{source}: this silo is fault domain {domain} but its certificate is issued to '{name}', not '{expected}': "
                + $"use domain {domain}'s certificate (keygen --silo-cert {DeploymentCertificates.DomainName(domain)})");
        }
    }

    private static ILogger Logger(IServiceProvider services) =>
        services.GetService<ILoggerFactory>()?.CreateLogger(typeof(MinBftSiloTls).FullName!) ?? NullLogger.Instance;

    private static TlsOptions Options(X509Certificate2 certificate, IReadOnlyList<X509Certificate2> authorities, TlsPeer peer, string connection, IServiceProvider services)
    {
        var logger = Logger(services);
        return new TlsOptions
        {
            LocalCertificate = certificate,
            // Both ends show a certificate, always: an outbound silo connection without one would be refused anyway.
            RemoteCertificateMode = RemoteCertificateMode.RequireCertificate,
            ClientCertificateMode = RemoteCertificateMode.RequireCertificate,
            // Trust is this deployment's CA alone (not the machine's roots), and host names are not
            // checked (see DeploymentTls): the chain is built here, so the platform's errors are ignored.
            RemoteCertificateValidation = (remote, _, _) =>
            {
                if (DeploymentTls.IsAccepted(authorities, remote, peer, out var reason)) return true;
                LogPeerRefused(logger, connection, remote.Subject, remote.Thumbprint, reason);
                return false;
            },
        };
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "TLS: refused a silo-to-silo (inbound) connection: {Reason}")]
    private static partial void LogClaimRefused(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "TLS: refused a {Connection} connection: certificate {Subject} (thumbprint {Thumbprint}) is {Reason}")]
    private static partial void LogPeerRefused(ILogger logger, string connection, string subject, string thumbprint, string reason);
}

/// <summary>Says at start how the silo's connections are secured: a warning when they are plaintext by accident.</summary>
internal sealed partial class MinBftTransportLog(MinBftTransport transport, MinBftSilo silo, ILogger<MinBftTransportLog> logger) : ILifecycleParticipant<ISiloLifecycle>
{
    /// <summary>A certificate this close to its end gets a warning at every start.</summary>
    private static readonly TimeSpan RenewalWarning = TimeSpan.FromDays(30);

    public void Participate(ISiloLifecycle lifecycle) =>
        lifecycle.Subscribe(nameof(MinBftTransportLog), ServiceLifecycleStage.RuntimeInitialize, _ =>
        {
            if (transport.Certificate is { } certificate)
            {
                LogMutualTls(logger, certificate.Subject, certificate.NotAfter.ToUniversalTime(), silo.Manifest.TlsCertificateAuthorities.Count);
                if (certificate.NotAfter.ToUniversalTime() - DateTime.UtcNow < RenewalWarning)
                    LogExpiresSoon(logger, certificate.Subject, certificate.NotAfter.ToUniversalTime());
            }
            else if (transport.PlaintextIntended)
            {
                LogPlaintext(logger, transport.PlaintextReason!);
            }
            else
            {
                LogPlaintextWarning(logger, transport.PlaintextReason!);
            }
            return Task.CompletedTask;
        });

    [LoggerMessage(Level = LogLevel.Information, Message = "MinBFT transport=mtls: certificate {Subject} (valid until {NotAfter:u}), trusting the manifest's {Authorities} CA(s); silo-to-silo connections accept silo certificates only, the gateway silo and client certificates")]
    private static partial void LogMutualTls(ILogger logger, string subject, DateTime notAfter, int authorities);

    [LoggerMessage(Level = LogLevel.Warning, Message = "MinBFT TLS certificate {Subject} expires at {NotAfter:u}: issue a new one (keygen --silo-cert) and restart this silo with it")]
    private static partial void LogExpiresSoon(ILogger logger, string subject, DateTime notAfter);

    [LoggerMessage(Level = LogLevel.Information, Message = "MinBFT transport=plaintext ({Reason})")]
    private static partial void LogPlaintext(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "MinBFT transport=plaintext: {Reason}. Connections are neither authenticated nor encrypted: any process that reaches this silo's ports can join the cluster, claim to be any silo, and call its grains")]
    private static partial void LogPlaintextWarning(ILogger logger, string reason);
}
