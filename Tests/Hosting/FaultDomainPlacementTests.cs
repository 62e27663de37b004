using System.Diagnostics;
using System.Globalization;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using MinBft.Hosting;
using Orleans;
using Orleans.Configuration;
using Orleans.Hosting;
using Orleans.Runtime;
using Orleans.TestingHost;
using Xunit.Abstractions;

namespace MinBft.Tests.Hosting;

/// <summary>
/// Fault-domain placement on in-process clusters whose silo k declares fault domain k.
/// </summary>
public sealed class FaultDomainPlacementTests(ITestOutputHelper output) : IDisposable
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(5);

    private readonly string _dataDirectory = Path.Combine(Path.GetTempPath(), "minbft-placement-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dataDirectory))
        {
            Directory.Delete(_dataDirectory, recursive: true);
        }
    }

    [Fact]
    public async Task Three_silos_grain_i_runs_in_domain_i_and_stays_down_when_its_silo_stops()
    {
        await using var cluster = await StartClusterAsync(3);

        // Each silo opened its own domain's store while starting, before any grain needed it.
        for (var domain = 0; domain < 3; domain++)
        {
            Assert.True(File.Exists(Path.Combine(_dataDirectory, $"minbft-domain-{domain}.db")));
        }

        for (var domain = 0; domain < 3; domain++)
        {
            Assert.Equal(domain, await EventuallyAsync(Probe(cluster, domain).GetFaultDomainAsync));
        }

        for (var domain = 0; domain < 3; domain++)
        {
            Assert.Equal(1, await Probe(cluster, domain).RecordVisitAsync());
        }

        // Grain i's state went to domain i's file and nowhere else.
        for (var domain = 0; domain < 3; domain++)
        {
            Assert.Equal([domain.ToString(CultureInfo.InvariantCulture)], StoredGrainKeys(domain));
        }

        await cluster.StopSiloAsync(SiloOfDomain(cluster, 1));

        var down = await EventuallyThrowsAsync<FaultDomainUnavailableException>(Probe(cluster, 1).GetFaultDomainAsync);
        Assert.Equal(1, down.FaultDomain);
        Assert.Contains("Fault domain 1 is down", down.Message, StringComparison.Ordinal);
        Assert.Equal(0, await Probe(cluster, 0).GetFaultDomainAsync());
        Assert.Equal(2, await Probe(cluster, 2).GetFaultDomainAsync());
        Assert.Equal(2, await Probe(cluster, 0).RecordVisitAsync());
        AssertNoActivationOutsideItsDomain();
    }

    [Fact]
    public async Task Five_silos_grain_i_runs_in_domain_i_and_stays_down_when_its_silo_is_killed()
    {
        var clock = Stopwatch.StartNew();
        await using var cluster = await StartClusterAsync(5);

        for (var domain = 0; domain < 5; domain++)
        {
            Assert.Equal(domain, await EventuallyAsync(Probe(cluster, domain).GetFaultDomainAsync));
        }

        output.WriteLine($"all placed after {clock.Elapsed}");
        await cluster.KillSiloAsync(SiloOfDomain(cluster, 1));
        output.WriteLine($"killed after {clock.Elapsed}");

        // Until membership declares the killed silo dead, calls to grain 1 still go to its old
        // activation and fail; afterwards placement runs again and refuses every other domain.
        var down = await EventuallyThrowsAsync<FaultDomainUnavailableException>(Probe(cluster, 1).GetFaultDomainAsync);
        Assert.Equal(1, down.FaultDomain);
        output.WriteLine($"domain 1 reported down after {clock.Elapsed}");
        foreach (var domain in new[] { 0, 2, 3, 4 })
        {
            Assert.Equal(domain, await Probe(cluster, domain).GetFaultDomainAsync().WaitAsync(CallTimeout));
        }

        AssertNoActivationOutsideItsDomain();
    }

    [Fact]
    public async Task A_grain_whose_domain_has_no_silo_is_not_placed()
    {
        await using var cluster = await StartClusterAsync(3);
        Assert.Equal(0, await EventuallyAsync(Probe(cluster, 0).GetFaultDomainAsync));

        var missing = await Assert.ThrowsAsync<FaultDomainUnavailableException>(
            () => Probe(cluster, 7).GetFaultDomainAsync().WaitAsync(CallTimeout));

        Assert.Equal(7, missing.FaultDomain);
        AssertNoActivationOutsideItsDomain();
    }

    [Fact]
    public async Task A_silo_with_sqlite_storage_but_no_fault_domain_does_not_start()
    {
        var builder = new InProcessTestClusterBuilder(1);
        builder.ConfigureSilo((_, siloBuilder) =>
            siloBuilder.AddMinBftSqliteStorage(configure: storage => storage.DataDirectory = _dataDirectory));
        await using var cluster = builder.Build();

        var exception = await Record.ExceptionAsync(() => cluster.DeployAsync());

        Assert.IsType<OrleansConfigurationException>(exception);
        Assert.False(Directory.Exists(_dataDirectory));
    }

    private List<string> StoredGrainKeys(int domain)
    {
        var path = Path.Combine(_dataDirectory, $"minbft-domain-{domain}.db");
        using var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = path, Pooling = false }.ToString());
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT grain_key FROM grain_state";
        using var reader = command.ExecuteReader();
        var keys = new List<string>();
        while (reader.Read())
        {
            keys.Add(reader.GetString(0));
        }

        return keys;
    }

    private static void AssertNoActivationOutsideItsDomain()
    {
        var activations = ProbeActivations.Snapshot();
        Assert.NotEmpty(activations);
        Assert.All(activations, activation => Assert.Equal(activation.Key, activation.FaultDomain));
    }

    private static IFaultDomainProbeGrain Probe(InProcessTestCluster cluster, int domain) =>
        cluster.Client.GetGrain<IFaultDomainProbeGrain>(domain);

    private static InProcessSiloHandle SiloOfDomain(InProcessTestCluster cluster, int domain) =>
        cluster.Silos.Single(silo =>
            silo.ServiceProvider.GetRequiredService<IOptions<FaultDomainOptions>>().Value.FaultDomain == domain);

    private async Task<InProcessTestCluster> StartClusterAsync(short silos)
    {
        var builder = new InProcessTestClusterBuilder(silos);
        builder.ConfigureSilo((options, siloBuilder) =>
        {
            // Silo_k gets fault domain k.
            var domain = int.Parse(options.SiloName.AsSpan(options.SiloName.LastIndexOf('_') + 1), CultureInfo.InvariantCulture);
            siloBuilder.AddMinBftFaultDomain(domain);
            siloBuilder.AddMinBftSqliteStorage(configure: storage => storage.DataDirectory = _dataDirectory);

            // Declare a killed silo dead within a second or two instead of the default minute.
            siloBuilder.Configure<ClusterMembershipOptions>(membership =>
            {
                membership.ProbeTimeout = TimeSpan.FromMilliseconds(300);
                membership.NumMissedProbesLimit = 2;
                membership.NumVotesForDeathDeclaration = 1;
                membership.TableRefreshTimeout = TimeSpan.FromMilliseconds(500);
                membership.IAmAliveTablePublishTimeout = TimeSpan.FromSeconds(1);
            });
        });
        var cluster = builder.Build();
        var clock = Stopwatch.StartNew();
        await cluster.DeployAsync();
        output.WriteLine($"{silos} silos deployed in {clock.Elapsed}");
        return cluster;
    }

    /// <summary>
    /// Retries until the call succeeds: right after start, a silo's metadata may not have reached
    /// the silo that places the grain yet, and placement then fails.
    /// </summary>
    private static async Task<T> EventuallyAsync<T>(Func<Task<T>> call)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                return await call().WaitAsync(CallTimeout);
            }
            catch (Exception) when (clock.Elapsed < Deadline)
            {
                await Task.Delay(50);
            }
        }
    }

    /// <summary>Retries until the call fails with <typeparamref name="TException"/>; fails the test if it ever succeeds.</summary>
    private static async Task<TException> EventuallyThrowsAsync<TException>(Func<Task<int>> call)
        where TException : Exception
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            Exception? last;
            try
            {
                var domain = await call().WaitAsync(CallTimeout);
                Assert.Fail($"The call succeeded on fault domain {domain} although its domain is down.");
                throw new UnreachableException();
            }
            catch (TException expected)
            {
                return expected;
            }
            catch (Exception other) when (other is not Xunit.Sdk.XunitException)
            {
                last = other;
            }

            if (clock.Elapsed > Deadline)
            {
                throw new TimeoutException($"No {typeof(TException).Name} within {Deadline}; last error: {last}");
            }

            await Task.Delay(50);
        }
    }
}
