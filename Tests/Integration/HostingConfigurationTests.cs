using Microsoft.Extensions.Configuration;
using MinBft.Hosting;
using Orleans.TestingHost;

namespace MinBft.Tests.Integration;

/// <summary>A misconfigured silo fails when it is built or started, with an error that says why.</summary>
public sealed class HostingConfigurationTests : IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "minbft-hosting-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_directory)) Directory.Delete(_directory, recursive: true);
    }

    [Fact]
    public async Task A_silo_holding_another_domains_keys_does_not_start()
    {
        DeploymentKeys.Generate(1, _directory);
        var error = await StartAsync(new()
        {
            ["MinBft:FaultDomain"] = "0",
            ["MinBft:ManifestPath"] = Path.Combine(_directory, DeploymentKeys.ManifestFileName),
            ["MinBft:KeyDirectory"] = DeploymentKeys.DomainDirectory(_directory, 1),
            ["MinBft:DataDirectory"] = Path.Combine(_directory, "data"),
        });
        Assert.Contains("not replica 0's key", error.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Invalid_options_are_refused_before_the_silo_starts()
    {
        DeploymentKeys.Generate(1, _directory);
        var manifest = Path.Combine(_directory, DeploymentKeys.ManifestFileName);

        var noManifest = await StartAsync(new() { ["MinBft:FaultDomain"] = "0" });
        Assert.Contains("ManifestPath is required", noManifest.ToString(), StringComparison.Ordinal);
        var outside = await StartAsync(new() { ["MinBft:FaultDomain"] = "3", ["MinBft:ManifestPath"] = manifest });
        Assert.Contains("FaultDomain 3 is not a replica of this 3-replica cluster", outside.ToString(), StringComparison.Ordinal);
        var pipeline = await StartAsync(new() { ["MinBft:ManifestPath"] = manifest, ["MinBft:MaxInFlightBatches"] = "100" });
        Assert.Contains("watermark", pipeline.ToString(), StringComparison.Ordinal);
        var missing = await StartAsync(new() { ["MinBft:ManifestPath"] = Path.Combine(_directory, "nope.json") });
        Assert.Contains("cluster manifest not found", missing.ToString(), StringComparison.Ordinal);
    }

    private static async Task<Exception> StartAsync(Dictionary<string, string?> settings)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(settings).Build();
        var builder = new InProcessTestClusterBuilder(1);
        builder.ConfigureSilo((_, silo) => silo.AddMinBft(configuration));
        await using var cluster = builder.Build();
        var error = await Record.ExceptionAsync(() => cluster.DeployAsync());
        Assert.NotNull(error);
        return error;
    }
}
