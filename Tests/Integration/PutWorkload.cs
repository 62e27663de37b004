using System.Collections.Concurrent;
using System.Diagnostics;
using MinBft.Application;
using Orleans.Runtime;

namespace MinBft.Tests.Integration;

/// <summary>
/// Clients that each put fresh keys one after another until stopped, and remember every put
/// they saw acknowledged (by f+1 matching, validly signed replies).
/// </summary>
internal sealed class PutWorkload(MinBftTestCluster cluster, int clients, string prefix)
{
    private readonly ConcurrentDictionary<string, byte[]> _acknowledged = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _lock = new();
    private Task[] _running = [];
    // The slowest request so far, logged: it shows how long clients waited across a view change.
    private (TimeSpan Took, string What) _slowest;

    public int Acknowledged => _acknowledged.Count;

    public void Start() =>
        _running = Enumerable.Range(0, clients).Select(c => Task.Run(() => RunAsync(new TestClient(cluster, $"{prefix}{c}")))).ToArray();

    private async Task RunAsync(TestClient client)
    {
        for (var i = 0; !_stop.IsCancellationRequested; i++)
        {
            var key = $"{client.Name}-{i}";
            var value = System.Text.Encoding.UTF8.GetBytes($"{client.Name}-value-{i}");
            // ExecuteAsync retries the same request (exactly once) until it is acknowledged,
            // or throws after the client's deadline: then the test fails.
            Assert.Equal(KeyValueResult.Ok, await TimedAsync(client, KeyValueOperation.EncodePut(key, value), $"put {key}"));
            _acknowledged[key] = value;
        }
    }

    /// <summary>Until <paramref name="more"/> further puts are acknowledged; a failed client fails the wait at once.</summary>
    public async Task WaitForMoreAsync(int more, string what)
    {
        var target = Acknowledged + more;
        try
        {
            // Progress is an acknowledged put: a stalled cluster fails the wait after 30 s
            // without one, a cluster slowed down by a loaded machine is given longer.
            await MinBftTestCluster.UntilAsync(() => Task.FromResult(Acknowledged >= target || _running.Any(t => t.IsFaulted)), () => Acknowledged, what);
            // A client that gave up fails the wait at once, with its own exception.
            if (_running.FirstOrDefault(t => t.IsFaulted) is { } failed) await failed;
        }
        catch (TimeoutException)
        {
            // What the replicas that still answer were doing: the first thing needed to tell
            // a slow machine from a stuck protocol.
            foreach (var i in Enumerable.Range(0, cluster.N))
            {
                try
                {
                    cluster.Log(MinBftTestCluster.Describe(await cluster.Replica(i).GetStatus().WaitAsync(TimeSpan.FromSeconds(2))));
                }
                catch (Exception e) when (e is TimeoutException or OrleansException)
                {
                    cluster.Log($"r{i}: {e.GetType().Name}");
                }
            }
            throw;
        }
        cluster.Log($"{what}: {Acknowledged} puts acknowledged");
    }

    /// <summary>Stops the clients after their current request (which must still complete).</summary>
    public async Task StopAsync()
    {
        await _stop.CancelAsync();
        await Task.WhenAll(_running);
        cluster.Log($"load stopped: {Acknowledged} puts acknowledged; slowest: {TakeSlowest()}");
    }

    /// <summary>Reads every acknowledged put back, through the replicas (ordered gets).</summary>
    public async Task VerifyAcknowledgedAsync()
    {
        var writes = _acknowledged.OrderBy(p => p.Key, StringComparer.Ordinal).ToArray();
        const int readers = 8;
        await Task.WhenAll(Enumerable.Range(0, readers).Select(r => Task.Run(async () =>
        {
            var reader = new TestClient(cluster, $"{prefix}-reader{r}");
            for (var k = r; k < writes.Length; k += readers)
            {
                var (key, value) = writes[k];
                Assert.Equal(KeyValueResult.OkWithValue(value), await TimedAsync(reader, KeyValueOperation.EncodeGet(key), $"get {key}"));
            }
        })));
        cluster.Log($"all {writes.Length} acknowledged puts read back; slowest: {TakeSlowest()}");
    }

    private async Task<KeyValueResult> TimedAsync(TestClient client, byte[] operation, string what)
    {
        var clock = Stopwatch.StartNew();
        var result = await client.ExecuteAsync(operation);
        lock (_lock)
        {
            if (clock.Elapsed > _slowest.Took) _slowest = (clock.Elapsed, $"{what} by {client.Name}");
        }
        return result;
    }

    private string TakeSlowest()
    {
        lock (_lock)
        {
            var slowest = _slowest;
            _slowest = default;
            return $"{slowest.What} in {slowest.Took.TotalMilliseconds:F0} ms";
        }
    }
}
