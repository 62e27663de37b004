using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Orleans.Hosting;
using Orleans.Persistence;
using Orleans.Serialization;
using Orleans.Storage;
using StackExchange.Redis;

namespace MinBft.Hosting;

/// <summary>
/// Redis for MinBFT: a fault domain's grain storage in its own Redis server, and Redis
/// clustering (the membership table in Redis, so that silos of separate processes or machines
/// form one cluster without a primary silo).
/// </summary>
public static class MinBftRedisExtensions
{
    /// <summary>
    /// Registers the official Orleans Redis grain storage (Microsoft.Orleans.Persistence.Redis)
    /// as provider <paramref name="name"/>, on the Redis server of <paramref name="connectionString"/>:
    /// see <see cref="ConfigureStorage"/> for the settings MinBFT relies on.
    /// </summary>
    public static ISiloBuilder AddMinBftRedisStorage(
        this ISiloBuilder builder,
        string connectionString,
        string name = SqliteGrainStorageSiloBuilderExtensions.DefaultProviderName)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        var configuration = RedisConnection.Parse(connectionString, $"{MinBftOptions.SectionName}:{nameof(MinBftOptions.RedisStorage)}");
        builder.AddRedisGrainStorage(name, options => options.Configure<Serializer>(
            (storage, serializer) => ConfigureStorage(storage, configuration, serializer)));
        return builder;
    }

    /// <summary>
    /// The Redis storage settings MinBFT relies on, in one place for the silo and the tests:
    /// <list type="bullet">
    /// <item>the Orleans binary serializer (as the SQLite store), not the JSON default: the
    /// stored messages are the generated-serializer types the grains exchange;</item>
    /// <item>a clear keeps the key with a new ETag and no data (a tombstone, as in the SQLite
    /// store), so that a writer holding "no record" (a null ETag) from before the record
    /// existed fails instead of recreating a cleared segment of a sent log;</item>
    /// <item>no expiry.</item>
    /// </list>
    /// Writes and clears are Lua scripts that compare the ETag on the server: a stale ETag
    /// throws <see cref="Orleans.Storage.InconsistentStateException"/>.
    /// </summary>
    public static void ConfigureStorage(RedisStorageOptions options, ConfigurationOptions configuration, Serializer serializer)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(configuration);
        ArgumentNullException.ThrowIfNull(serializer);
        options.ConfigurationOptions = configuration.Clone();
        options.GrainStorageSerializer = new OrleansGrainStorageSerializer(serializer);
        options.DeleteStateOnClear = false;
        options.EntryExpiry = null;
    }

    /// <summary>
    /// Redis clustering for a silo: the membership table lives in the Redis server of
    /// <paramref name="connectionString"/> (keyed by service and cluster id), and every silo and
    /// client of the cluster names the same one.
    /// </summary>
    public static ISiloBuilder UseMinBftRedisClustering(this ISiloBuilder builder, string connectionString, string setting = "--redis-clustering")
    {
        ArgumentNullException.ThrowIfNull(builder);
        var configuration = RedisConnection.Parse(connectionString, setting);
        return builder.UseRedisClustering(options => options.ConfigurationOptions = configuration.Clone());
    }
}
