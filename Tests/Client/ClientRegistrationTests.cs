using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using MinBft.Client;

namespace MinBft.Tests.Client;

/// <summary>AddMinBftClient: options from configuration, the manifest from its path, clients as singletons.</summary>
public sealed class ClientRegistrationTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("minbft-client-di-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public async Task AddMinBftClient_BindsConfiguration_LoadsManifest_AndVerifiesReplies()
    {
        var cluster = new FakeClusterProxies(new FakeReplicas(f: 1));
        var manifestPath = Path.Combine(_directory, "manifest.json");
        cluster.Replicas.Manifest.Save(manifestPath);
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["MinBft:Client:ManifestPath"] = manifestPath,
            ["MinBft:Client:IdentityPoolSize"] = "5",
            ["MinBft:Client:RequestTimeout"] = "00:00:07",
        }).Build();
        var services = new ServiceCollection()
            .AddLogging()
            .AddSingleton<IConfiguration>(configuration)
            .AddSingleton(FakeGrainFactory.Create(cluster))
            .AddMinBftClient(options => options.MaxAttempts = 2);
        await using var provider = services.BuildServiceProvider();

        var options = provider.GetRequiredService<Microsoft.Extensions.Options.IOptions<MinBftClientOptions>>().Value;
        var client = provider.GetRequiredService<MinBftClient>();
        var kv = provider.GetRequiredService<KeyValueClient>();

        Assert.Equal(TimeSpan.FromSeconds(7), options.RequestTimeout);
        Assert.Equal(2, options.MaxAttempts);
        Assert.Equal(5, client.ClientIds.Count);
        Assert.Equal(3, client.N);
        Assert.Same(client, provider.GetRequiredService<MinBftClient>());
        await kv.PutAsync("k", [7]);
        Assert.Equal(new byte[] { 7 }, await kv.GetAsync("k"));
    }

    [Fact]
    public void MissingManifestPath_FailsWithAClearError()
    {
        var services = new ServiceCollection()
            .AddLogging()
            .AddSingleton<IConfiguration>(new ConfigurationBuilder().Build())
            .AddSingleton(FakeGrainFactory.Create(new FakeClusterProxies(new FakeReplicas(f: 1))))
            .AddMinBftClient();
        using var provider = services.BuildServiceProvider();

        var e = Assert.Throws<ArgumentException>(() => provider.GetRequiredService<MinBftClient>());
        Assert.Contains("ManifestPath", e.Message, StringComparison.Ordinal);
    }
}
