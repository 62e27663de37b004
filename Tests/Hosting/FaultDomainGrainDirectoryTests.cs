using System.Net;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using MinBft.Hosting;
using Orleans.GrainDirectory;
using Orleans.Runtime;

namespace MinBft.Tests.Hosting;

/// <summary>
/// The directory check where messages leave for a silo (issue 11, the peer-side certificate check):
/// an entry of fault domain 0's grain counts only on a silo whose certificate, seen on this silo's
/// own TLS connection, names domain 0. The forged-entry attack on a running TLS cluster is in
/// <c>TlsTests</c>; these cases cover each rule on its own, with an in-memory directory underneath.
/// </summary>
public sealed class FaultDomainGrainDirectoryTests : IDisposable
{
    private static readonly GrainId Replica0 = GrainId.Create("replica", "0");
    private readonly SiloAddress _local = Silo(1000);
    private readonly SiloAddress _domain0 = Silo(1001);
    private readonly SiloAddress _domain1 = Silo(1002);
    private readonly SiloAddress _gateway = Silo(1003);
    private readonly SiloAddress _unseen = Silo(1004);
    private readonly X509Certificate2 _authority = DeploymentCertificates.CreateAuthority("test", DateTimeOffset.UtcNow);
    private readonly SiloCertificateDomains _certificates = new();
    private readonly MemoryDirectory _inner = new();
    private readonly ServiceProvider _services = new ServiceCollection().AddMetrics().BuildServiceProvider();
    private readonly Dictionary<SiloAddress, int> _declared = [];

    public FaultDomainGrainDirectoryTests()
    {
        Show(_domain0, DeploymentCertificates.DomainName(0));
        Show(_domain1, DeploymentCertificates.DomainName(1));
        Show(_gateway, DeploymentCertificates.GatewayDirectoryName);
    }

    [Fact]
    public async Task Lookup_answers_with_a_silo_whose_certificate_names_the_grains_domain()
    {
        await _inner.Register(Entry(_domain0));
        Assert.Equal(_domain0, (await Directory(localDomain: null).Lookup(Replica0))?.SiloAddress);
    }

    [Theory]
    [InlineData("domain-1")]
    [InlineData("gateway")]
    public async Task Attack_entry_on_a_silo_whose_certificate_names_another_domain_reads_as_not_active(string silo)
    {
        await _inner.Register(Entry(silo == "gateway" ? _gateway : _domain1));
        Assert.Null(await Directory(localDomain: null).Lookup(Replica0));
    }

    [Fact]
    public async Task Entry_on_a_silo_not_connected_to_yet_reads_as_not_active_even_if_it_declares_the_domain()
    {
        _declared[_unseen] = 0;
        await _inner.Register(Entry(_unseen));
        Assert.Null(await Directory(localDomain: null).Lookup(Replica0));
    }

    [Fact]
    public async Task Entry_on_this_silo_counts_only_if_this_silo_is_of_the_grains_domain()
    {
        await _inner.Register(Entry(_local));
        Assert.Equal(_local, (await Directory(localDomain: 0).Lookup(Replica0))?.SiloAddress);
        Assert.Null(await Directory(localDomain: 1).Lookup(Replica0));
        Assert.Null(await Directory(localDomain: null).Lookup(Replica0));
    }

    [Fact]
    public async Task Attack_registration_replaces_an_entry_on_a_silo_proven_to_be_of_another_domain()
    {
        var forged = Entry(_gateway);
        await _inner.Register(forged);
        var mine = Entry(_local);
        var result = await Directory(localDomain: 0).Register(mine, previousAddress: null);
        Assert.True(mine.Matches(result), $"registered {result}");
        Assert.True(mine.Matches(await _inner.Lookup(Replica0)));
    }

    [Fact]
    public async Task Attack_registration_replaces_an_entry_on_an_unseen_silo_that_does_not_declare_the_domain()
    {
        _declared[_unseen] = 1;
        await _inner.Register(Entry(_unseen));
        var mine = Entry(_local);
        Assert.True(mine.Matches(await Directory(localDomain: 0).Register(mine, previousAddress: null)));
    }

    [Fact]
    public async Task Registration_keeps_an_entry_on_a_silo_of_the_domain_proven_or_declared()
    {
        // A standby of domain 0: its activation stands, this one is the duplicate Orleans drops.
        var proven = Entry(_domain0);
        await _inner.Register(proven);
        Assert.True(proven.Matches(await Directory(localDomain: 0).Register(Entry(_local), previousAddress: null)));

        _declared[_unseen] = 0;
        var declared = Entry(_unseen);
        await _inner.Register(declared, proven);
        Assert.True(declared.Matches(await Directory(localDomain: 0).Register(Entry(_local), previousAddress: null)));
    }

    [Fact]
    public void Certificate_names_a_domain_only_in_keygens_spelling()
    {
        using var domain = Issue("minbft-silo-domain-2");
        using var gateway = Issue("minbft-silo-gateway");
        using var padded = Issue("minbft-silo-domain-02");
        using var foreign = Issue("domain-2");
        Assert.Equal(2, DeploymentCertificates.FaultDomainOf(domain));
        Assert.Null(DeploymentCertificates.FaultDomainOf(gateway));
        Assert.Null(DeploymentCertificates.FaultDomainOf(padded));
        Assert.Null(DeploymentCertificates.FaultDomainOf(foreign));
    }

    public void Dispose()
    {
        _authority.Dispose();
        _services.Dispose();
    }

    private FaultDomainGrainDirectory Directory(int? localDomain) => new(
        _inner, _certificates, silo => _declared.TryGetValue(silo, out var d) ? d : null, new LocalSilo(_local), localDomain,
        new MinBftMetrics(_services.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>()), NullLogger<FaultDomainGrainDirectory>.Instance);

    private static GrainAddress Entry(SiloAddress silo) => new() { GrainId = Replica0, SiloAddress = silo, ActivationId = ActivationId.NewId() };

    private static SiloAddress Silo(int port) => SiloAddress.New(new IPEndPoint(IPAddress.Loopback, port), 1);

    private void Show(SiloAddress silo, string name)
    {
        using var certificate = Issue(DeploymentCertificates.SiloCommonName(name));
        _certificates.Note(silo.Endpoint, certificate);
    }

    private X509Certificate2 Issue(string commonName) =>
        DeploymentCertificates.Issue(_authority, commonName, TlsPeer.Silo, DateTimeOffset.UtcNow, TimeSpan.FromDays(1));

    private sealed class LocalSilo(SiloAddress address) : ILocalSiloDetails
    {
        public string Name => "local";
        public string ClusterId => "test";
        public string DnsHostName => "localhost";
        public SiloAddress SiloAddress => address;
        public SiloAddress GatewayAddress => address;
    }

    /// <summary>One entry per grain; a registration replaces the entry only if it is the previous address it names.</summary>
    private sealed class MemoryDirectory : IGrainDirectory
    {
        private readonly Dictionary<GrainId, GrainAddress> _entries = [];

        public Task<GrainAddress?> Register(GrainAddress address) => Register(address, null);

        public Task<GrainAddress?> Register(GrainAddress address, GrainAddress? previousAddress)
        {
            if (!_entries.TryGetValue(address.GrainId, out var current) || (previousAddress is not null && current.Matches(previousAddress)))
                _entries[address.GrainId] = current = address;
            return Task.FromResult<GrainAddress?>(current);
        }

        public Task Unregister(GrainAddress address)
        {
            if (_entries.TryGetValue(address.GrainId, out var current) && current.Matches(address)) _entries.Remove(address.GrainId);
            return Task.CompletedTask;
        }

        public Task<GrainAddress?> Lookup(GrainId grainId) => Task.FromResult(_entries.GetValueOrDefault(grainId));

        public Task UnregisterSilos(List<SiloAddress> siloAddresses) => Task.CompletedTask;
    }
}
