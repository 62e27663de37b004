using Microsoft.Extensions.DependencyInjection;
using MinBft.Application;
using MinBft.Client;
using Xunit.Abstractions;

namespace MinBft.Tests.Integration;

/// <summary>
/// The batched path between the SDK and its client proxy on a real cluster: many requests per
/// Submit call and per observer call, an observer that is gone, and a proxy whose silo stops
/// with requests in flight.
/// </summary>
public sealed class ClientProxyBatchingTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Concurrent_requests_of_one_client_travel_in_few_proxy_calls_and_all_complete_verified()
    {
        await using var cluster = await MinBftTestCluster.StartAsync(new ClusterSetup { F = 1, Sqlite = false }, output);
        const int Clients = 64, Rounds = 4;
        using var client = new MinBftClient(cluster.Grains, cluster.Manifest, new MinBftClientOptions { IdentityPoolSize = Clients });
        // A first round opens every identity's MAC sessions (a call each, at scattered times).
        await Task.WhenAll(Enumerable.Range(0, Clients).Select(c => client.ExecuteAsync(KeyValueOperation.EncodePut("batched-" + c, [0]))));
        var proxy = cluster.Proxy(client.ProxyKey);
        var before = await proxy.GetStatus();

        var results = await Task.WhenAll(Enumerable.Range(0, Clients).Select(async c =>
        {
            var verified = new List<VerifiedResult>();
            for (var round = 1; round <= Rounds; round++)
            {
                var put = await client.ExecuteVerifiedAsync(KeyValueOperation.EncodePut("batched-" + c, [(byte)round]));
                Assert.Equal(KeyValueResult.Ok.Encode(), put.Result);
                verified.Add(put);
            }
            return verified;
        }));

        var after = await proxy.GetStatus();
        var requests = after.Completed - before.Completed;
        var submits = after.Submits - before.Submits;
        var notifications = after.Notifications - before.Notifications;
        output.WriteLine($"{requests} requests in {submits} Submit calls and {notifications} observer calls");
        Assert.Equal(Clients * Rounds, requests);
        Assert.All(results.SelectMany(r => r), r => Assert.True(r.Replies.Count >= cluster.Manifest.ReplyQuorum));
        // Closed loops of 64: each call carries several requests or outcomes on average (one
        // per request before batching). On the 2-core machine at load 25, 256 requests took 19
        // Submit calls and 6 observer calls; the bounds leave room for a worse day.
        Assert.InRange(submits, 1, requests / 2);
        Assert.InRange(notifications, 1, requests / 4);
        // The proxy's count is the calls it served (the test cluster's call filter counts them too).
        Assert.Equal(after.Submits, cluster.ProxyCalls.Count(p => p.ClientId == client.ProxyKey && p.Method == nameof(IClientProxyGrain.Submit)));
        Assert.Equal(0, after.InFlight);
    }

    [Fact]
    public async Task An_observer_that_is_gone_does_not_break_the_proxy()
    {
        await using var cluster = await MinBftTestCluster.StartAsync(new ClusterSetup { F = 1, Sqlite = false }, output);
        var signer = new TestClient(cluster, "observer-gone");
        var proxy = cluster.Proxy("proxy-of-a-gone-client");
        var gone = new ProxyCaller(cluster.Grains);
        gone.Dispose();

        // Its client is gone: the proxy still completes the request, its report goes nowhere.
        var orphan = signer.NextRequest(KeyValueOperation.EncodePut("orphan", [1]));
        await proxy.Submit([orphan], TimeSpan.FromSeconds(30), gone.Reference).WaitAsync(TimeSpan.FromSeconds(60));
        var status = await proxy.GetStatus();
        Assert.Equal(1, status.Completed);
        Assert.Equal(0, status.InFlight);
        Assert.True(status.Notifications >= 1);

        // The same proxy serves a live observer next.
        using var live = new ProxyCaller(cluster.Grains);
        var read = signer.NextRequest(KeyValueOperation.EncodeGet("orphan"));
        var replies = await live.ExecuteAsync(proxy, read, TimeSpan.FromSeconds(30)).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(KeyValueResult.OkWithValue([1]), signer.CheckReplies(read, replies));
        Assert.Empty(gone.Received);
        Assert.Equal(2, (await proxy.GetStatus()).Completed);
    }

    [Fact]
    public async Task Requests_in_flight_when_the_proxys_silo_stops_are_retried_and_complete()
    {
        // The proxy lives on a gateway silo without a fault domain: stopping it costs no replica.
        // Per-domain SQLite, not memory storage: Orleans' memory storage keeps state in storage
        // grains that may live on the gateway silo, and stopping it lost replicas' stored state
        // (a fresh-clone CI run stalled at batch 10, every durable write refused).
        await using var cluster = await MinBftTestCluster.StartAsync(new ClusterSetup { F = 1, GatewaySilos = 1 }, output);
        using var client = new MinBftClient(cluster.Grains, cluster.Manifest, new MinBftClientOptions
        {
            IdentityPoolSize = 8,
            AttemptTimeout = TimeSpan.FromSeconds(30),
            RequestTimeout = TimeSpan.FromSeconds(60),
        });
        var gateway = cluster.SiloOf(cluster.N);
        // Placed where its first call comes from (PreferLocalPlacement): the gateway silo.
        await gateway.ServiceProvider.GetRequiredService<IGrainFactory>().GetGrain<IClientProxyGrain>(client.ProxyKey).GetStatus();

        using var stop = new CancellationTokenSource();
        var completed = 0;
        var watch = new System.Diagnostics.Stopwatch();
        // When each loop's last request completed, measured from the stop.
        var ended = new TimeSpan[8];
        var loops = Enumerable.Range(0, 8).Select(async c =>
        {
            var round = 0;
            while (!stop.IsCancellationRequested)
            {
                round++;
                var put = await client.ExecuteAsync(KeyValueOperation.EncodePut("moving-" + c, [(byte)round]));
                Assert.Equal(KeyValueResult.Ok.Encode(), put);
                Interlocked.Increment(ref completed);
            }
            ended[c] = watch.Elapsed;
        }).ToArray();
        await MinBftTestCluster.UntilAsync(() => Task.FromResult(Volatile.Read(ref completed) >= 40), "requests through the gateway's proxy");
        Assert.Contains(cluster.ProxyCalls, p => p.ClientId == client.ProxyKey && p.Domain is null && p.Method == nameof(IClientProxyGrain.Submit));

        // Requests are in flight (closed loops): the silo stops under them. Each is retried, the
        // proxy comes back elsewhere, and the loops go on; well within the attempt timeout when
        // the stopping proxy reports its requests as failed (not the 30 s a lost answer would cost).
        var atStop = Volatile.Read(ref completed);
        watch.Start();
        await cluster.Cluster.StopSiloAsync(gateway);
        await MinBftTestCluster.UntilAsync(() => Task.FromResult(Volatile.Read(ref completed) >= atStop + 40), "requests after the proxy's silo stopped");
        output.WriteLine($"40 more requests {watch.Elapsed.TotalSeconds:F1} s after the stop began");
        await stop.CancelAsync();
        await Task.WhenAll(loops).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Contains(cluster.ProxyCalls, p => p.ClientId == client.ProxyKey && p.Domain is not null && p.Method == nameof(IClientProxyGrain.Submit));
        // A proxy that did not report would leave every request it held (up to one per loop) to its
        // 30 s attempt timeout. One loop may still wait that long: seen once in a fresh-clone CI
        // run (one loop at 31.3 s, the others at once), with memory storage on the stopping silo;
        // an answer lost with that silo is one possible cause, not established.
        var slow = ended.Count(t => t >= TimeSpan.FromSeconds(30));
        output.WriteLine("loops ended after the stop at: " + string.Join(", ", ended.Select(t => $"{t.TotalSeconds:F1} s")));
        Assert.True(slow <= 1, $"{slow} of 8 loops waited for an attempt timeout: " + string.Join(", ", ended.Select(t => $"{t.TotalSeconds:F1} s")));
    }
}
