using Microsoft.Extensions.Configuration;
using MinBft.Hosting;
using MinBft.Protocol;

namespace MinBft.Tests.Hosting;

/// <summary><c>Silo local</c> takes the protocol knobs of <c>MinBft:Protocol</c> from its environment,
/// as the per-domain host takes them from its configuration; a bad knob stops it with a clear error.</summary>
public sealed class LocalClusterKnobsTests
{
    private static IConfiguration Environment(params (string Key, string Value)[] variables) =>
        new ConfigurationBuilder().AddInMemoryCollection(variables.Select(v => new KeyValuePair<string, string?>(v.Key, v.Value))).Build();

    [Fact]
    public void Knobs_set_in_the_environment_reach_every_replica_and_the_rest_keep_their_defaults()
    {
        var configure = MinBft.Silo.Program.LocalMinBftOptions(null,
            Environment(("MinBft:Protocol:MaxBatchWait", "00:00:00.001"), ("MinBft:Protocol:MaxBatchSize", "128")));
        var options = new MinBftOptions();
        Assert.NotNull(configure);
        configure(options);
        Assert.Equal(TimeSpan.FromMilliseconds(1), options.Protocol.MaxBatchWait);
        Assert.Equal(128, options.Protocol.MaxBatchSize);
        Assert.Equal(new ProtocolTuning().MaxInFlightBatches, options.Protocol.MaxInFlightBatches);
    }

    [Fact]
    public void A_misspelt_knob_or_one_out_of_range_is_refused_by_name()
    {
        var misspelt = Assert.Throws<InvalidOperationException>(() =>
            MinBft.Silo.Program.LocalMinBftOptions(null, Environment(("MinBft:Protocol:MaxBatchSise", "128"))));
        Assert.Contains("MaxBatchSise", misspelt.Message, StringComparison.Ordinal);
        var outOfRange = Assert.Throws<ArgumentException>(() =>
            MinBft.Silo.Program.LocalMinBftOptions(null, Environment(("MinBft:Protocol:MaxBatchSize", "0"))));
        Assert.Contains("MaxBatchSize", outOfRange.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Without_knobs_or_other_settings_the_local_cluster_keeps_every_default()
    {
        Assert.Null(MinBft.Silo.Program.LocalMinBftOptions(null, Environment()));
    }
}
