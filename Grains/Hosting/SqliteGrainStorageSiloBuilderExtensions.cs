using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans;
using Orleans.Configuration;
using Orleans.Hosting;
using Orleans.Runtime;
using Orleans.Serialization;
using Orleans.Serialization.Serializers;
using Orleans.Storage;

namespace MinBft.Hosting;

/// <summary>Registers <see cref="SqliteGrainStorage"/> on a silo.</summary>
public static class SqliteGrainStorageSiloBuilderExtensions
{
    /// <summary>The provider name MinBFT grains use for their state.</summary>
    public const string DefaultProviderName = "minbft";

    /// <summary>
    /// Adds a named grain storage provider backed by this silo's fault domain's SQLite file.
    /// The fault domain comes from <c>AddMinBftFaultDomain</c> unless the options set one.
    /// </summary>
    public static ISiloBuilder AddMinBftSqliteStorage(
        this ISiloBuilder builder,
        string name = DefaultProviderName,
        Action<SqliteGrainStorageOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentException.ThrowIfNullOrWhiteSpace(name);

        var services = builder.Services;
        var optionsBuilder = services.AddOptions<SqliteGrainStorageOptions>(name);
        if (configure is not null)
        {
            optionsBuilder.Configure(configure);
        }

        // Default the store's fault domain to the silo's, so each silo opens its own domain's file.
        optionsBuilder.PostConfigure<IOptions<FaultDomainOptions>>((options, faultDomain) =>
        {
            if (options.FaultDomain is null && faultDomain.Value.FaultDomain != FaultDomainOptions.Unset)
            {
                options.FaultDomain = faultDomain.Value.FaultDomain;
            }
        });
        services.ConfigureNamedOptionForLogging<SqliteGrainStorageOptions>(name);

        services.AddKeyedSingleton<IGrainStorage>(name, (sp, key) => new SqliteGrainStorage(
            name,
            sp.GetRequiredService<IOptionsMonitor<SqliteGrainStorageOptions>>().Get(name),
            new OrleansGrainStorageSerializer(sp.GetRequiredService<Serializer>()),
            sp.GetRequiredService<IActivatorProvider>(),
            sp.GetRequiredService<ILogger<SqliteGrainStorage>>()));

        // The silo subscribes every (unkeyed) lifecycle participant; this one opens the file at start.
        services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>>(
            sp => (ILifecycleParticipant<ISiloLifecycle>)sp.GetRequiredKeyedService<IGrainStorage>(name));
        return builder;
    }
}
