using MinBft.Application;
using MinBft.Encoding;
using MinBft.Messages;
using Xunit.Abstractions;

namespace MinBft.Tests.Integration;

/// <summary>
/// Requests near the operation size limit, many at once through one client proxy: they all
/// execute, and no SubmitBatch call a replica receives is over MessageLimits.MaxDeliveryBytes
/// (a replica refuses such a call; the cut itself is tested in DeliveryRunsTests).
/// </summary>
public sealed class LargeRequestTests(ITestOutputHelper output)
{
    [Fact]
    public Task Large_requests_through_one_proxy_all_execute_in_calls_within_the_delivery_bound() => RunAsync(clients: 16);

    /// <summary>
    /// 6 MB at once, more than one SubmitBatch may carry. On a loaded machine this used to stall
    /// the cluster for minutes: backups forwarded every request to the primary each retransmit
    /// interval and the proxy resent at a fixed interval, faster than a starved primary took them
    /// in. Both now back off (README, "Retransmission backs off").
    /// </summary>
    [Fact]
    public Task A_burst_larger_than_one_delivery_call_is_split_and_all_of_it_executes() => RunAsync(clients: 100, overOneCall: true);

    private async Task RunAsync(int clients, bool overOneCall = false)
    {
        await using var cluster = await MinBftTestCluster.StartAsync(new ClusterSetup { F = 1 }, output);
        var proxy = cluster.Proxy("shared-proxy");
        using var caller = new ProxyCaller(cluster.Grains);
        var senders = Enumerable.Range(0, clients).Select(i => new TestClient(cluster, "large-" + i)).ToArray();
        var value = new byte[60_000];
        var requests = senders.Select(c => c.NextRequest(KeyValueOperation.EncodePut("key-" + c.Name, value))).ToArray();
        var total = requests.Sum(MessageLimits.RequestBytes);
        if (overOneCall) Assert.True(total > MessageLimits.MaxDeliveryBytes, "the workload is larger than one delivery call may carry");

        var replies = await Task.WhenAll(requests.Select(ExecuteAsync));

        for (var i = 0; i < senders.Length; i++)
            Assert.Equal(KeyValueResult.Ok, senders[i].CheckReplies(requests[i], replies[i]));
        var batches = cluster.SubmitBatches.ToArray();
        output.WriteLine($"{batches.Length} SubmitBatch calls, largest {batches.Select(b => b.Bytes).DefaultIfEmpty().Max()} bytes; {total} bytes of requests");
        Assert.All(batches, b => Assert.True(b.Bytes <= MessageLimits.MaxDeliveryBytes, $"{b.Bytes} bytes in one call to replica {b.Replica}"));
        var statuses = await cluster.WaitForAgreementAsync(Enumerable.Range(0, cluster.N).ToArray());
        Assert.All(statuses, s => Assert.Equal(0, s.Rejections.GetValueOrDefault("MalformedSubmitBatch")));

        // What the SDK does: the same request again after a timeout (replicas execute it once).
        // 6 MB of requests take seconds to order on a loaded machine.
        async Task<Reply[]> ExecuteAsync(Request request)
        {
            var deadline = DateTime.UtcNow + MinBftTestCluster.MaxWait;
            while (true)
            {
                try
                {
                    return await caller.ExecuteAsync(proxy, request, MinBftTestCluster.RequestTimeout);
                }
                catch (TimeoutException) when (DateTime.UtcNow < deadline)
                {
                    cluster.Log($"request {request.ClientId[..8]}:{request.Seq} timed out; sending it again");
                }
            }
        }
    }
}
