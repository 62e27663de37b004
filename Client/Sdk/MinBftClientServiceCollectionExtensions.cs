using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using MinBft.Hosting;
using MinBft.Encoding;
using Orleans.Configuration;
using Orleans.Hosting;

namespace MinBft.Client;

/// <summary>Registers <see cref="MinBftClient"/>, <see cref="KeyValueClient"/> and <see cref="LedgerClient"/>.</summary>
public static class MinBftClientServiceCollectionExtensions
{
    /// <summary>
    /// Adds the MinBFT client to an Orleans client. Options come from the configuration
    /// section <see cref="MinBftClientOptions.SectionName"/> ("MinBft:Client"), then
    /// <paramref name="configure"/>. The manifest is read when the client is first resolved.
    /// With <see cref="MinBftClientOptions.RedisClustering"/> set, the client also uses Orleans'
    /// Redis clustering (an invalid connection string throws <see cref="ArgumentException"/> now).
    /// With <see cref="MinBftClientOptions.Tracing"/>, adds Orleans' activity propagation (once),
    /// so that a request's trace continues from the SDK's span into the client proxy grain
    /// (<see cref="MinBftTracing"/>). When the manifest names a TLS CA, the client's connections
    /// are mutual TLS with <see cref="MinBftClientTlsOptions.CertificatePath"/> (see <see cref="MinBftClientTls"/>).
    /// </summary>
    public static IClientBuilder AddMinBftClient(this IClientBuilder builder, Action<MinBftClientOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.AddMinBftClient(configure);
        // Clustering and propagation are decided while the client is built, so these options are read now.
        var options = new MinBftClientOptions();
        builder.Configuration.GetSection(MinBftClientOptions.SectionName).Bind(options);
        configure?.Invoke(options);
        if (options.Tracing && !MinBftTracing.HasActivityPropagation(builder.Services)) builder.AddActivityPropagation();
        // The same deliberate bound as the silos (MessageLimits.MaxWireMessageBytes).
        builder.Configure<ClientMessagingOptions>(o => o.MaxMessageBodySize = MessageLimits.MaxWireMessageBytes);
        MinBftClientTls.Configure(builder, options);
        if (!string.IsNullOrWhiteSpace(options.RedisClustering))
            builder.UseMinBftRedisClustering(options.RedisClustering, $"{MinBftClientOptions.SectionName}:{nameof(MinBftClientOptions.RedisClustering)}");
        return builder;
    }

    /// <summary>
    /// Adds the MinBFT client to any container that has an <see cref="IGrainFactory"/> (an
    /// Orleans client, or a silo whose grains or services call the replicated service).
    /// </summary>
    public static IServiceCollection AddMinBftClient(this IServiceCollection services, Action<MinBftClientOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        var options = services.AddOptions<MinBftClientOptions>().BindConfiguration(MinBftClientOptions.SectionName);
        if (configure is not null) options.Configure(configure);
        services.TryAddSingleton(sp => new MinBftClient(
            sp.GetRequiredService<IGrainFactory>(),
            sp.GetRequiredService<IOptions<MinBftClientOptions>>(),
            sp.GetRequiredService<ILogger<MinBftClient>>()));
        services.TryAddSingleton(sp => new KeyValueClient(sp.GetRequiredService<MinBftClient>()));
        services.TryAddSingleton(sp => new LedgerClient(sp.GetRequiredService<MinBftClient>()));
        // Errors of the cluster's grains (a USIG that refuses to start, say) arrive with their message.
        services.AddMinBftExceptionSerialization();
        return services;
    }
}
