using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using MinBft.Client;
using Orleans;
using Orleans.TestingHost;

namespace MinBft.Testing;

/// <summary>The MinBFT client of a test cluster deployed with <c>AddMinBft</c>.</summary>
public static class MinBftTestClusterExtensions
{
    /// <summary>The cluster client's <see cref="MinBftClient"/> (f+1 matching, verified replies per result).</summary>
    public static MinBftClient GetMinBftClient(this IClusterClient client)
    {
        ArgumentNullException.ThrowIfNull(client);
        return client.ServiceProvider.GetRequiredService<MinBftClient>();
    }

    /// <summary>The cluster client's <see cref="KeyValueClient"/> (the default key-value state machine).</summary>
    public static KeyValueClient GetKeyValueClient(this IClusterClient client)
    {
        ArgumentNullException.ThrowIfNull(client);
        return client.ServiceProvider.GetRequiredService<KeyValueClient>();
    }

    public static MinBftClient GetMinBftClient(this TestCluster cluster) => Client(cluster).GetMinBftClient();

    public static KeyValueClient GetKeyValueClient(this TestCluster cluster) => Client(cluster).GetKeyValueClient();

    public static MinBftClient GetMinBftClient(this InProcessTestCluster cluster) => Client(cluster).GetMinBftClient();

    public static KeyValueClient GetKeyValueClient(this InProcessTestCluster cluster) => Client(cluster).GetKeyValueClient();

    /// <summary>
    /// Waits until every replica answers a status call. Right after DeployAsync a silo's fault
    /// domain may not have reached the others yet, and a replica cannot be placed until it has.
    /// </summary>
    public static async Task WaitForMinBftAsync(this IClusterClient client, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(client);
        var limit = timeout ?? TimeSpan.FromSeconds(60);
        var clock = Stopwatch.StartNew();
        var n = client.GetMinBftClient().N;
        for (var i = 0; i < n; i++)
        {
            while (true)
            {
                try
                {
                    await client.GetGrain<IReplicaGrain>(i).GetStatus().WaitAsync(TimeSpan.FromSeconds(5), cancellationToken).ConfigureAwait(false);
                    break;
                }
                catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
                {
                    if (clock.Elapsed > limit)
                        throw new TimeoutException($"MinBFT replica {i} did not answer within {limit}", e);
                    await Task.Delay(50, cancellationToken).ConfigureAwait(false);
                }
            }
        }
    }

    public static Task WaitForMinBftAsync(this TestCluster cluster, TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        Client(cluster).WaitForMinBftAsync(timeout, cancellationToken);

    public static Task WaitForMinBftAsync(this InProcessTestCluster cluster, TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        Client(cluster).WaitForMinBftAsync(timeout, cancellationToken);

    private static IClusterClient Client(TestCluster cluster)
    {
        ArgumentNullException.ThrowIfNull(cluster);
        return cluster.Client;
    }

    private static IClusterClient Client(InProcessTestCluster cluster)
    {
        ArgumentNullException.ThrowIfNull(cluster);
        return cluster.Client;
    }
}
