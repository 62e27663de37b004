using System.Collections.Concurrent;
using Microsoft.Extensions.DependencyInjection;
using MinBft.Application;
using MinBft.Hosting;
using MinBft.Testing;
using Orleans;
using Orleans.TestingHost;
using Xunit.Abstractions;

namespace MinBft.Tests.Integration;

/// <summary>
/// The helper users get in MinBft.Orleans.TestingHost: a few lines start a working cluster in
/// Orleans TestingHost, and the SDK talks to it through the cluster client.
/// </summary>
public sealed class TestingHostHelperTests(ITestOutputHelper output)
{
    [Fact]
    public async Task TestClusterBuilder_AddMinBft_ServesPutAndGetThroughTheSdk()
    {
        var builder = new TestClusterBuilder();
        builder.Options.ConfigureFileLogging = false;
        using var deployment = builder.AddMinBft(f: 1);
        await using var cluster = builder.Build();
        await cluster.DeployAsync();
        await cluster.WaitForMinBftAsync();
        output.WriteLine($"{cluster.Silos.Count} silos, keys in {deployment.Directory}");

        // Silo k is fault domain k, with the deployment's manifest.
        Assert.Equal(3, cluster.Silos.Count);
        foreach (var silo in cluster.Silos)
        {
            var minBft = cluster.GetSiloServiceProvider(silo.SiloAddress).GetRequiredService<MinBftSilo>();
            Assert.Equal(deployment.FaultDomainOf(silo.Name), minBft.FaultDomain);
            Assert.Same(deployment.Manifest, minBft.Manifest);
        }
        Assert.Equal([0, 1, 2], cluster.Silos.Select(s => deployment.FaultDomainOf(s.Name)).Order().Cast<int>());

        var value = System.Text.Encoding.UTF8.GetBytes("value-" + Guid.NewGuid().ToString("N"));
        var kv = cluster.GetKeyValueClient();
        await kv.PutAsync("key", value);
        Assert.Equal(value, await kv.GetAsync("key"));
        Assert.Null(await kv.GetAsync("missing"));

        // The result comes with the f+1 matching replies of distinct replicas that prove it.
        var verified = await cluster.GetMinBftClient().ExecuteVerifiedAsync(KeyValueOperation.EncodeGet("key"));
        Assert.True(verified.Replies.Count >= deployment.Manifest.ReplyQuorum, $"{verified.Replies.Count} replies");
        Assert.Equal(verified.Replies.Count, verified.Replies.Select(r => r.ReplicaId).Distinct().Count());
        Assert.All(verified.Replies, r => Assert.Equal(verified.Result, r.Result));
        Assert.True(KeyValueResult.TryDecode(verified.Result, out var result));
        Assert.Equal(KeyValueResult.OkWithValue(value), result);

        await WaitForAgreementAsync(cluster.Client, deployment.N, atLeast: 1);
    }

    [Fact]
    public async Task InProcessTestClusterBuilder_AddMinBft_UsesTheGivenStateMachineAndGatewaySilo()
    {
        var created = new ConcurrentBag<int>();
        var builder = new InProcessTestClusterBuilder();
        using var deployment = builder.AddMinBft(options =>
        {
            options.F = 1;
            options.GatewaySilos = 1;
            options.StateMachine = replicaId =>
            {
                created.Add(replicaId);
                return new KeyValueStateMachine();
            };
        });
        await using var cluster = builder.Build();
        await cluster.DeployAsync();
        await cluster.WaitForMinBftAsync();

        Assert.Equal(4, cluster.Silos.Count);
        foreach (var silo in cluster.Silos)
            Assert.Equal(deployment.FaultDomainOf(silo.Name), silo.ServiceProvider.GetRequiredService<MinBftSilo>().FaultDomain);
        Assert.Single(cluster.Silos, s => deployment.FaultDomainOf(s.Name) is null);

        var kv = cluster.GetKeyValueClient();
        await kv.PutAsync("k", [1, 2, 3]);
        Assert.Equal(new byte[] { 1, 2, 3 }, await kv.GetAsync("k"));
        await WaitForAgreementAsync(cluster.Client, deployment.N, atLeast: 1);
        // Every replica got its state machine from the delegate.
        Assert.Equal([0, 1, 2], created.Distinct().Order());
    }

    /// <summary>Until all n replicas have executed the same batches (at least <paramref name="atLeast"/>) to the same state.</summary>
    private async Task WaitForAgreementAsync(IClusterClient client, int n, ulong atLeast)
    {
        ReplicaStatus[] last = [];
        await MinBftTestCluster.UntilAsync(async () =>
        {
            last = await Task.WhenAll(Enumerable.Range(0, n).Select(i => client.GetGrain<IReplicaGrain>(i).GetStatus().WaitAsync(TimeSpan.FromSeconds(5))));
            return last.All(s => s.Halted is null && s.ExecutedSequence >= atLeast
                && s.ExecutedSequence == last[0].ExecutedSequence
                && s.HistoryDigest == last[0].HistoryDigest
                && s.StateDigest == last[0].StateDigest);
        }, "replicas agree");
        foreach (var status in last) output.WriteLine(MinBftTestCluster.Describe(status));
    }
}
