using Microsoft.Extensions.Configuration;
using Orleans.Hosting;
using Orleans.TestingHost;

namespace MinBft.Testing;

/// <summary>Adds a MinBFT deployment to an Orleans TestingHost cluster.</summary>
public static class MinBftTestClusterBuilderExtensions
{
    /// <summary>
    /// Deploys MinBFT with n = 2f+1 replicas: see <see cref="AddMinBft(TestClusterBuilder, Action{MinBftTestingOptions})"/>.
    /// </summary>
    public static MinBftTestDeployment AddMinBft(this TestClusterBuilder builder, int f = 1) =>
        builder.AddMinBft(options => options.F = f);

    /// <summary>
    /// Deploys MinBFT into the cluster this builder builds: generates the deployment's keys now
    /// (in a temp directory unless <see cref="MinBftTestingOptions.Directory"/> is set), sets
    /// the initial silo count to n plus the gateway silos, makes silo k fault domain k (its
    /// keys, a SQLite store, its USIG initialised for the first start) and gives the cluster
    /// client <c>AddMinBftClient</c>, so that <c>cluster.GetKeyValueClient()</c> and
    /// <c>cluster.GetMinBftClient()</c> work once the cluster is deployed. Dispose the returned
    /// deployment after the cluster to delete its directory.
    /// </summary>
    public static MinBftTestDeployment AddMinBft(this TestClusterBuilder builder, Action<MinBftTestingOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(configure);
        var options = new MinBftTestingOptions();
        configure(options);
        var deployment = MinBftTestDeployment.Create(options);
        builder.Options.InitialSilosCount = (short)deployment.SiloCount;
        builder.Properties[MinBftTestDeployment.ConfigurationKey] = deployment.Id;
        builder.AddSiloBuilderConfigurator<MinBftSiloConfigurator>();
        builder.AddClientBuilderConfigurator<MinBftClientConfigurator>();
        return deployment;
    }

    /// <summary>As <see cref="AddMinBft(TestClusterBuilder, Action{MinBftTestingOptions})"/>, for <see cref="InProcessTestClusterBuilder"/>.</summary>
    public static MinBftTestDeployment AddMinBft(this InProcessTestClusterBuilder builder, int f = 1) =>
        builder.AddMinBft(options => options.F = f);

    /// <summary>As <see cref="AddMinBft(TestClusterBuilder, Action{MinBftTestingOptions})"/>, for <see cref="InProcessTestClusterBuilder"/> (silo k is "Silo_k").</summary>
    public static MinBftTestDeployment AddMinBft(this InProcessTestClusterBuilder builder, Action<MinBftTestingOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(configure);
        var options = new MinBftTestingOptions();
        configure(options);
        var deployment = MinBftTestDeployment.Create(options);
        builder.Options.InitialSilosCount = (short)deployment.SiloCount;
        builder.ConfigureSilo((silo, siloBuilder) => deployment.ConfigureSilo(deployment.FaultDomainOf(silo.SiloName), siloBuilder));
        builder.ConfigureClient(deployment.ConfigureClient);
        return deployment;
    }
}

/// <summary>TestCluster's silo configurator: finds the deployment and the silo's name in the silo's configuration.</summary>
internal sealed class MinBftSiloConfigurator : ISiloConfigurator
{
    public void Configure(ISiloBuilder siloBuilder)
    {
        var deployment = MinBftTestDeployment.Find(siloBuilder.Configuration[MinBftTestDeployment.ConfigurationKey]);
        var name = siloBuilder.Configuration["Orleans:Name"]
            ?? throw new InvalidOperationException("TestingHost gave the silo no name (Orleans:Name)");
        deployment.ConfigureSilo(deployment.FaultDomainOf(name), siloBuilder);
    }
}

/// <summary>TestCluster's client configurator.</summary>
internal sealed class MinBftClientConfigurator : IClientBuilderConfigurator
{
    public void Configure(IConfiguration configuration, IClientBuilder clientBuilder) =>
        MinBftTestDeployment.Find(configuration[MinBftTestDeployment.ConfigurationKey]).ConfigureClient(clientBuilder);
}
