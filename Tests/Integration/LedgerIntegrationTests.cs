using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using MinBft.Application;
using MinBft.Client;
using MinBft.Hosting;
using Orleans.Hosting;
using Xunit.Abstractions;

namespace MinBft.Tests.Integration;

/// <summary>The ledger sample replicated by a real cluster, driven through the SDK; and how a silo is told to run it.</summary>
public sealed class LedgerIntegrationTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "minbft-ledger-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_directory)) Directory.Delete(_directory, recursive: true);
    }

    [Fact]
    public async Task A_cluster_running_the_ledger_serves_the_SDK_and_its_replicas_agree_on_the_state()
    {
        // The way a user plugs in a service: register its factory on every silo.
        var setup = new ClusterSetup
        {
            F = 1,
            Sqlite = false,
            ConfigureSilo = (_, silo) => silo.Services.AddSingleton<IStateMachineFactory, LedgerStateMachineFactory>(),
        };
        await using var cluster = await MinBftTestCluster.StartAsync(setup, output);
        using var client = new MinBftClient(cluster.Grains, cluster.Manifest, new MinBftClientOptions { IdentityPoolSize = 2 });
        var ledger = new LedgerClient(client);

        // The same operations on a local ledger give the state the replicas must reach.
        var expected = new LedgerStateMachine();
        Assert.Equal(100, await ledger.OpenAsync("alice", 100));
        expected.Apply(LedgerOperation.EncodeOpen("alice", 100));
        Assert.Equal(0, await ledger.OpenAsync("bob"));
        expected.Apply(LedgerOperation.EncodeOpen("bob"));
        Assert.Equal(60, await ledger.TransferAsync("alice", "bob", 40));
        expected.Apply(LedgerOperation.EncodeTransfer("alice", "bob", 40));
        Assert.Equal(65, await ledger.DepositAsync("alice", 5));
        expected.Apply(LedgerOperation.EncodeDeposit("alice", 5));
        Assert.Equal(30, await ledger.WithdrawAsync("bob", 10));
        expected.Apply(LedgerOperation.EncodeWithdraw("bob", 10));

        var overdraw = await Assert.ThrowsAsync<LedgerRejectedException>(() => ledger.TransferAsync("bob", "alice", 31));
        Assert.Equal(LedgerStatus.InsufficientFunds, overdraw.Status);
        Assert.Equal(30, overdraw.Balance);
        var exists = await Assert.ThrowsAsync<LedgerRejectedException>(() => ledger.OpenAsync("alice"));
        Assert.Equal(LedgerStatus.AccountExists, exists.Status);
        var missing = await Assert.ThrowsAsync<LedgerRejectedException>(() => ledger.BalanceAsync("carol"));
        Assert.Equal(LedgerStatus.AccountNotFound, missing.Status);

        Assert.Equal(65, await ledger.BalanceAsync("alice"));
        Assert.Equal(30, await ledger.BalanceAsync("bob"));

        var statuses = await cluster.WaitForAgreementAsync(Enumerable.Range(0, cluster.N).ToArray());
        Assert.All(statuses, s => Assert.Equal(Convert.ToHexString(expected.Digest()), s.StateDigest, ignoreCase: true));
    }

    [Fact]
    public void MinBft_StateMachine_chooses_the_sample_and_a_factory_of_the_host_wins()
    {
        var manifest = DeploymentKeys.Generate(1, _directory);
        Assert.IsType<KeyValueStateMachineFactory>(Factory(new() { }, manifest));
        Assert.IsType<LedgerStateMachineFactory>(Factory(new() { ["MinBft:StateMachine"] = "Ledger" }, manifest));
        Assert.IsType<KeyValueStateMachineFactory>(Factory(new() { ["MinBft:StateMachine"] = "keyvalue" }, manifest));
        Assert.IsType<DelegateStateMachineFactory>(Factory(
            new() { ["MinBft:StateMachine"] = "Ledger" }, manifest, new DelegateStateMachineFactory(_ => new KeyValueStateMachine())));

        var undefined = Assert.Throws<ArgumentException>(() => Factory(new() { ["MinBft:StateMachine"] = "7" }, manifest));
        Assert.Contains("MinBft:StateMachine must be KeyValue or Ledger, got 7", undefined.Message, StringComparison.Ordinal);
        var unknown = Assert.Throws<InvalidOperationException>(() => Factory(new() { ["MinBft:StateMachine"] = "Bank" }, manifest));
        Assert.Contains("MinBft:StateMachine", unknown.Message, StringComparison.Ordinal);
    }

    /// <summary>The factory a silo configured with <paramref name="settings"/> would use (built, not started).</summary>
    private static IStateMachineFactory Factory(Dictionary<string, string?> settings, ClusterManifest manifest, IStateMachineFactory? registeredFirst = null)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(settings).Build();
        var builder = new SiloBuilderStub(new ServiceCollection(), configuration);
        if (registeredFirst is not null) builder.Services.AddSingleton(registeredFirst);
        builder.AddMinBft(configuration, options => options.Manifest = manifest);
        return builder.Services.Last(d => d.ServiceType == typeof(IStateMachineFactory)).ImplementationInstance as IStateMachineFactory
            ?? throw new InvalidOperationException("no IStateMachineFactory instance registered");
    }

    private sealed class SiloBuilderStub(IServiceCollection services, IConfiguration configuration) : ISiloBuilder
    {
        public IServiceCollection Services { get; } = services;
        public IConfiguration Configuration { get; } = configuration;
    }
}
