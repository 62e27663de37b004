using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using MinBft.Hosting.Journal;
using MinBft.Encoding;
using Orleans;
using Orleans.Configuration;
using Orleans.Hosting;
using Orleans.Runtime;
using Orleans.Runtime.GrainDirectory;
using Orleans.Runtime.MembershipService.SiloMetadata;

namespace MinBft.Hosting;

/// <summary>Adds MinBFT to a silo.</summary>
public static class MinBftSiloBuilderExtensions
{
    /// <summary>
    /// Adds MinBFT with options from the "MinBft" section of <paramref name="configuration"/>
    /// (pass the configuration root), then <paramref name="configure"/> if given.
    /// </summary>
    public static ISiloBuilder AddMinBft(this ISiloBuilder builder, IConfiguration configuration, Action<MinBftOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        return builder.AddMinBft(options =>
        {
            options.Bind(configuration);
            configure?.Invoke(options);
        });
    }

    /// <summary>
    /// Adds MinBFT to this silo:
    /// <list type="bullet">
    /// <item>with a <see cref="MinBftOptions.FaultDomain"/>: declares the silo's fault domain
    /// (fault-domain placement of replica and USIG i), and unless
    /// <see cref="MinBftOptions.UseEmbeddedStorage"/> is false, the grain storage "minbft" of
    /// <see cref="MinBftOptions.Storage"/>: SQLite in <see cref="MinBftOptions.DataDirectory"/>
    /// or the domain's Redis server <see cref="MinBftOptions.RedisStorage"/>, and the replica
    /// journal factory of the same store (<see cref="IReplicaJournalFactory"/>: journal files
    /// next to the storage file (a SQLite journal file where Linux's flock is missing), or records on the Redis server; over grain storage
    /// "minbft" when the host registers that itself); checks this
    /// domain's key files against the manifest when the silo starts;</item>
    /// <item>without one: a silo that hosts client proxies only (it still runs the placement
    /// director, since placement is decided on the silo that routes the first call);</item>
    /// <item>Orleans' strongly consistent grain directory (see
    /// <see cref="MinBftOptions.UseStronglyConsistentDirectory"/>);</item>
    /// <item>singletons: the options, the <see cref="ClusterManifest"/>, <see cref="MinBftSilo"/>
    /// (keys and crypto of this domain), an <see cref="IStateMachineFactory"/> (the sample of
    /// <see cref="MinBftOptions.StateMachine"/>, key-value by default; register your own to replace it) and the MinBFT clock (a
    /// <see cref="TimeProvider"/> keyed <see cref="MinBftSilo.ClockServiceKey"/>, default
    /// <see cref="TimeProvider.System"/>).</item>
    /// <item>Orleans' activity propagation, so that traces (<see cref="MinBftTracing"/>) follow grain calls.</item>
    /// <item>mutual TLS on every silo and gateway connection when the manifest names a TLS CA and
    /// <see cref="MinBftTlsOptions.Enabled"/> (the default), with this silo's certificate
    /// (<see cref="MinBftOptions.ResolveTlsCertificatePath"/>); see <see cref="MinBftTransport"/>.</item>
    /// </list>
    /// The options are evaluated once, here: the fault domain decides what gets registered.
    /// Invalid options or an invalid manifest throw now, before the silo starts.
    /// </summary>
    public static ISiloBuilder AddMinBft(this ISiloBuilder builder, Action<MinBftOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(configure);
        var options = new MinBftOptions();
        configure(options);
        options.Validate();
        // Chosen now so a bad value stops the silo before it starts.
        var stateMachineFactory = MinBftStateMachines.CreateFactory(options.StateMachine);
        var manifest = options.Manifest ?? ClusterManifest.Load(options.ManifestPath!);
        options.Manifest = manifest;
        if (options.FaultDomain is { } domain && domain >= manifest.N)
            throw new ArgumentException($"{MinBftOptions.SectionName}:{nameof(MinBftOptions.FaultDomain)} {domain} is not a replica of this {manifest.N}-replica cluster");
        // The local knobs must fit the cluster's constants (e.g. in-flight batches within the watermark).
        options.ToProtocolSettings(manifest, options.FaultDomain ?? 0);
        // Mutual TLS when the manifest names a CA (MinBftOptions.Tls); a missing or foreign certificate throws now.
        var transport = MinBftSiloTls.Configure(builder, options, manifest);

        if (options.FaultDomain is { } faultDomain)
        {
            builder.AddMinBftFaultDomain(faultDomain);
            if (options.UseEmbeddedStorage && options.Storage == MinBftStorageKind.Redis)
            {
                builder.AddMinBftRedisStorage(options.RedisStorage!);
                builder.AddMinBftRedisJournal(options.RedisStorage!);
            }
            else if (options.UseEmbeddedStorage)
            {
                builder.AddMinBftSqliteStorage(
                    SqliteGrainStorageSiloBuilderExtensions.DefaultProviderName,
                    storage => storage.DataDirectory = options.DataDirectory);
                // A plain file costs less per write than a SQLite transaction; it needs Linux's flock.
                if (OperatingSystem.IsLinux())
                    builder.AddMinBftFileJournal(journal => journal.DataDirectory = options.DataDirectory);
                else
                    builder.AddMinBftSqliteJournal(journal => journal.DataDirectory = options.DataDirectory);
            }
            else
            {
                // The host registers grain storage "minbft" itself (memory storage in tests).
                builder.AddMinBftGrainStorageJournal();
            }
        }
        else
        {
            // No fault domain: no metadata entry (placement never picks this silo for a
            // replica), but the director must exist here for calls routed through this silo.
            builder.UseSiloMetadata(new Dictionary<string, string>());
            builder.AddPlacementDirector<FaultDomainPlacement, FaultDomainPlacementDirector>();
        }

        if (options.UseStronglyConsistentDirectory)
        {
            // See MinBftOptions.UseStronglyConsistentDirectory. Experimental in Orleans 10.
#pragma warning disable ORLEANSEXP003
            builder.AddDistributedGrainDirectory();
#pragma warning restore ORLEANSEXP003
            // With mutual TLS, fault-domain grains are found only on silos whose certificate
            // proves their domain (FaultDomainGrainDirectory); it wraps the directory above.
            if (transport.IsMutualTls) builder.Services.AddSingleton<IGrainDirectoryResolver, FaultDomainGrainDirectoryResolver>();
        }

        // Trace context across grain calls (MinBftTracing), when asked for (it costs every call);
        // once, whoever else adds it.
        if (options.Tracing && !MinBftTracing.HasActivityPropagation(builder.Services)) builder.AddActivityPropagation();

        // Deliberately, not Orleans' default: every protocol message fits (see
        // MessageLimits.MaxWireMessageBytes), and nothing larger is read off a connection.
        builder.Configure<SiloMessagingOptions>(o => o.MaxMessageBodySize = MessageLimits.MaxWireMessageBytes);

        var services = builder.Services;
        services.AddSingleton(options);
        services.AddSingleton<IOptions<MinBftOptions>>(Options.Create(options));
        services.AddSingleton(manifest);
        services.AddSingleton(transport);
        services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>, MinBftTransportLog>();
        services.TryAddKeyedSingleton(MinBftSilo.ClockServiceKey, TimeProvider.System);
        services.TryAddSingleton(stateMachineFactory);
        // A USIG's or the core's refusal reaches the caller as itself, not as a codec error.
        services.AddMinBftExceptionSerialization();
        services.AddMetrics();
        services.TryAddSingleton<MinBftMetrics>();
        services.AddSingleton(sp => new MinBftSilo(
            options, manifest, sp.GetRequiredKeyedService<TimeProvider>(MinBftSilo.ClockServiceKey)));
        if (options.FaultDomain is not null)
            services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>, MinBftKeyCheck>();
        return builder;
    }

    /// <summary>
    /// A silo without a fault domain that hosts client proxies (a gateway or membership-only
    /// silo): the same as <c>AddMinBft</c> with only the manifest set.
    /// </summary>
    public static ISiloBuilder AddMinBftGateway(this ISiloBuilder builder, ClusterManifest manifest, Action<MinBftOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        return builder.AddMinBft(options =>
        {
            options.Manifest = manifest;
            configure?.Invoke(options);
            options.FaultDomain = null;
        });
    }
}

/// <summary>
/// Loads this fault domain's keys while the silo starts, so that a missing key file or a key
/// that does not match the manifest stops the silo with a clear error instead of failing the
/// first replica activation minutes later.
/// </summary>
internal sealed partial class MinBftKeyCheck(MinBftSilo silo, ILogger<MinBftKeyCheck> logger) : ILifecycleParticipant<ISiloLifecycle>
{
    public void Participate(ISiloLifecycle lifecycle) =>
        lifecycle.Subscribe(nameof(MinBftKeyCheck), ServiceLifecycleStage.RuntimeInitialize, _ =>
        {
            var domain = silo.FaultDomain!.Value;
            silo.LoadSigningKey(domain);
            // An isolated USIG's key is the USIG program's alone: the silo does not even look.
            if (!silo.UsigIsolated) silo.LoadUsigCertifier(domain);
            LogKeysChecked(logger, domain, silo.Manifest.N, ClusterManifest.SchemeName(silo.Manifest.UsigScheme),
                silo.UsigMode + (silo.UsigIsolated ? " at " + silo.Options.Usig.Endpoint : ""));
            return Task.CompletedTask;
        });

    [LoggerMessage(Level = LogLevel.Information, Message = "MinBFT fault domain {FaultDomain}: keys match the manifest ({N} replicas, USIG scheme {Scheme}); usig={UsigMode}")]
    private static partial void LogKeysChecked(ILogger logger, int faultDomain, int n, string scheme, string usigMode);
}
