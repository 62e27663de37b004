using MinBft.Application;
using Xunit.Abstractions;

namespace MinBft.Tests.Integration;

/// <summary>
/// A client proxy resends a request that gets no quorum at doubling intervals (from
/// ClientRetransmitInterval up to ClientRetransmitMaxInterval), not at a fixed one: a cluster
/// slowed by load gets fewer copies of what it is still ordering. At a fixed interval, 100
/// requests of 60 KB were resent faster than loaded replicas could take them in.
/// </summary>
public sealed class ClientProxyRetransmissionTests(ITestOutputHelper output)
{
    [Fact]
    public async Task A_request_without_a_quorum_is_resent_at_doubling_intervals()
    {
        await using var cluster = await MinBftTestCluster.StartAsync(new ClusterSetup { F = 1 }, output);
        var client = new TestClient(cluster, "resent");
        Assert.Equal(KeyValueResult.Ok, await client.ExecuteAsync(KeyValueOperation.EncodePut("k", [1])));
        Assert.Equal(KeyValueResult.Ok, await client.ExecuteAsync(KeyValueOperation.EncodePut("k", [2])));

        // Seq 1 again, with another operation: every replica refuses it as stale and none replies,
        // so the proxy resends it until its timeout.
        var stale = client.Signer.CreateRequest(1, KeyValueOperation.EncodePut("k", [3]));
        var proxy = cluster.Proxy(client.ClientId);
        var timeout = TimeSpan.FromSeconds(6);
        var before = cluster.Submissions.Count;
        using var caller = new ProxyCaller(cluster.Grains);
        var outcome = await caller.SubmitAsync(proxy, stale, timeout);
        Assert.True(outcome.TimedOut, $"the stale request got an outcome other than its timeout: {outcome.Failure}");

        // Interval 500 ms, at most 2 s (the test cluster's): resends after 0.5, 1.5, 3.5 and 5.5 s,
        // and none at the deadline. A fixed interval would have sent 11 copies to each backup.
        for (var backup = 1; backup < cluster.N; backup++)
        {
            var copies = cluster.Submissions.Skip(before).Count(s => s.Replica == backup && s.ClientId == client.ClientId && s.Seq == 1);
            output.WriteLine($"replica {backup}: {copies} copies of the stale request in {timeout}");
            Assert.InRange(copies, 1, 4);
        }
    }
}
