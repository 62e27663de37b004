using System.Collections.Concurrent;
using System.Globalization;
using Microsoft.Extensions.DependencyInjection;
using MinBft.Client;
using MinBft.Hosting;
using Orleans.Hosting;

namespace MinBft.Testing;

/// <summary>
/// One MinBFT deployment in a test cluster: its keys and manifest (written by
/// <see cref="DeploymentKeys.Generate(int, string, UsigScheme, int, int, int)"/>, as a
/// real deployment's are), its SQLite stores, and how each silo and the client are configured.
/// Dispose it after the cluster to delete its temp directory.
/// </summary>
public sealed class MinBftTestDeployment : IDisposable
{
    /// <summary>The configuration key through which TestingHost's silo and client configurators find this deployment.</summary>
    internal const string ConfigurationKey = "MinBft:Testing:Deployment";

    // TestingHost creates its configurators by type and hands them only configuration: the
    // deployment (with its delegates) is found here by the id in the configuration. Silos of a
    // TestCluster run in this process unless the test opts out.
    private static readonly ConcurrentDictionary<string, MinBftTestDeployment> Registry = new();

    private readonly MinBftTestingOptions _options;
    private readonly bool _ownsDirectory;
    private int _disposed;

    private MinBftTestDeployment(MinBftTestingOptions options)
    {
        _options = options;
        _ownsDirectory = options.Directory is null;
        Directory = options.Directory ?? Path.Combine(Path.GetTempPath(), "minbft-testinghost-" + Guid.NewGuid().ToString("N"));
        Manifest = DeploymentKeys.Generate(options.F, Directory, options.UsigScheme, options.CheckpointInterval, options.Watermark, options.MaxClientRecords);
        Id = Guid.NewGuid().ToString("N");
        Registry[Id] = this;
        if (_ownsDirectory) AppDomain.CurrentDomain.ProcessExit += OnProcessExit;
    }

    /// <summary>Creates the keys and manifest of a new deployment.</summary>
    public static MinBftTestDeployment Create(MinBftTestingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        return new MinBftTestDeployment(options);
    }

    public string Id { get; }

    /// <summary>Where the manifest, the fault domains' keys (domain-k/) and the SQLite stores (data/) are.</summary>
    public string Directory { get; }

    public string ManifestPath => Path.Combine(Directory, DeploymentKeys.ManifestFileName);

    public string DataDirectory => Path.Combine(Directory, "data");

    public ClusterManifest Manifest { get; }

    /// <summary>Number of replicas, n = 2f+1.</summary>
    public int N => Manifest.N;

    /// <summary>Silos the cluster starts with: the n fault domains, then the gateway silos.</summary>
    public int SiloCount => N + _options.GatewaySilos;

    internal static MinBftTestDeployment Find(string? id) =>
        id is not null && Registry.TryGetValue(id, out var deployment) ? deployment
        : throw new InvalidOperationException(
            $"No MinBFT test deployment '{id}' in this process. AddMinBft's silos and client must run in the process that called it (TestingHost's default in-process silos).");

    /// <summary>
    /// The fault domain of a TestingHost silo, from its name: instance k ("Primary" for 0,
    /// "Secondary_k" or "Silo_k") is fault domain k for k &lt; n; later instances have none.
    /// </summary>
    public int? FaultDomainOf(string siloName)
    {
        ArgumentNullException.ThrowIfNull(siloName);
        var instance = siloName == "Primary" ? 0
            : int.TryParse(siloName.AsSpan(siloName.LastIndexOf('_') + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var k) ? k
            : throw new ArgumentException($"cannot tell the instance number of silo '{siloName}'", nameof(siloName));
        return instance < N ? instance : null;
    }

    /// <summary>Adds MinBFT to one silo: its fault domain's keys and SQLite store, or a gateway's configuration.</summary>
    public void ConfigureSilo(int? faultDomain, ISiloBuilder silo)
    {
        ArgumentNullException.ThrowIfNull(silo);
        if (_options.StateMachine is { } create)
            silo.Services.AddSingleton<IStateMachineFactory>(new DelegateStateMachineFactory(create));
        if (faultDomain is { } domain)
        {
            silo.AddMinBft(options =>
            {
                options.FaultDomain = domain;
                options.Manifest = Manifest;
                options.ManifestPath = ManifestPath;
                options.DataDirectory = DataDirectory;
                // Every start may initialise the USIG for the manifest's epoch: a test deployment
                // starts from nothing, and a restarted silo finds its USIG's state at that epoch.
                options.Usig.InitializeEpoch = Manifest.Replica(domain).UsigEpoch;
                PlaintextForTests(options);
                _options.ConfigureMinBft?.Invoke(options);
            });
        }
        else
        {
            silo.AddMinBftGateway(Manifest, options =>
            {
                PlaintextForTests(options);
                _options.ConfigureMinBft?.Invoke(options);
            });
        }
        _options.ConfigureSilo?.Invoke(faultDomain, silo);
    }

    /// <summary>In-process test silos whose keys have no TLS CA: plaintext, said so in the log instead of warned about.</summary>
    private static void PlaintextForTests(MinBftOptions options)
    {
        options.Tls.Enabled = false;
        options.Tls.PlaintextReason = "test cluster";
    }

    /// <summary>Adds the MinBFT client (<see cref="MinBftClient"/>, <see cref="KeyValueClient"/>) to the cluster client.</summary>
    public void ConfigureClient(IClientBuilder client)
    {
        ArgumentNullException.ThrowIfNull(client);
        client.AddMinBftClient(options =>
        {
            options.ManifestPath = ManifestPath;
            _options.ConfigureClient?.Invoke(options);
        });
    }

    /// <summary>Forgets the deployment and deletes its directory if the helper created it. Stop the cluster first.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        Registry.TryRemove(Id, out _);
        if (!_ownsDirectory) return;
        AppDomain.CurrentDomain.ProcessExit -= OnProcessExit;
        DeleteDirectory();
    }

    private void OnProcessExit(object? sender, EventArgs e) => DeleteDirectory();

    private void DeleteDirectory()
    {
        try
        {
            if (System.IO.Directory.Exists(Directory)) System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A store still open (a silo not stopped yet): it is a temp directory.
        }
    }
}
