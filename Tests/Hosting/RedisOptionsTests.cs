using System.Net;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using MinBft.Client;
using MinBft.Client.Cli;
using MinBft.Hosting;
using MinBft.Silo;
using Program = MinBft.Silo.Program;
using Orleans.Hosting;
using Orleans.Messaging;

namespace MinBft.Tests.Hosting;

/// <summary>Choosing Redis storage and clustering: options, flags, configuration, and the errors for what cannot work.</summary>
public sealed class RedisOptionsTests
{
    private static MinBftOptions Domain(Action<MinBftOptions> configure)
    {
        var options = new MinBftOptions { FaultDomain = 0, ManifestPath = "m.json" };
        configure(options);
        return options;
    }

    [Fact]
    public void Redis_storage_is_opt_in_sqlite_stays_the_default()
    {
        var options = new MinBftOptions();
        Assert.Equal(MinBftStorageKind.Sqlite, options.Storage);
        Assert.Null(options.RedisStorage);
    }

    [Fact]
    public void Redis_storage_binds_from_configuration_case_insensitively()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["MinBft:Storage"] = "redis",
            ["MinBft:RedisStorage"] = "127.0.0.1:6380,password=secret",
        }).Build();
        var options = new MinBftOptions { FaultDomain = 1, ManifestPath = "m.json" };
        configuration.GetSection(MinBftOptions.SectionName).Bind(options);

        Assert.Equal(MinBftStorageKind.Redis, options.Storage);
        Assert.Equal("127.0.0.1:6380,password=secret", options.RedisStorage);
        options.Validate();
    }

    [Fact]
    public void Redis_storage_without_a_connection_string_is_refused_with_the_setting_named()
    {
        var error = Assert.Throws<ArgumentException>(() => Domain(o => o.Storage = MinBftStorageKind.Redis).Validate());
        Assert.Contains("MinBft:RedisStorage is not set", error.Message, StringComparison.Ordinal);
        Assert.Contains("fault domain 0's own Redis", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_redis_connection_string_with_sqlite_storage_is_refused_rather_than_ignored()
    {
        var error = Assert.Throws<ArgumentException>(() => Domain(o => o.RedisStorage = "127.0.0.1:6380").Validate());
        Assert.Contains("MinBft:Storage=Redis", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Redis_storage_and_a_host_registered_provider_exclude_each_other()
    {
        var error = Assert.Throws<ArgumentException>(() => Domain(o =>
        {
            o.Storage = MinBftStorageKind.Redis;
            o.RedisStorage = "127.0.0.1:6380";
            o.UseEmbeddedStorage = false;
        }).Validate());
        Assert.Contains("UseEmbeddedStorage=false", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_invalid_redis_connection_string_is_refused_without_repeating_it()
    {
        var error = Assert.Throws<ArgumentException>(() => Domain(o =>
        {
            o.Storage = MinBftStorageKind.Redis;
            o.RedisStorage = "127.0.0.1:6380,password=hunter2,nonsense=1";
        }).Validate());
        Assert.Contains("MinBft:RedisStorage is not a valid Redis connection string", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("hunter2", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_gateway_silo_opens_no_store_so_a_shared_redis_setting_does_not_matter_there()
    {
        new MinBftOptions { ManifestPath = "m.json", Storage = MinBftStorageKind.Redis }.Validate();
    }

    [Fact]
    public void Redis_storage_registers_the_orleans_redis_provider_as_minbft()
    {
        var directory = Path.Combine(Path.GetTempPath(), "minbft-redis-options-" + Guid.NewGuid().ToString("N"));
        try
        {
            var manifest = DeploymentKeys.Generate(1, directory);
            var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
            builder.UseOrleans(silo =>
            {
                silo.UseLocalhostClustering();
                silo.AddMinBft(o =>
                {
                    o.FaultDomain = 0;
                    o.Manifest = manifest;
                    o.KeyDirectory = DeploymentKeys.DomainDirectory(directory, 0);
                    o.Storage = MinBftStorageKind.Redis;
                    o.RedisStorage = "127.0.0.1:1";
                });
            });
            using var host = builder.Build();
            var storage = host.Services.GetRequiredKeyedService<Orleans.Storage.IGrainStorage>(SqliteGrainStorageSiloBuilderExtensions.DefaultProviderName);
            Assert.Equal("RedisGrainStorage", storage.GetType().Name);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    // ----- the silo host's flags and "MinBft:Host" configuration -----

    private static readonly IConfiguration Empty = new ConfigurationBuilder().Build();

    private static Program.SiloArguments Flags(IPEndPoint? primary = null) => new(0, "m.json", null, null, primary, 11111, 30000);

    [Fact]
    public void Silo_redis_clustering_flag_alone_selects_redis_clustering()
    {
        var (host, primary, _) = Program.ResolveHost(Empty, Flags() with { RedisClustering = "127.0.0.1:6379", ClusterId = "c", ServiceId = "s" });
        Assert.Equal(SiloClustering.Redis, host.Clustering);
        Assert.Equal("127.0.0.1:6379", host.RedisClustering);
        Assert.Null(primary);
        Assert.Equal(("c", "s"), (host.ClusterId, host.ServiceId));
    }

    [Fact]
    public void Silo_redis_clustering_binds_from_configuration()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["MinBft:Host:Clustering"] = "Redis",
            ["MinBft:Host:RedisClustering"] = "10.0.0.5:6379",
            ["MinBft:Host:AdvertisedIp"] = "10.0.0.7",
        }).Build();
        var (host, _, advertised) = Program.ResolveHost(configuration, Flags());
        Assert.Equal(SiloClustering.Redis, host.Clustering);
        Assert.Equal(IPAddress.Parse("10.0.0.7"), advertised);
    }

    [Fact]
    public void Silo_redis_clustering_without_a_connection_string_or_with_a_primary_silo_is_refused()
    {
        var missing = Assert.Throws<ArgumentException>(() => Program.ResolveHost(Empty, Flags() with { Clustering = SiloClustering.Redis }));
        Assert.Contains("--redis-clustering host:port", missing.Message, StringComparison.Ordinal);
        var primary = Assert.Throws<ArgumentException>(() => Program.ResolveHost(
            Empty, Flags(new IPEndPoint(IPAddress.Loopback, 11111)) with { RedisClustering = "127.0.0.1:6379" }));
        Assert.Contains("no primary silo", primary.Message, StringComparison.Ordinal);
        var contradiction = Assert.Throws<ArgumentException>(() => Program.ResolveHost(
            Empty, Flags() with { Clustering = SiloClustering.Development, RedisClustering = "127.0.0.1:6379" }));
        Assert.Contains("clustering is development", contradiction.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Silo_redis_storage_flag_alone_selects_redis_storage()
    {
        var options = new MinBftOptions();
        (Flags() with { RedisStorage = "127.0.0.1:6380" }).ApplyTo(options);
        Assert.Equal(MinBftStorageKind.Redis, options.Storage);
        Assert.Equal("127.0.0.1:6380", options.RedisStorage);
        Assert.Equal(0, options.FaultDomain);
    }

    [Fact]
    public async Task Silo_host_exits_with_usage_errors_for_incomplete_redis_flags()
    {
        Assert.Equal(2, await Program.Main(["--clustering", "zookeeper"]));
        Assert.Equal(2, await Program.Main(["--manifest", "m.json", "--clustering", "redis"]));
        Assert.Equal(2, await Program.Main(["--manifest", "m.json", "--fault-domain", "0", "--storage", "redis"]));
    }

    // ----- clients -----

    [Fact]
    public void Cli_redis_clustering_binds_and_conflicts_are_usage_errors()
    {
        var cli = new ClientCli();
        var command = Assert.IsType<StatusCommand>(cli.Bind(cli.Parse("status", "--redis-clustering", "127.0.0.1:6379", "--cluster-id", "c")));
        Assert.Equal("127.0.0.1:6379", command.Connection.RedisClustering);
        Assert.Equal("c", command.Connection.ClusterId);
        Assert.NotEmpty(cli.Parse("status", "--clustering", "redis").Errors);
        Assert.NotEmpty(cli.Parse("status", "--redis-clustering", "127.0.0.1:6379", "--gateway", "127.0.0.1:30000").Errors);
        Assert.NotEmpty(cli.Parse("status", "--clustering", "gateway", "--redis-clustering", "127.0.0.1:6379").Errors);
        Assert.Null(Assert.IsType<StatusCommand>(cli.Bind(cli.Parse("status"))).Connection.RedisClustering);
    }

    [Fact]
    public void Sdk_client_with_redis_clustering_uses_the_redis_gateway_list()
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { ["MinBft:Client:RedisClustering"] = "127.0.0.1:6379" });
        builder.UseOrleansClient(client => client.AddMinBftClient(o => o.ManifestPath = "m.json"));
        using var host = builder.Build();
        Assert.Contains("Redis", host.Services.GetRequiredService<IGatewayListProvider>().GetType().Name, StringComparison.Ordinal);
    }
}
