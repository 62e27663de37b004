using System.CommandLine;
using System.Globalization;
using System.Net;
using System.Runtime.InteropServices;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;
using MinBft.Hosting;
using MinBft.Silo.Dashboard;
using OpenTelemetry.Metrics;
using Orleans.Configuration;
using Orleans.Dashboard;
using Orleans.Hosting;

namespace MinBft.Silo;

/// <summary>
/// The silo host.
/// <code>
/// Silo local [--f 1] [--data ./data] [--isolated-usig]  a whole dev cluster in this process (USIG programs as child processes)
///      [--state-machine keyvalue|ledger]             the replicated service (also on the per-domain silo; default keyvalue)
///      [--http-port p] [--dashboard]                  /healthz, /metrics; the dashboard (/minbft, /dashboard/; also on the per-domain silo)
/// Silo --fault-domain i --manifest m.json --data d   one fault domain's silo
///      [--keys dir] [--primary-silo host:port] [--silo-port p] [--gateway-port g]
///      [--clustering development|redis] [--redis-clustering host:port] [--advertised-ip ip]
///      [--storage sqlite|redis] [--redis-storage host:port] [--cluster-id c] [--service-id s]
///      [--usig unix:PATH]                            the domain's isolated USIG program (default: in-process)
///      [--init-usig EPOCH]                           first start of this domain's in-process USIG
///      [--tls-cert PATH] [--tls-key PATH] | [--no-tls] mutual TLS with the manifest's CA (required by default)
/// Silo --manifest m.json                             a silo without fault domain (gateway, membership)
/// </code>
/// Every setting can also come from appsettings.json or the environment: section "MinBft"
/// (MinBftOptions, e.g. MinBft__FaultDomain=0, MinBft__Storage=Redis, MinBft__RedisStorage=...)
/// and "MinBft:Host" (ports, clustering, primary silo, ids). Flags win over configuration.
/// </summary>
public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        using var stop = new CancellationTokenSource();
        // Ctrl+C and SIGTERM stop the silo gracefully (the handlers cancel instead of killing).
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            stop.Cancel();
        };
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context =>
        {
            context.Cancel = true;
            stop.Cancel();
        });
        var configuration = new InvocationConfiguration { ProcessTerminationTimeout = null };
        var parse = BuildRootCommand().Parse(args);
        var exit = await parse.InvokeAsync(configuration, stop.Token).ConfigureAwait(false);
        // Errors are printed with the usage by the invocation; 2 means "bad usage", as elsewhere.
        return parse.Errors.Count > 0 ? 2 : exit;
    }

    public static RootCommand BuildRootCommand()
    {
        var faultDomain = new Option<int?>("--fault-domain") { Description = "This silo's fault domain i (hosts replica i and USIG i); omit for a gateway/membership silo" };
        var manifest = new Option<string?>("--manifest") { Description = "The cluster manifest (manifest.json from keygen)" };
        var keys = new Option<string?>("--keys") { Description = "Directory of this domain's private keys (default: domain-i next to the manifest)" };
        var data = new Option<string?>("--data") { Description = "Directory of this domain's embedded SQLite store" };
        var primarySilo = new Option<IPEndPoint?>("--primary-silo")
        {
            Description = "host:port of the primary silo (development clustering); omit if this silo is the primary",
            CustomParser = result => ParseEndpoint(result.Tokens[0].Value, result),
        };
        var siloPort = PortOption("--silo-port", "Silo-to-silo port (default 11111)");
        var gatewayPort = PortOption("--gateway-port", "Client gateway port (default 30000; 0 for none)", allowZero: true);
        var httpPort = PortOption("--http-port", "Port of this silo's HTTP endpoint, /healthz and /metrics (default: a free loopback port, printed at start); --metrics-port is the same option", aliases: "--metrics-port");
        var clustering = new Option<string?>("--clustering")
        {
            Description = "How silos find each other: development (a primary silo) or redis (membership table in Redis; default when --redis-clustering is given)",
        };
        clustering.AcceptOnlyFromAmong("development", "redis");
        var redisClustering = new Option<string?>("--redis-clustering") { Description = "Redis connection string (host:port[,password=...]) of the membership table; the same for every silo and client" };
        var storage = new Option<string?>("--storage")
        {
            Description = "This domain's grain storage: sqlite (embedded, default) or redis (default when --redis-storage is given)",
        };
        storage.AcceptOnlyFromAmong("sqlite", "redis");
        var redisStorage = new Option<string?>("--redis-storage") { Description = "Redis connection string (host:port[,password=...]) of this fault domain's own Redis server" };
        var advertisedIp = new Option<IPAddress?>("--advertised-ip")
        {
            Description = "IP address this silo advertises and listens on (default: loopback with development clustering, this host's address with redis)",
            CustomParser = result =>
            {
                if (IPAddress.TryParse(result.Tokens[0].Value, out var address)) return address;
                result.AddError($"--advertised-ip: '{result.Tokens[0].Value}' is not an IP address");
                return null;
            },
        };
        var usig = new Option<string?>("--usig")
        {
            Description = "unix:PATH: this domain's USIG is the USIG program listening there (isolated; the silo holds no USIG key). Default: in-process (not isolated)",
        };
        var initUsig = new Option<ulong?>("--init-usig")
        {
            Description = "First start of this domain's in-process USIG: initialise its store for this epoch (the manifest's). Without it, a USIG with no state refuses to start",
        };
        var tlsCertificate = new Option<string?>("--tls-cert") { Description = "This silo's TLS certificate (PEM; default: tls/tls.crt in the key directory, domain-i/ or gateway/ next to the manifest)" };
        var tlsKey = new Option<string?>("--tls-key") { Description = "Its private key (PEM; default: tls.key next to the certificate)" };
        var noTls = new Option<bool>("--no-tls")
        {
            Description = "Plaintext connections (logged as a warning): anyone who reaches the silo's ports can join the cluster and call grains. Default: mutual TLS with the manifest's CA, required",
        };
        var stateMachine = StateMachineOption();
        var dashboard = DashboardOption();
        var clusterId = new Option<string?>("--cluster-id") { Description = $"Orleans cluster id (default {LocalClusterOptions.DefaultClusterId})" };
        var serviceId = new Option<string?>("--service-id") { Description = $"Orleans service id (default {LocalClusterOptions.DefaultServiceId})" };

        var root = new RootCommand("MinBFT silo host: one fault domain's silo, or a local development cluster")
        {
            faultDomain, manifest, keys, data, primarySilo, siloPort, gatewayPort, httpPort,
            clustering, redisClustering, storage, redisStorage, advertisedIp, clusterId, serviceId, usig, initUsig, stateMachine, dashboard,
            tlsCertificate, tlsKey, noTls,
        };
        root.Validators.Add(result =>
        {
            if (result.GetValue(noTls) && (result.GetValue(tlsCertificate) is not null || result.GetValue(tlsKey) is not null))
                result.AddError("--no-tls excludes --tls-cert and --tls-key");
        });
        root.SetAction((parse, cancellationToken) => RunSiloAsync(
            new SiloArguments(
                parse.GetValue(faultDomain), parse.GetValue(manifest), parse.GetValue(keys), parse.GetValue(data),
                parse.GetValue(primarySilo), parse.GetValue(siloPort), parse.GetValue(gatewayPort))
            {
                Clustering = parse.GetValue(clustering) is { } c ? Enum.Parse<SiloClustering>(c, ignoreCase: true) : null,
                RedisClustering = parse.GetValue(redisClustering),
                Storage = parse.GetValue(storage) is { } s ? Enum.Parse<MinBftStorageKind>(s, ignoreCase: true) : null,
                RedisStorage = parse.GetValue(redisStorage),
                AdvertisedIp = parse.GetValue(advertisedIp),
                ClusterId = parse.GetValue(clusterId),
                ServiceId = parse.GetValue(serviceId),
                InitializeUsigEpoch = parse.GetValue(initUsig),
                Usig = parse.GetValue(usig),
                StateMachine = ParseStateMachine(parse.GetValue(stateMachine)),
                HttpPort = parse.GetValue(httpPort),
                Dashboard = parse.GetValue(dashboard) ? true : null,
                TlsCertificate = parse.GetValue(tlsCertificate),
                TlsKey = parse.GetValue(tlsKey),
                NoTls = parse.GetValue(noTls),
            },
            cancellationToken));

        var f = new Option<int>("--f") { Description = "Faults tolerated; runs 2f+1 fault-domain silos", DefaultValueFactory = _ => 1 };
        f.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<int>() is < 0 or > 10) result.AddError("--f must be between 0 and 10");
        });
        var localData = new Option<string>("--data") { Description = "Data directory (keys and stores)", DefaultValueFactory = _ => "./data" };
        var localSiloPort = PortOption("--silo-port", "Base silo port (membership silo; domain i uses +1+i)");
        var localGatewayPort = PortOption("--gateway-port", "Client gateway port (domain i's silo uses +1+i)");
        var interval = new Option<int>("--status-interval") { Description = "Seconds between status lines", DefaultValueFactory = _ => 5 };
        interval.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<int>() < 1) result.AddError("--status-interval must be at least 1");
        });
        var reset = new Option<bool>("--reset") { Description = "Delete the keys and replica stores of an earlier run first (a fresh cluster)" };
        var isolatedUsig = new Option<bool>("--isolated-usig") { Description = "Run each domain's USIG as a separate USIG program (child processes) instead of inside its silo" };
        var localStateMachine = StateMachineOption();
        var localDashboard = DashboardOption();
        var localHttpPort = PortOption("--http-port", "Port of the HTTP endpoint, /healthz and /metrics (default: a free loopback port, printed at start); --metrics-port is the same option", aliases: "--metrics-port");
        var local = new Command("local", "Run a whole development cluster (membership/gateway silo + 2f+1 fault-domain silos) in this process")
        {
            f, localData, localSiloPort, localGatewayPort, interval, reset, isolatedUsig, localStateMachine, localDashboard, localHttpPort,
        };
        local.SetAction((parse, cancellationToken) => RunLocalAsync(
            new LocalClusterOptions
            {
                F = parse.GetValue(f),
                DataDirectory = parse.GetValue(localData)!,
                SiloPort = parse.GetValue(localSiloPort) ?? LocalClusterOptions.DefaultSiloPort,
                GatewayPort = parse.GetValue(localGatewayPort) ?? LocalClusterOptions.DefaultGatewayPort,
                FreshStart = parse.GetValue(reset),
                IsolatedUsig = parse.GetValue(isolatedUsig),
                ConfigureMinBft = LocalMinBftOptions(ParseStateMachine(parse.GetValue(localStateMachine)), new ConfigurationBuilder().AddEnvironmentVariables().Build()),
                ConfigureLogging = ConfigureConsoleLogging,
                // The Orleans dashboard collects on every silo; the local HTTP endpoint serves it.
                ConfigureSilo = parse.GetValue(localDashboard) ? (_, silo) => silo.AddDashboard() : null,
            },
            TimeSpan.FromSeconds(parse.GetValue(interval)),
            parse.GetValue(localHttpPort),
            parse.GetValue(localDashboard),
            cancellationToken));
        root.Add(local);
        return root;
    }

    /// <summary>
    /// <c>Silo local</c>'s MinBFT options: the state machine if given, trace propagation across
    /// grain calls when traces are exported (OTEL_EXPORTER_OTLP_ENDPOINT; the local HTTP endpoint
    /// exports them), as the per-domain host does (off otherwise: it costs every call), and the
    /// protocol knobs of <c>MinBft:Protocol</c> (e.g. <c>MinBft__Protocol__MaxBatchWait=00:00:00.001</c>),
    /// which are each replica's own choice, so all three take them. An unknown knob is an error.
    /// </summary>
    public static Action<MinBftOptions>? LocalMinBftOptions(MinBftStateMachineKind? stateMachine, IConfiguration configuration)
    {
        var tracing = SiloTracing.ExportsOtlp(configuration);
        var knobs = configuration.GetSection(MinBftOptions.SectionName).GetSection(nameof(MinBftOptions.Protocol));
        var tuning = knobs.Exists() ? knobs.Get<MinBft.Protocol.ProtocolTuning>(b => b.ErrorOnUnknownConfiguration = true) : null;
        tuning?.Validate();
        if (stateMachine is null && !tracing && tuning is null) return null;
        return o =>
        {
            if (stateMachine is { } kind) o.StateMachine = kind;
            if (tracing) o.Tracing = true;
            if (tuning is not null) o.Protocol = tuning;
        };
    }

    /// <summary>
    /// The web host of both modes: appsettings.json and the environment, read once at start.
    /// The default reloads configuration on change, which watches the working directory and
    /// everything under it (inotify): with the data directory there (<c>local --data ./data</c>)
    /// every synced journal and USIG write woke the watcher's thread. Nothing here rebinds options
    /// on change, so turning the reload off loses nothing.
    /// </summary>
    public static WebApplicationBuilder CreateWebHostBuilder() =>
        WebApplication.CreateBuilder(new WebApplicationOptions { Args = ["--hostBuilder:reloadConfigOnChange=false"] });

    /// <summary>The flags of the per-domain / gateway mode; null: not given (configuration or default applies).</summary>
    public sealed record SiloArguments(
        int? FaultDomain, string? Manifest, string? Keys, string? Data, IPEndPoint? PrimarySilo, int? SiloPort, int? GatewayPort)
    {
        public SiloClustering? Clustering { get; init; }
        public string? RedisClustering { get; init; }
        public MinBftStorageKind? Storage { get; init; }
        public string? RedisStorage { get; init; }
        public IPAddress? AdvertisedIp { get; init; }
        public string? ClusterId { get; init; }
        public string? ServiceId { get; init; }
        public ulong? InitializeUsigEpoch { get; init; }
        public string? Usig { get; init; }
        public MinBftStateMachineKind? StateMachine { get; init; }
        public int? HttpPort { get; init; }
        public bool? Dashboard { get; init; }
        public string? TlsCertificate { get; init; }
        public string? TlsKey { get; init; }
        public bool NoTls { get; init; }

        /// <summary>Puts the MinBFT flags on top of the options bound from configuration.</summary>
        public void ApplyTo(MinBftOptions options)
        {
            ArgumentNullException.ThrowIfNull(options);
            if (FaultDomain is { } domain) options.FaultDomain = domain;
            if (Manifest is { } manifest) options.ManifestPath = manifest;
            if (Keys is { } keys) options.KeyDirectory = keys;
            if (Data is { } data) options.DataDirectory = data;
            if (RedisStorage is { } redis)
            {
                options.RedisStorage = redis;
                // --redis-storage alone means Redis storage.
                options.Storage = Storage ?? MinBftStorageKind.Redis;
            }
            if (Storage is { } storage) options.Storage = storage;
            if (InitializeUsigEpoch is { } epoch) options.Usig.InitializeEpoch = epoch;
            if (Usig is { } endpoint) options.Usig.Endpoint = endpoint;
            if (StateMachine is { } stateMachine) options.StateMachine = stateMachine;
            if (TlsCertificate is { } certificate) options.Tls.CertificatePath = certificate;
            if (TlsKey is { } key) options.Tls.KeyPath = key;
            if (NoTls) options.Tls.Enabled = false;
        }
    }

    /// <summary>
    /// The host settings: configuration section "MinBft:Host", then the flags. Throws
    /// <see cref="ArgumentException"/> for a combination that cannot work.
    /// </summary>
    public static (SiloHostOptions Host, IPEndPoint? PrimarySilo, IPAddress? AdvertisedIp) ResolveHost(IConfiguration configuration, SiloArguments arguments)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        ArgumentNullException.ThrowIfNull(arguments);
        var host = configuration.GetSection(SiloHostOptions.SectionName).Get<SiloHostOptions>() ?? new SiloHostOptions();
        if (arguments.SiloPort is { } siloPort) host.SiloPort = siloPort;
        if (arguments.GatewayPort is { } gatewayPort) host.GatewayPort = gatewayPort;
        if (arguments.HttpPort is { } httpPort) host.HttpPort = httpPort;
        if (arguments.Dashboard is { } dashboard) host.Dashboard = dashboard;
        if (arguments.ClusterId is { } clusterId) host.ClusterId = clusterId;
        if (arguments.ServiceId is { } serviceId) host.ServiceId = serviceId;
        if (arguments.RedisClustering is { } redis)
        {
            host.RedisClustering = redis;
            // --redis-clustering alone means Redis clustering.
            host.Clustering = arguments.Clustering ?? SiloClustering.Redis;
        }
        if (arguments.Clustering is { } clustering) host.Clustering = clustering;

        if (string.IsNullOrWhiteSpace(host.ClusterId)) throw new ArgumentException($"{SiloHostOptions.SectionName}:ClusterId must not be empty");
        if (string.IsNullOrWhiteSpace(host.ServiceId)) throw new ArgumentException($"{SiloHostOptions.SectionName}:ServiceId must not be empty");

        IPAddress? advertised = arguments.AdvertisedIp;
        if (advertised is null && host.AdvertisedIp is { Length: > 0 } configuredIp && !IPAddress.TryParse(configuredIp, out advertised))
            throw new ArgumentException($"{SiloHostOptions.SectionName}:AdvertisedIp '{configuredIp}' is not an IP address");

        IPEndPoint? primary = arguments.PrimarySilo;
        switch (host.Clustering)
        {
            case SiloClustering.Development:
                if (primary is null && host.PrimarySilo is { Length: > 0 } configured && !Endpoints.TryParse(configured, out primary))
                    throw new ArgumentException($"{SiloHostOptions.SectionName}:PrimarySilo '{configured}' is not host:port");
                if (!string.IsNullOrWhiteSpace(host.RedisClustering))
                    throw new ArgumentException($"a Redis clustering connection string is set but clustering is development: use --clustering redis (or {SiloHostOptions.SectionName}:Clustering=Redis), or drop it");
                break;
            case SiloClustering.Redis:
                if (primary is not null)
                    throw new ArgumentException("--primary-silo is for development clustering; with Redis clustering the membership table is in Redis and there is no primary silo");
                if (string.IsNullOrWhiteSpace(host.RedisClustering))
                    throw new ArgumentException($"Redis clustering needs the Redis connection string of the membership table: --redis-clustering host:port (or {SiloHostOptions.SectionName}:RedisClustering)");
                RedisConnection.Parse(host.RedisClustering, "--redis-clustering");
                primary = null;
                break;
            default:
                throw new ArgumentException($"{SiloHostOptions.SectionName}:Clustering must be Development or Redis, got {host.Clustering}");
        }
        return (host, primary, advertised);
    }

    private static async Task<int> RunSiloAsync(SiloArguments arguments, CancellationToken cancellationToken)
    {
        // Configuration first (appsettings.json in the working directory, environment), flags on top.
        var builder = CreateWebHostBuilder();
        ConfigureConsoleLogging(builder.Logging);

        SiloHostOptions host;
        IPEndPoint? primary;
        IPAddress? advertised;
        MinBftOptions? effective = null;
        try
        {
            (host, primary, advertised) = ResolveHost(builder.Configuration, arguments);
            builder.UseOrleans(silo =>
            {
                if (host.Clustering == SiloClustering.Redis)
                {
                    silo.UseMinBftRedisClustering(host.RedisClustering!);
                    silo.Configure<ClusterOptions>(o =>
                    {
                        o.ClusterId = host.ClusterId;
                        o.ServiceId = host.ServiceId;
                    });
                    silo.Configure<EndpointOptions>(o =>
                    {
                        o.SiloPort = host.SiloPort;
                        o.GatewayPort = host.GatewayPort;
                        if (advertised is not null) o.AdvertisedIPAddress = advertised;
                    });
                }
                else
                {
                    silo.UseLocalhostClustering(
                        host.SiloPort, host.GatewayPort, primary ?? new IPEndPoint(advertised ?? IPAddress.Loopback, host.SiloPort), host.ServiceId, host.ClusterId);
                    if (advertised is not null) silo.Configure<EndpointOptions>(o => o.AdvertisedIPAddress = advertised);
                }
                // Failure detection (probe timeouts, votes), e.g. MinBft__Host__Membership__ProbeTimeout=00:00:01.
                silo.Services.Configure<ClusterMembershipOptions>(builder.Configuration.GetSection(SiloHostOptions.MembershipSectionName));
                // The directory's safety lease after a crash, e.g. MinBft__Host__GrainDirectory__RangeLeaseDuration=00:00:05.
                silo.Services.Configure<GrainDirectoryOptions>(builder.Configuration.GetSection(SiloHostOptions.GrainDirectorySectionName));
                silo.AddMinBft(builder.Configuration, options =>
                {
                    // A deployment across machines: plaintext only when asked for (--no-tls).
                    options.Tls.Required = true;
                    arguments.ApplyTo(options);
                    // Traces are exported only over OTLP: propagation (which costs every grain
                    // call) only when they go somewhere, or when configured (MinBft:Tracing).
                    if (!string.IsNullOrWhiteSpace(builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"])) options.Tracing = true;
                    effective = options;
                });
                silo.Services.AddHealthChecks().AddMinBftReplica();
                // The MinBft meter: scraped at /metrics (Prometheus), and pushed over OTLP when
                // the standard OTEL_EXPORTER_OTLP_ENDPOINT is set.
                silo.Services.AddOpenTelemetry().WithMetrics(m =>
                {
                    m.AddMeter(MinBftMetrics.MeterName).AddPrometheusExporter();
                    if (!string.IsNullOrWhiteSpace(builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"])) m.AddOtlpExporter();
                });
                silo.Services.AddOpenTelemetry().WithMinBftTracing(builder.Configuration); // traces: SiloTracing
                if (host.Dashboard)
                {
                    silo.AddDashboard();
                    silo.Services.AddMinBftStatusPage(sp => sp.GetRequiredService<MinBftSilo>().Manifest.N);
                }
                silo.Configure<SiloOptions>(o => o.SiloName = effective?.FaultDomain is { } d
                    ? string.Create(CultureInfo.InvariantCulture, $"domain-{d}")
                    : "gateway");
            });
        }
        catch (Exception e) when (e is ArgumentException or InvalidDataException or IOException or InvalidOperationException)
        {
            // Bad options or manifest: say what is wrong, not a stack trace.
            await Console.Error.WriteLineAsync("silo: " + e.Message).ConfigureAwait(false);
            return 2;
        }

        // The HTTP endpoint binds the address the silo advertises (loopback in development).
        var httpAddress = advertised ?? (host.Clustering == SiloClustering.Redis ? IPAddress.Any : IPAddress.Loopback);
        string[] urls = [$"http://{new IPEndPoint(httpAddress, host.HttpPort ?? 0)}"];
        // The dashboard answers loopback callers only: on a specific address, listen on loopback too.
        if (host.Dashboard && !IPAddress.IsLoopback(httpAddress) && !httpAddress.Equals(IPAddress.Any))
            urls = [.. urls, $"http://{new IPEndPoint(IPAddress.Loopback, host.HttpPort ?? 0)}"];
        builder.WebHost.UseUrls(urls);
        await using var app = builder.Build();
        app.MapHealthChecks("/healthz", new HealthCheckOptions { ResponseWriter = HealthResponse.WriteAsync });
        app.MapPrometheusScrapingEndpoint("/metrics");
        if (host.Dashboard) app.MapMinBftDashboard(orleansDashboard: true);
        var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("MinBft.Silo");
        var storageDescription = effective?.FaultDomain is null
            ? "none"
            : effective.UseEmbeddedStorage
                ? effective.Storage == MinBftStorageKind.Redis ? "redis " + Redacted(effective.RedisStorage) : "sqlite in " + effective.DataDirectory
                : "registered by the host";
        logger.LogInformation(
            "Starting silo {Role}: silo port {SiloPort}, gateway port {GatewayPort}, {Clustering}, cluster {ClusterId}/{ServiceId}, manifest {Manifest}, storage {Storage}, usig={UsigMode}, transport={Transport}",
            effective?.FaultDomain is { } fd ? $"for fault domain {fd}" : "without fault domain (gateway/membership)",
            host.SiloPort, host.GatewayPort,
            host.Clustering == SiloClustering.Redis
                ? "redis clustering " + Redacted(host.RedisClustering)
                : "development clustering, primary silo " + (primary?.ToString() ?? "this silo"),
            host.ClusterId, host.ServiceId, effective?.ManifestPath ?? "(in code)", storageDescription,
            effective?.FaultDomain is null ? "none" : effective.Usig.SocketPath is { } socket ? $"{MinBftSilo.IsolatedUsigMode} (unix:{socket})" : MinBftSilo.InProcessUsigMode,
            app.Services.GetRequiredService<MinBftTransport>().Description);
        app.Lifetime.ApplicationStarted.Register(() => logger.LogInformation("HTTP endpoint: {Urls} (/healthz, /metrics{Dashboard})", string.Join(", ", app.Urls), host.Dashboard ? DashboardPaths : ""));
        try
        {
            await app.RunAsync(cancellationToken).ConfigureAwait(false);
            return 0;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return 0;
        }
    }

    /// <summary>A Redis connection string without its password, for logs.</summary>
    private static string Redacted(string? connectionString)
    {
        try
        {
            return StackExchange.Redis.ConfigurationOptions.Parse(connectionString ?? "").ToString(includePassword: false);
        }
        catch (ArgumentException)
        {
            return "(invalid)";
        }
    }

    private static async Task<int> RunLocalAsync(LocalClusterOptions options, TimeSpan interval, int? httpPort, bool dashboard, CancellationToken cancellationToken)
    {
        await using var cluster = new LocalCluster(options);
        var output = Console.Out;
        if (!options.FreshStart && cluster.HasExistingState)
        {
            // See Grains/Hosting/HOSTING.md, "Restarts": replicas rejoin by replay, which a
            // restarted primary cannot do yet, so a whole cluster restarted at once may stall.
            await Console.Error.WriteLineAsync(
                $"note: continuing from the replica stores in {cluster.DataDirectory}. Restarting a whole cluster is not "
                + "fully supported yet (a restarted primary halts on replay); if replicas report HALTED or requests time out, "
                + "run again with --reset for a fresh cluster.").ConfigureAwait(false);
        }
        Microsoft.AspNetCore.Builder.WebApplication? http = null;
        try
        {
            await cluster.StartAsync(cancellationToken).ConfigureAwait(false);
            http = await LocalHttpEndpoint.StartAsync(cluster, options, httpPort, dashboard, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return 130;
        }
        catch (Exception e) when (e is ArgumentException or InvalidDataException or IOException or InvalidOperationException)
        {
            await Console.Error.WriteLineAsync("local cluster: " + e.Message).ConfigureAwait(false);
            return 2;
        }

        await output.WriteLineAsync(
            $"local cluster: f={cluster.F} n={cluster.N} gateway={cluster.GatewayEndpoint} manifest={cluster.ManifestPath} data={cluster.DataDirectory} usig={cluster.UsigMode} transport={LocalCluster.Transport}")
            .ConfigureAwait(false);
        // Stopped (its Orleans client closed) before the cluster's silos stop.
        await using var stopHttp = new LocalHttpEndpoint.Stopper(http);
        await output.WriteLineAsync($"http: {string.Join(", ", http.Urls)} (/healthz, /metrics{(dashboard ? DashboardPaths : "")})").ConfigureAwait(false);
        await output.WriteLineAsync("Press Ctrl+C to stop.").ConfigureAwait(false);
        try
        {
            using var timer = new PeriodicTimer(interval);
            do
            {
                var statuses = await cluster.GetStatusesAsync(TimeSpan.FromSeconds(2), cancellationToken).ConfigureAwait(false);
                await output.WriteLineAsync(FormatStatusLine(statuses)).ConfigureAwait(false);
            }
            while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false));
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        await output.WriteLineAsync("stopping local cluster").ConfigureAwait(false);
        return 0;
    }

    /// <summary>One line: each replica's view, primary, executed batches and digest prefix, or "down";
    /// then where the USIGs run, as the replicas report it.</summary>
    public static string FormatStatusLine(IReadOnlyList<ReplicaStatus?> statuses)
    {
        var parts = statuses.Select((s, i) => s is null
            ? string.Create(CultureInfo.InvariantCulture, $"r{i} down")
            : string.Create(CultureInfo.InvariantCulture,
                $"r{i} view={s.View} primary={s.Primary} executed={s.ExecutedSequence} digest={Prefix(s.StateDigest)}{(s.Halted is null ? "" : " HALTED")}"));
        var modes = statuses.Where(s => s?.UsigMode is not null).Select(s => s!.UsigMode).Distinct().ToList();
        return string.Create(CultureInfo.InvariantCulture, $"{DateTime.Now:HH:mm:ss} status: ") + string.Join(" | ", parts)
            + (modes.Count == 0 ? "" : " | usig=" + string.Join(",", modes));
    }

    private static string Prefix(string digest) => digest.Length > 8 ? digest[..8] : digest;

    private static void ConfigureConsoleLogging(ILoggingBuilder logging)
    {
        logging.ClearProviders();
        logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss ";
        });
        // Orleans is chatty at Information; MinBFT's own messages are the interesting ones.
        logging.SetMinimumLevel(LogLevel.Information);
        logging.AddFilter("Orleans", LogLevel.Warning);
        logging.AddFilter("Microsoft", LogLevel.Warning);
        logging.AddFilter("Polly", LogLevel.Warning);
        // Several silos in one process trip the watchdog's start-up check; not actionable.
        logging.AddFilter("Orleans.Runtime.Watchdog", LogLevel.Error);
    }

    /// <summary>--state-machine: which sample service the replicas run; a bad value is a parse error listing the good ones.</summary>
    private static Option<string?> StateMachineOption()
    {
        var option = new Option<string?>("--state-machine")
        {
            Description = $"The replicated service: keyvalue (default) or ledger; configuration {MinBftOptions.SectionName}:{nameof(MinBftOptions.StateMachine)}. Every replica must run the same one",
        };
        option.AcceptOnlyFromAmong("keyvalue", "ledger");
        return option;
    }

    private const string DashboardPaths = ", " + DashboardEndpoints.StatusPath + ", " + DashboardEndpoints.OrleansDashboardPath + "/";

    private static Option<bool> DashboardOption() => new("--dashboard")
    {
        Description = $"Serve the MinBFT status page ({DashboardEndpoints.StatusPath}) and the Orleans dashboard ({DashboardEndpoints.OrleansDashboardPath}/) on the HTTP endpoint, to localhost only; configuration {SiloHostOptions.SectionName}:{nameof(SiloHostOptions.Dashboard)}",
    };

    private static MinBftStateMachineKind? ParseStateMachine(string? value) =>
        value is null ? null : Enum.Parse<MinBftStateMachineKind>(value, ignoreCase: true);

    private static Option<int?> PortOption(string name, string description, bool allowZero = false, params string[] aliases)
    {
        var option = new Option<int?>(name, aliases) { Description = description };
        option.Validators.Add(result =>
        {
            var value = result.GetValueOrDefault<int?>();
            if (value is { } port && (port > 65535 || port < (allowZero ? 0 : 1))) result.AddError($"{name} must be a port number");
        });
        return option;
    }

    private static IPEndPoint? ParseEndpoint(string text, System.CommandLine.Parsing.ArgumentResult result)
    {
        if (Endpoints.TryParse(text, out var endpoint)) return endpoint;
        result.AddError($"'{text}' is not host:port (an IP address or localhost)");
        return null;
    }
}
