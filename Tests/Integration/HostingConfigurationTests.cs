using Microsoft.Extensions.Configuration;
using MinBft.Hosting;
using MinBft.Protocol;
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
        var pipeline = await StartAsync(new() { ["MinBft:ManifestPath"] = manifest, ["MinBft:Protocol:MaxInFlightBatches"] = "100" });
        Assert.Contains("watermark", pipeline.ToString(), StringComparison.Ordinal);
        var batch = await StartAsync(new() { ["MinBft:ManifestPath"] = manifest, ["MinBft:Protocol:MaxBatchSize"] = "0" });
        Assert.Contains("MinBft:Protocol: MaxBatchSize must be 1..", batch.ToString(), StringComparison.Ordinal);
        // A knob outside its section (or misspelt) is refused, not silently ignored.
        var misplaced = await StartAsync(new() { ["MinBft:ManifestPath"] = manifest, ["MinBft:MaxBatchSize"] = "8" });
        Assert.Contains("MinBft:MaxBatchSize is not a MinBftOptions setting (a protocol knob: set MinBft:Protocol:MaxBatchSize)", misplaced.ToString(), StringComparison.Ordinal);
        var missing = await StartAsync(new() { ["MinBft:ManifestPath"] = Path.Combine(_directory, "nope.json") });
        Assert.Contains("cluster manifest not found", missing.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Protocol_knobs_are_read_from_the_protocol_section_into_the_cores_settings()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["MinBft:Protocol:MaxBatchSize"] = "7",
            ["MinBft:Protocol:RetransmitInterval"] = "00:00:00.150",
            ["MinBft:MaxClientSessions"] = "9",
        }).Build();
        var options = new MinBftOptions();
        options.Bind(configuration);

        var settings = options.ToProtocolSettings(3, 1);
        Assert.Equal(7, settings.Tuning.MaxBatchSize);
        Assert.Equal(TimeSpan.FromMilliseconds(150), settings.Tuning.RetransmitInterval);
        Assert.Equal(new ProtocolTuning().MaxInFlightBatches, settings.Tuning.MaxInFlightBatches); // untouched knobs keep their defaults
        Assert.Equal(9, options.MaxClientSessions);

        var misplaced = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["MinBft:RetransmitInterval"] = "00:00:01" }).Build();
        var error = Assert.Throws<ArgumentException>(() => new MinBftOptions().Bind(misplaced));
        Assert.Contains("MinBft:RetransmitInterval is not a MinBftOptions setting", error.Message, StringComparison.Ordinal);
        var misspelt = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["MinBft:Protocol:MaxBatchSise"] = "3" }).Build();
        Assert.Contains("MinBft:Protocol:MaxBatchSise is not a ProtocolTuning setting", Assert.Throws<ArgumentException>(() => new MinBftOptions().Bind(misspelt)).Message, StringComparison.Ordinal);
        // The silo host's and the SDK's sections share the MinBft root and are left to them.
        var shared = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["MinBft:Host:SiloPort"] = "1", ["MinBft:Client:RequestTimeout"] = "00:00:05" }).Build();
        new MinBftOptions().Bind(shared);
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
