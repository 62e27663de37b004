using System.Net;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Connections;
using MinBft.Hosting;
using Orleans.Runtime;

namespace MinBft.Tests.Hosting;

/// <summary>
/// An inbound silo connection's claimed address against what that address proved on this silo's own
/// connection (issue 11: Orleans sends a silo's messages over connections claiming its address).
/// The attack on a running cluster is <c>TlsTests.Attack_connection_claiming_another_domains_silo_address_is_refused</c>.
/// </summary>
public sealed class SiloCertificateDomainsTests : IDisposable
{
    private readonly X509Certificate2 _authority = DeploymentCertificates.CreateAuthority("test", DateTimeOffset.UtcNow);
    private readonly X509Certificate2 _domain0;
    private readonly X509Certificate2 _domain1;
    private readonly X509Certificate2 _gateway;
    private readonly SiloAddress _silo = SiloAddress.New(new IPEndPoint(IPAddress.Loopback, 2000), 1);
    private readonly SiloCertificateDomains _domains = new();

    public SiloCertificateDomainsTests()
    {
        _domain0 = Issue(DeploymentCertificates.DomainName(0));
        _domain1 = Issue(DeploymentCertificates.DomainName(1));
        _gateway = Issue(DeploymentCertificates.GatewayDirectoryName);
    }

    [Fact]
    public void A_claim_that_agrees_with_the_proven_domain_is_admitted()
    {
        _domains.Note(_silo.Endpoint, _domain0);
        Assert.Null(_domains.Admit(new DefaultConnectionContext(), _silo, _domain0));
    }

    [Fact]
    public void Attack_claim_with_another_domains_or_the_gateways_certificate_is_refused()
    {
        _domains.Note(_silo.Endpoint, _domain0);
        Assert.Contains("fault domain domain-1", _domains.Admit(new DefaultConnectionContext(), _silo, _domain1), StringComparison.Ordinal);
        Assert.Contains("no fault domain", _domains.Admit(new DefaultConnectionContext(), _silo, _gateway), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Attack_claim_admitted_before_the_proof_is_aborted_when_the_proof_disagrees()
    {
        var early = new DefaultConnectionContext();
        var honest = new DefaultConnectionContext();
        Assert.Null(_domains.Admit(early, _silo, _gateway));
        Assert.Null(_domains.Admit(honest, _silo, _domain0));

        var aborted = _domains.Note(_silo.Endpoint, _domain0);

        Assert.Single(aborted);
        // The context closes on the thread pool after Abort.
        var closed = new TaskCompletionSource();
        using var registration = early.ConnectionClosed.Register(() => closed.TrySetResult());
        await closed.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.False(honest.ConnectionClosed.IsCancellationRequested, "the domain-0 claim was closed");
    }

    [Fact]
    public void A_connection_that_claims_no_silo_address_is_not_checked_and_one_without_certificate_is_refused()
    {
        Assert.Null(_domains.Admit(new DefaultConnectionContext(), claimed: null, _gateway));
        Assert.NotNull(_domains.Admit(new DefaultConnectionContext(), _silo, certificate: null));
    }

    [Fact]
    public void A_forgotten_connection_is_not_aborted_later()
    {
        var closed = new DefaultConnectionContext();
        Assert.Null(_domains.Admit(closed, _silo, _gateway));
        _domains.Forget(closed);
        Assert.Empty(_domains.Note(_silo.Endpoint, _domain0));
    }

    [Fact]
    public void A_claim_contradicting_a_proof_has_the_address_checked_again_at_most_once_an_interval()
    {
        var clock = new Microsoft.Extensions.Time.Testing.FakeTimeProvider();
        var domains = new SiloCertificateDomains(clock);
        Assert.False(domains.ShouldRecheck(_silo.Endpoint, _domain1)); // nothing proven: the first probe's job
        domains.Note(_silo.Endpoint, _domain0);

        Assert.False(domains.ShouldRecheck(_silo.Endpoint, _domain0)); // agrees: nothing to check
        Assert.True(domains.ShouldRecheck(_silo.Endpoint, _domain1));
        // An impostor's repeated claims do not make this silo dial out for each.
        Assert.False(domains.ShouldRecheck(_silo.Endpoint, _domain1));
        Assert.False(domains.ShouldRecheck(_silo.Endpoint, _gateway));
        clock.Advance(SiloCertificateDomains.RecheckInterval);
        Assert.True(domains.ShouldRecheck(_silo.Endpoint, _gateway));
    }

    [Fact]
    public void A_silo_restarted_at_the_same_address_with_another_domains_certificate_is_admitted_once_the_address_proves_it()
    {
        _domains.Note(_silo.Endpoint, _domain0);
        Assert.NotNull(_domains.Admit(new DefaultConnectionContext(), _silo, _domain1));
        // The middleware dials the address again; the silo there now shows domain 1's certificate.
        Assert.True(_domains.ShouldRecheck(_silo.Endpoint, _domain1));
        _domains.Note(_silo.Endpoint, _domain1);
        Assert.Null(_domains.Admit(new DefaultConnectionContext(), _silo, _domain1));
        Assert.Equal(SiloDomainCheck.Verified, _domains.Check(_silo.Endpoint, 1));
        Assert.Equal(SiloDomainCheck.Refused, _domains.Check(_silo.Endpoint, 0));
    }

    public void Dispose()
    {
        _domain0.Dispose();
        _domain1.Dispose();
        _gateway.Dispose();
        _authority.Dispose();
    }

    private X509Certificate2 Issue(string name) =>
        DeploymentCertificates.Issue(_authority, DeploymentCertificates.SiloCommonName(name), TlsPeer.Silo, DateTimeOffset.UtcNow, TimeSpan.FromDays(1));
}
