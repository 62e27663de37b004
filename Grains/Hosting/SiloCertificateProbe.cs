using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;

namespace MinBft.Hosting;

/// <summary>
/// Learns which certificate the silo listening at an address shows, by dialing it: a TLS handshake
/// with this silo's certificate, closed before Orleans' preamble. Used before admitting an inbound
/// connection that claims an address this silo has not connected to yet, so that every claim is
/// checked against what the address itself proved, never against another claim.
/// </summary>
internal sealed class SiloCertificateProbe(X509Certificate2 certificate, IReadOnlyList<X509Certificate2> authorities)
{
    /// <summary>How long a probe may take before the claim it checks is refused.</summary>
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    /// <summary>The certificate the silo at <paramref name="endpoint"/> shows, checked against the
    /// deployment's CA as a silo certificate; throws if it cannot be reached or shows another.</summary>
    public async Task<X509Certificate2> FetchAsync(IPEndPoint endpoint, CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(Timeout);
        using var tcp = new TcpClient(endpoint.AddressFamily);
        await tcp.ConnectAsync(endpoint, deadline.Token).ConfigureAwait(false);
        var tls = new SslStream(tcp.GetStream(), leaveInnerStreamOpen: false);
        await using (tls.ConfigureAwait(false))
        {
            string? refused = null;
            await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = "minbft-silo", // not checked: silos are found by address (see DeploymentTls)
                ClientCertificates = [certificate],
                RemoteCertificateValidationCallback = (_, shown, _, _) =>
                    shown is X509Certificate2 silo && DeploymentTls.IsAccepted(authorities, silo, TlsPeer.Silo, out refused),
            }, deadline.Token).ConfigureAwait(false);
            // A copy: the stream's own certificate goes with the stream.
            return tls.RemoteCertificate is { } shown
                ? X509CertificateLoader.LoadCertificate(shown.GetRawCertData())
                : throw new InvalidDataException($"the silo at {endpoint} showed no certificate ({refused ?? "none"})");
        }
    }
}
