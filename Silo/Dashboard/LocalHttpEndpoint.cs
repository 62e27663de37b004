using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using MinBft.Hosting;
using OpenTelemetry.Metrics;
using Orleans.Configuration;
using Orleans.Dashboard;
using Orleans.Hosting;

namespace MinBft.Silo.Dashboard;

/// <summary>
/// The HTTP endpoint of <c>Silo local</c>: <c>/healthz</c> (one check per replica) and <c>/metrics</c>
/// (the MinBft meter of every silo in the process), and with the dashboard the MinBFT status page
/// and the Orleans dashboard. It is an Orleans client of the local cluster in the same process
/// (the Orleans dashboard's separate-host setup: the silos add the dashboard, this host serves it),
/// listening on loopback.
/// </summary>
public static class LocalHttpEndpoint
{
    /// <summary>Builds and starts it; the caller disposes it (after the cluster's silos are up, before they stop).</summary>
    public static async Task<WebApplication> StartAsync(LocalCluster cluster, LocalClusterOptions options, int? port, bool dashboard, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(cluster);
        ArgumentNullException.ThrowIfNull(options);
        var builder = Program.CreateWebHostBuilder();
        builder.Logging.ClearProviders();
        if (options.ConfigureLogging is { } logging) logging(builder.Logging);
        builder.WebHost.UseUrls($"http://{new IPEndPoint(IPAddress.Loopback, port ?? 0)}");
        // Every silo's gateway: the endpoint keeps working while some fault-domain silos are down.
        var gateways = Enumerable.Range(0, cluster.N + 1).Select(i => options.GatewayPort + i).ToArray();
        builder.UseOrleansClient(client =>
        {
            client.UseLocalhostClustering(gateways, options.ServiceId, options.ClusterId);
            if (dashboard) client.AddDashboard();
        });
        var health = builder.Services.AddHealthChecks();
        for (var i = 0; i < cluster.N; i++)
            health.AddTypeActivatedCheck<ReplicaHealthCheck>($"minbft-{i}", failureStatus: null, tags: ["minbft"], args: i);
        // The MinBft meter of every silo in the process; with OTEL_EXPORTER_OTLP_ENDPOINT set, it
        // and the traces of every silo are pushed over OTLP as well, as the per-domain host does.
        var telemetry = builder.Services.AddOpenTelemetry().WithMetrics(m =>
        {
            m.AddMeter(MinBftMetrics.MeterName).AddPrometheusExporter();
            if (SiloTracing.ExportsOtlp(builder.Configuration)) m.AddOtlpExporter();
        });
        telemetry.WithLocalClusterTracing(builder.Configuration);
        if (dashboard) builder.Services.AddMinBftStatusPage(_ => cluster.N);

        var app = builder.Build();
        try
        {
            app.MapHealthChecks("/healthz", new HealthCheckOptions { ResponseWriter = HealthResponse.WriteAsync });
            app.MapPrometheusScrapingEndpoint("/metrics");
            if (dashboard) app.MapMinBftDashboard(orleansDashboard: true);
            await app.StartAsync(cancellationToken).ConfigureAwait(false);
            return app;
        }
        catch
        {
            await app.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Stops the endpoint gracefully (its Orleans client leaves the cluster), then disposes it.</summary>
    public sealed class Stopper(WebApplication app) : IAsyncDisposable
    {
        /// <summary>The addresses it listens on.</summary>
        public ICollection<string> Urls => app.Urls;

        public async ValueTask DisposeAsync()
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            try
            {
                await app.StopAsync(timeout.Token).ConfigureAwait(false);
            }
            finally
            {
                await app.DisposeAsync().ConfigureAwait(false);
            }
        }
    }
}

/// <summary>The health of replica i, asked of it through the grain factory (the local endpoint's <c>minbft-i</c> checks).</summary>
internal sealed class ReplicaHealthCheck(int replica, IGrainFactory grains) : IHealthCheck
{
    private static readonly MinBftHealthCheckOptions Defaults = new();

    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        ReplicaStatus status;
        try
        {
            status = await grains.GetGrain<IReplicaGrain>(replica).GetStatus().WaitAsync(Defaults.StatusTimeout, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            return HealthCheckResult.Unhealthy($"replica {replica} did not answer its status call: {e.Message}", e);
        }
        return MinBftHealthCheck.Evaluate(status, Defaults);
    }
}
