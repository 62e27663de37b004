using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using MinBft.Hosting;
using MinBft.Hosting.Journal;
using Orleans.Hosting;
using Orleans.Persistence;
using Orleans.Storage;

namespace MinBft.Tests.Hosting;

/// <summary>Which journal a silo gets: the one of the store its fault domain's grain storage uses.</summary>
public sealed class JournalRegistrationTests : IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "minbft-journal-registration-" + Guid.NewGuid().ToString("N"));
    private readonly ClusterManifest _manifest;

    public JournalRegistrationTests() => _manifest = DeploymentKeys.Generate(1, _directory);

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")] // the file journal needs flock; elsewhere the domain gets the SQLite journal
    public void A_sqlite_domain_gets_journal_files_in_a_directory_next_to_its_grain_storage_file()
    {
        var data = Path.Combine(_directory, "data");
        using var host = Build(o => o.DataDirectory = data);

        var factory = Assert.IsType<FileReplicaJournalFactory>(host.Services.GetRequiredService<IReplicaJournalFactory>());
        Assert.Equal(Path.Combine(Path.GetFullPath(data), "minbft-domain-1-journal"), factory.Directory);
        // An earlier build's SQLite journal file, moved from where it exists.
        Assert.Equal(Path.Combine(Path.GetFullPath(data), "minbft-domain-1-journal.db"), factory.LegacyDatabasePath);
        var storage = Assert.IsType<SqliteGrainStorage>(host.Services.GetRequiredKeyedService<IGrainStorage>(SqliteGrainStorageSiloBuilderExtensions.DefaultProviderName));
        Assert.Equal(Path.Combine(Path.GetFullPath(data), "minbft-domain-1.db"), storage.DatabasePath);
        // Checkpoints keep the service state in files beside the journals.
        Assert.Equal(Path.Combine(Path.GetFullPath(data), "minbft-domain-1-checkpoints"), host.Services.GetRequiredService<CheckpointSnapshotFiles>().Directory);
    }

    [Fact]
    public void A_redis_domain_gets_journal_records_in_a_redis_provider_that_deletes_on_clear()
    {
        using var host = Build(o =>
        {
            o.Storage = MinBftStorageKind.Redis;
            o.RedisStorage = "127.0.0.1:1";
        });

        Assert.IsType<GrainStorageReplicaJournalFactory>(host.Services.GetRequiredService<IReplicaJournalFactory>());
        Assert.Null(host.Services.GetService<CheckpointSnapshotFiles>()); // checkpoints whole in Redis
        var journalStorage = host.Services.GetRequiredKeyedService<IGrainStorage>(JournalSiloBuilderExtensions.RedisJournalStorageName);
        Assert.Equal("RedisGrainStorage", journalStorage.GetType().Name);
        var options = host.Services.GetRequiredService<IOptionsMonitor<RedisStorageOptions>>();
        Assert.True(options.Get(JournalSiloBuilderExtensions.RedisJournalStorageName).DeleteStateOnClear);
        // The USIG's provider keeps its tombstones.
        Assert.False(options.Get(SqliteGrainStorageSiloBuilderExtensions.DefaultProviderName).DeleteStateOnClear);
    }

    [Fact]
    public void A_host_that_registers_grain_storage_minbft_itself_gets_the_journal_in_it()
    {
        using var host = Build(o => o.UseEmbeddedStorage = false);

        Assert.IsType<GrainStorageReplicaJournalFactory>(host.Services.GetRequiredService<IReplicaJournalFactory>());
    }

    [Fact]
    public void A_gateway_silo_has_no_journal()
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.UseOrleans(silo =>
        {
            silo.UseLocalhostClustering();
            silo.AddMinBftGateway(_manifest);
        });
        using var host = builder.Build();

        Assert.Null(host.Services.GetService<IReplicaJournalFactory>());
    }

    private IHost Build(Action<MinBftOptions> configure)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.UseOrleans(silo =>
        {
            silo.UseLocalhostClustering();
            silo.AddMinBft(o =>
            {
                o.FaultDomain = 1;
                o.Manifest = _manifest;
                o.KeyDirectory = DeploymentKeys.DomainDirectory(_directory, 1);
                configure(o);
            });
        });
        return builder.Build();
    }
}
