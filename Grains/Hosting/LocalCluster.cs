using System.Globalization;
using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Configuration;
using Orleans.Hosting;

namespace MinBft.Hosting;

/// <summary>
/// A whole MinBFT cluster in one process, for development, demos and tests:
/// <list type="bullet">
/// <item>a membership/gateway silo without a fault domain: the primary silo of localhost
/// clustering (it holds the membership table) and the clients' gateway. It hosts client
/// proxies only, so any fault-domain silo can stop and restart without breaking the cluster;</item>
/// <item>2f+1 fault-domain silos, each its own <see cref="IHost"/> with
/// <c>AddMinBft(fault domain i)</c> and its own SQLite store under <c>DataDirectory/domain-i</c>.</item>
/// </list>
/// The deployment's keys are generated under <c>DataDirectory/keys</c> on first start and
/// reused afterwards, together with the stores: a restarted cluster continues where it was.
/// With <see cref="LocalClusterOptions.IsolatedUsig"/> each domain's USIG is a USIG program in a
/// child process (<c>DataDirectory/usig-i/</c>), started before the silos and stopped by process id.
/// </summary>
public sealed class LocalCluster : IAsyncDisposable
{
    public const string KeysDirectoryName = "keys";

    private readonly LocalClusterOptions _options;
    private readonly IHost?[] _domainSilos;
    private readonly SemaphoreSlim _lifecycle = new(1, 1);
    private IHost? _gatewaySilo;
    private ClusterManifest? _manifest;

    // Domains whose USIG is initialised for the manifest's epoch when their silo next starts: all
    // of them when this cluster generated its keys, never on a restart (no silent start at counter 1).
    private readonly bool[] _initializeUsig;
    private readonly UsigProcess?[] _usigs;
    private readonly ILoggerFactory _loggerFactory;

    public LocalCluster(LocalClusterOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        N = 2 * options.F + 1;
        _domainSilos = new IHost?[N];
        _initializeUsig = new bool[N];
        _usigs = new UsigProcess?[N];
        _loggerFactory = LoggerFactory.Create(logging => options.ConfigureLogging?.Invoke(logging));
        DataDirectory = Path.GetFullPath(options.DataDirectory);
    }

    /// <summary>Number of replicas (and fault-domain silos).</summary>
    public int N { get; }

    public int F => _options.F;

    /// <summary>Absolute path of the cluster's data directory.</summary>
    public string DataDirectory { get; }

    /// <summary>Where the manifest and the domains' private keys are.</summary>
    public string KeysDirectory => Path.Combine(DataDirectory, KeysDirectoryName);

    public string ManifestPath => Path.Combine(KeysDirectory, DeploymentKeys.ManifestFileName);

    /// <summary>The cluster manifest (after <see cref="StartAsync"/>).</summary>
    public ClusterManifest Manifest => _manifest ?? throw new InvalidOperationException("the cluster is not started");

    /// <summary>The gateway clients connect to.</summary>
    public IPEndPoint GatewayEndpoint => new(IPAddress.Loopback, _options.GatewayPort);

    /// <summary>A client of the cluster, hosted by the gateway silo (always up while the cluster runs).</summary>
    public IClusterClient Client =>
        (_gatewaySilo ?? throw new InvalidOperationException("the cluster is not started")).Services.GetRequiredService<IClusterClient>();

    public IGrainFactory GrainFactory => Client;

    /// <summary>
    /// True if <see cref="DataDirectory"/> holds replica stores from an earlier run, which
    /// <see cref="StartAsync"/> continues from (unless <see cref="LocalClusterOptions.FreshStart"/>).
    /// </summary>
    public bool HasExistingState => StoreDirectories().Any(d => Directory.EnumerateFiles(d).Any());

    /// <summary>What status and logs call this cluster's USIGs: "isolated" or "in-process (not isolated)".</summary>
    public string UsigMode => _options.IsolatedUsig ? MinBftSilo.IsolatedUsigMode : MinBftSilo.InProcessUsigMode;

    /// <summary>Why the development cluster runs without TLS: all its silos and clients are on this machine's loopback.</summary>
    public const string PlaintextReason = "local development";

    /// <summary>How its connections are secured, as the status output prints it: plaintext (its manifest names no TLS CA).</summary>
    public static string Transport => $"{MinBftTransport.PlaintextMode} ({PlaintextReason})";

    /// <summary>Fault domain i's USIG program (isolated mode; null while it is not running).</summary>
    public UsigProcess? UsigProcessOf(int faultDomain) => _usigs[CheckDomain(faultDomain)];

    /// <summary>Where fault domain i's USIG program keeps its state and listens.</summary>
    public UsigProgramSettings UsigSettings(int faultDomain)
    {
        var directory = Path.Combine(DataDirectory, string.Create(CultureInfo.InvariantCulture, $"usig-{CheckDomain(faultDomain)}"));
        return new UsigProgramSettings(_options.UsigProgram, faultDomain, Manifest.Replica(faultDomain).UsigEpoch,
            Path.Combine(directory, "usig.state"), DeploymentKeys.UsigKeyPath(Manifest, DeploymentKeys.DomainDirectory(KeysDirectory, faultDomain)),
            Path.Combine(directory, "usig.sock"));
    }

    /// <summary>Starts fault domain i's USIG program (isolated mode), initialising it first if this
    /// cluster generated the keys or <see cref="InitializeUsigOnNextStart"/> asked for it.</summary>
    public async Task StartUsigAsync(int faultDomain, CancellationToken cancellationToken = default)
    {
        if (!_options.IsolatedUsig) throw new InvalidOperationException("the USIGs run in-process (LocalClusterOptions.IsolatedUsig is off)");
        if (_usigs[CheckDomain(faultDomain)] is { HasExited: false }) throw new InvalidOperationException($"USIG {faultDomain} is already running");
        var settings = UsigSettings(faultDomain);
        if (_initializeUsig[faultDomain])
        {
            await UsigProcess.InitializeAsync(settings, cancellationToken).ConfigureAwait(false);
            _initializeUsig[faultDomain] = false;
        }
        _usigs[faultDomain]?.Dispose();
        _usigs[faultDomain] = await UsigProcess.StartAsync(settings, _loggerFactory.CreateLogger("MinBft.Usig"), TimeSpan.FromSeconds(60), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>kill -9 of fault domain i's USIG program (isolated mode); its silo's calls fail until it is started again.</summary>
    public void KillUsig(int faultDomain) => _usigs[CheckDomain(faultDomain)]?.Kill();

    /// <summary>
    /// The next start of fault domain i's USIG (its silo's in-process one, or its USIG program)
    /// initialises it for the manifest's epoch: after <c>keygen --rotate-usig</c>, never otherwise.
    /// </summary>
    public void InitializeUsigOnNextStart(int faultDomain) => _initializeUsig[CheckDomain(faultDomain)] = true;

    /// <summary>Reads the manifest again (after <c>keygen --rotate-usig</c>): silos started from now on use it.</summary>
    public void ReloadManifest() => _manifest = ClusterManifest.Load(ManifestPath);

    /// <summary>True while fault domain <paramref name="faultDomain"/>'s silo runs.</summary>
    public bool IsSiloRunning(int faultDomain) => _domainSilos[CheckDomain(faultDomain)] is not null;

    /// <summary>Creates keys if needed, then starts the gateway silo and every fault-domain silo.</summary>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        await _lifecycle.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_gatewaySilo is not null) throw new InvalidOperationException("the cluster is already started");
            if (_options.FreshStart) DeleteState();
            _manifest = LoadOrCreateKeys();
            if (_options.IsolatedUsig)
                await Task.WhenAll(Enumerable.Range(0, N).Select(i => StartUsigAsync(i, cancellationToken))).ConfigureAwait(false);
            var gateway = BuildSilo(faultDomain: null);
            try
            {
                await gateway.StartAsync(cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                gateway.Dispose();
                throw;
            }
            _gatewaySilo = gateway;
            await Task.WhenAll(Enumerable.Range(0, N).Select(i => StartDomainSiloAsync(i, cancellationToken))).ConfigureAwait(false);
        }
        finally
        {
            _lifecycle.Release();
        }
    }

    /// <summary>Stops fault domain <paramref name="faultDomain"/>'s silo (gracefully): replica i is down until restarted.</summary>
    public async Task StopSiloAsync(int faultDomain, CancellationToken cancellationToken = default)
    {
        CheckDomain(faultDomain);
        await _lifecycle.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var silo = _domainSilos[faultDomain] ?? throw new InvalidOperationException($"fault domain {faultDomain}'s silo is not running");
            _domainSilos[faultDomain] = null;
            await StopAndDisposeAsync(silo, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _lifecycle.Release();
        }
    }

    /// <summary>Starts fault domain <paramref name="faultDomain"/>'s silo again, on the same ports, keys and store.</summary>
    public async Task StartSiloAsync(int faultDomain, CancellationToken cancellationToken = default)
    {
        CheckDomain(faultDomain);
        await _lifecycle.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_gatewaySilo is null) throw new InvalidOperationException("the cluster is not started");
            if (_domainSilos[faultDomain] is not null) throw new InvalidOperationException($"fault domain {faultDomain}'s silo is already running");
            await StartDomainSiloAsync(faultDomain, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _lifecycle.Release();
        }
    }

    /// <summary>
    /// Each replica's status, or null for a replica that did not answer within
    /// <paramref name="timeout"/> (its silo is down, or it is still activating).
    /// </summary>
    public async Task<ReplicaStatus?[]> GetStatusesAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        var client = Client;
        return await Task.WhenAll(Enumerable.Range(0, N).Select(async i =>
        {
            try
            {
                return await client.GetGrain<IReplicaGrain>(i).GetStatus().WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                return null;
            }
        })).ConfigureAwait(false);
    }

    /// <summary>
    /// Waits until every replica answers (placement needs each silo's fault domain in the
    /// gateway's metadata cache, which can lag a silo's start by a moment).
    /// </summary>
    public async Task<ReplicaStatus[]> WaitForReplicasAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout);
        ReplicaStatus?[] statuses = [];
        try
        {
            while (true)
            {
                statuses = await GetStatusesAsync(TimeSpan.FromSeconds(2), deadline.Token).ConfigureAwait(false);
                if (statuses.All(s => s is not null)) return statuses!;
                await Task.Delay(TimeSpan.FromMilliseconds(100), deadline.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            var missing = string.Join(", ", statuses.Select((s, i) => (s, i)).Where(x => x.s is null).Select(x => x.i));
            throw new TimeoutException($"replicas [{missing}] did not answer within {timeout}");
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _lifecycle.WaitAsync().ConfigureAwait(false);
        try
        {
            // Fault-domain silos first (the gateway silo holds the membership table), one at a
            // time: silos leaving together fail to gossip their departure to each other.
            for (var i = N - 1; i >= 0; i--)
            {
                if (_domainSilos[i] is { } silo)
                {
                    _domainSilos[i] = null;
                    await StopAndDisposeAsync(silo, CancellationToken.None).ConfigureAwait(false);
                }
            }
            if (_gatewaySilo is { } gateway)
            {
                _gatewaySilo = null;
                await StopAndDisposeAsync(gateway, CancellationToken.None).ConfigureAwait(false);
            }
            // The USIG programs last: by process id, only the ones this cluster started.
            for (var i = 0; i < N; i++)
            {
                _usigs[i]?.Dispose();
                _usigs[i] = null;
            }
            _loggerFactory.Dispose();
        }
        finally
        {
            _lifecycle.Release();
        }
    }

    private async Task StartDomainSiloAsync(int faultDomain, CancellationToken cancellationToken)
    {
        var silo = BuildSilo(faultDomain);
        try
        {
            await silo.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            silo.Dispose();
            throw;
        }
        _domainSilos[faultDomain] = silo;
    }

    private IEnumerable<string> StoreDirectories() =>
        Directory.Exists(DataDirectory) ? Directory.EnumerateDirectories(DataDirectory, "domain-*").Concat(Directory.EnumerateDirectories(DataDirectory, "usig-*")) : [];

    private void DeleteState()
    {
        // Only what this class creates: a mistyped --data must not wipe someone's directory.
        foreach (var store in StoreDirectories().ToArray()) Directory.Delete(store, recursive: true);
        if (Directory.Exists(KeysDirectory)) Directory.Delete(KeysDirectory, recursive: true);
    }

    private ClusterManifest LoadOrCreateKeys()
    {
        ClusterManifest manifest;
        if (File.Exists(ManifestPath))
        {
            manifest = ClusterManifest.Load(ManifestPath);
        }
        else
        {
            Directory.CreateDirectory(DataDirectory);
            manifest = DeploymentKeys.Generate(_options.F, KeysDirectory, _options.UsigScheme);
            Array.Fill(_initializeUsig, true);
        }
        if (manifest.F != _options.F)
        {
            throw new InvalidOperationException(
                $"{DataDirectory} holds a cluster with f={manifest.F}, not f={_options.F}; use another data directory or f={manifest.F}");
        }
        return manifest;
    }

    private IHost BuildSilo(int? faultDomain)
    {
        var manifest = Manifest;
        // No defaults: the dev cluster must not pick up the host process's appsettings,
        // environment or command line (the CLI and test runners have their own).
        var builder = new HostApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Logging.ClearProviders();
        _options.ConfigureLogging?.Invoke(builder.Logging);
        // The cluster, not Ctrl+C handlers of each silo, decides when a silo stops.
        builder.Services.AddSingleton<IHostLifetime, ManualLifetime>();
        builder.UseOrleans(silo =>
        {
            var primary = new IPEndPoint(IPAddress.Loopback, _options.SiloPort);
            if (faultDomain is { } domain)
            {
                silo.UseLocalhostClustering(
                    _options.SiloPort + 1 + domain, _options.GatewayPort + 1 + domain, primary, _options.ServiceId, _options.ClusterId);
                var initialize = _initializeUsig[domain] && !_options.IsolatedUsig;
                if (initialize) _initializeUsig[domain] = false;
                var socket = _options.IsolatedUsig ? UsigSettings(domain).SocketPath : null;
                silo.AddMinBft(options =>
                {
                    options.FaultDomain = domain;
                    if (initialize) options.Usig.InitializeEpoch = manifest.Replica(domain).UsigEpoch;
                    if (socket is not null) options.Usig.Endpoint = "unix:" + socket;
                    options.Manifest = manifest;
                    options.ManifestPath = ManifestPath;
                    options.KeyDirectory = DeploymentKeys.DomainDirectory(KeysDirectory, domain);
                    options.DataDirectory = Path.Combine(DataDirectory, string.Create(CultureInfo.InvariantCulture, $"domain-{domain}"));
                    PlaintextForDevelopment(options);
                    _options.ConfigureMinBft?.Invoke(options);
                });
            }
            else
            {
                silo.UseLocalhostClustering(_options.SiloPort, _options.GatewayPort, primary, _options.ServiceId, _options.ClusterId);
                silo.AddMinBftGateway(manifest, options =>
                {
                    PlaintextForDevelopment(options);
                    _options.ConfigureMinBft?.Invoke(options);
                });
            }
            silo.Configure<SiloOptions>(o => o.SiloName = faultDomain is { } d
                ? string.Create(CultureInfo.InvariantCulture, $"domain-{d}")
                : "gateway");
            _options.ConfigureSilo?.Invoke(faultDomain, silo);
        });
        return builder.Build();
    }

    /// <summary>Loopback only and keys made without a TLS CA: plaintext, said so in the log instead of warned about.</summary>
    private static void PlaintextForDevelopment(MinBftOptions options)
    {
        options.Tls.Enabled = false;
        options.Tls.PlaintextReason = PlaintextReason;
    }

    private static async Task StopAndDisposeAsync(IHost silo, CancellationToken cancellationToken)
    {
        try
        {
            await silo.StopAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            silo.Dispose();
        }
    }

    private int CheckDomain(int faultDomain) =>
        faultDomain >= 0 && faultDomain < N
            ? faultDomain
            : throw new ArgumentOutOfRangeException(nameof(faultDomain), $"fault domains are 0..{N - 1}");
}

/// <summary>A host lifetime that starts at once and never stops the host by itself.</summary>
internal sealed class ManualLifetime : IHostLifetime
{
    public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
