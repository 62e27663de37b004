using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans;
using Orleans.Hosting;
using Orleans.Persistence;
using Orleans.Runtime;
using Orleans.Serialization;
using Orleans.Storage;
using StackExchange.Redis;

namespace MinBft.Hosting.Journal;

/// <summary>
/// Registers this fault domain's <see cref="IReplicaJournalFactory"/> (one per silo; the last
/// registration wins). <c>AddMinBft</c> calls one of these according to <see cref="MinBftOptions.Storage"/>.
/// </summary>
public static class JournalSiloBuilderExtensions
{
    /// <summary>The Redis grain storage provider that holds journal records (it deletes on clear; "minbft" keeps tombstones).</summary>
    public const string RedisJournalStorageName = "minbft-journal";

    /// <summary>
    /// Journals in this fault domain's own SQLite journal file (<see cref="SqliteReplicaJournal"/>),
    /// <see cref="SqliteReplicaJournalOptions.GetDatabasePath"/>. The fault domain comes from
    /// <c>AddMinBftFaultDomain</c> unless the options set one.
    /// </summary>
    public static ISiloBuilder AddMinBftSqliteJournal(this ISiloBuilder builder, Action<SqliteReplicaJournalOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var services = builder.Services;
        var options = services.AddOptions<SqliteReplicaJournalOptions>();
        if (configure is not null) options.Configure(configure);
        options.PostConfigure<IOptions<FaultDomainOptions>>((journal, faultDomain) =>
        {
            if (journal.FaultDomain is null && faultDomain.Value.FaultDomain != FaultDomainOptions.Unset)
                journal.FaultDomain = faultDomain.Value.FaultDomain;
        });
        services.AddSingleton(sp => new SqliteReplicaJournalFactory(
            sp.GetRequiredService<IOptions<SqliteReplicaJournalOptions>>().Value,
            sp.GetRequiredService<Serializer>(),
            sp.GetRequiredService<ILoggerFactory>()));
        services.AddSingleton<IReplicaJournalFactory>(sp => sp.GetRequiredService<SqliteReplicaJournalFactory>());
        // The silo subscribes every (unkeyed) lifecycle participant; this one checks the file at start.
        services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>>(sp => sp.GetRequiredService<SqliteReplicaJournalFactory>());
        return builder;
    }

    /// <summary>Journals as files of this fault domain's own (<see cref="FileReplicaJournal"/>).</summary>
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public static ISiloBuilder AddMinBftFileJournal(this ISiloBuilder builder, Action<FileReplicaJournalOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var options = builder.Services.AddOptions<FileReplicaJournalOptions>();
        if (configure is not null) options.Configure(configure);
        options.PostConfigure<IOptions<FaultDomainOptions>>((journal, faultDomain) =>
        {
            if (journal.FaultDomain is null && faultDomain.Value.FaultDomain != FaultDomainOptions.Unset)
                journal.FaultDomain = faultDomain.Value.FaultDomain;
        });
        builder.Services.AddSingleton<IReplicaJournalFactory>(sp => new FileReplicaJournalFactory(
            sp.GetRequiredService<IOptions<FileReplicaJournalOptions>>().Value,
            sp.GetRequiredService<Serializer>(),
            sp.GetRequiredService<ILoggerFactory>()));
        // The checkpoints' service state goes beside the journals (see CheckpointSnapshotFiles).
        builder.Services.AddSingleton(sp =>
        {
            var journal = sp.GetRequiredService<IOptions<FileReplicaJournalOptions>>().Value;
            if (journal.FaultDomain is not { } faultDomain || faultDomain < 0)
                throw new OrleansConfigurationException("The checkpoint snapshot files have no fault domain: call AddMinBftFaultDomain on the silo or set FileReplicaJournalOptions.FaultDomain.");
            return new CheckpointSnapshotFiles(journal.GetCheckpointDirectory(faultDomain), sp.GetRequiredService<ILogger<CheckpointSnapshotFiles>>());
        });
        return builder;
    }

    /// <summary>
    /// Journals in the grain storage provider named <paramref name="storageName"/>
    /// (<see cref="GrainStorageReplicaJournal"/>), resolved when the first journal is created.
    /// </summary>
    public static ISiloBuilder AddMinBftGrainStorageJournal(this ISiloBuilder builder, string storageName = SqliteGrainStorageSiloBuilderExtensions.DefaultProviderName)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentException.ThrowIfNullOrWhiteSpace(storageName);
        builder.Services.AddSingleton<IReplicaJournalFactory>(sp => new GrainStorageReplicaJournalFactory(
            () => sp.GetRequiredKeyedService<IGrainStorage>(storageName),
            sp.GetRequiredService<ILoggerFactory>()));
        return builder;
    }

    /// <summary>
    /// Journals on the fault domain's Redis server: a second Orleans Redis grain storage,
    /// <see cref="RedisJournalStorageName"/>, configured by <see cref="ConfigureJournalStorage"/>.
    /// </summary>
    public static ISiloBuilder AddMinBftRedisJournal(this ISiloBuilder builder, string connectionString)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var configuration = RedisConnection.Parse(connectionString, $"{MinBftOptions.SectionName}:{nameof(MinBftOptions.RedisStorage)}");
        builder.AddRedisGrainStorage(RedisJournalStorageName, options => options.Configure<Serializer>(
            (storage, serializer) => ConfigureJournalStorage(storage, configuration, serializer)));
        return builder.AddMinBftGrainStorageJournal(RedisJournalStorageName);
    }

    /// <summary>
    /// MinBFT's Redis storage settings (<see cref="MinBftRedisExtensions.ConfigureStorage"/>),
    /// except that a clear deletes the key: journal records are deleted once trimmed, and
    /// tombstones would leave one key per append behind. The journal's fencing does not rely on
    /// tombstones (see <see cref="GrainStorageReplicaJournal"/>).
    /// </summary>
    public static void ConfigureJournalStorage(RedisStorageOptions options, ConfigurationOptions configuration, Serializer serializer)
    {
        MinBftRedisExtensions.ConfigureStorage(options, configuration, serializer);
        options.DeleteStateOnClear = true;
    }
}
