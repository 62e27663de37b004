using Microsoft.Extensions.Hosting;
using MinBft.Hosting;
using Orleans.Hosting;

namespace MinBft.Client;

/// <summary>Redis clustering for a client (the silo side is <c>MinBftRedisExtensions</c> in the server).</summary>
public static class MinBftClientRedisExtensions
{
    /// <summary>Redis clustering for a client: it finds the cluster's gateways in the membership table.</summary>
    public static IClientBuilder UseMinBftRedisClustering(this IClientBuilder builder, string connectionString, string setting = "--redis-clustering")
    {
        ArgumentNullException.ThrowIfNull(builder);
        var configuration = RedisConnection.Parse(connectionString, setting);
        return builder.UseRedisClustering(options => options.ConfigurationOptions = configuration.Clone());
    }
}
