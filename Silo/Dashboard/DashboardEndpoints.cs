using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Orleans.Dashboard;

namespace MinBft.Silo.Dashboard;

/// <summary>
/// The dashboard of a silo host's HTTP endpoint: the Orleans dashboard at <see cref="OrleansDashboardPath"/>
/// and the MinBFT status page at <see cref="StatusPath"/> (HTML) and <see cref="StatusJsonPath"/>.
/// Both answer loopback callers only: the Orleans dashboard has no authentication and shows
/// grain state and logs, so it must not be reachable from the network the silo advertises on.
/// </summary>
public static class DashboardEndpoints
{
    public const string OrleansDashboardPath = "/dashboard";
    public const string StatusPath = "/minbft";
    public const string StatusJsonPath = "/minbft/status.json";

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    /// <summary>The status reader for replicas 0..n-1 (n from <paramref name="replicas"/>) and the sampler behind the charts.</summary>
    public static IServiceCollection AddMinBftStatusPage(this IServiceCollection services, Func<IServiceProvider, int> replicas)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(replicas);
        services.AddSingleton(sp => new ReplicaStatusReader(sp.GetRequiredService<IGrainFactory>(), replicas(sp)));
        services.AddSingleton<ThroughputSampler>();
        services.AddHostedService(sp => sp.GetRequiredService<ThroughputSampler>());
        return services;
    }

    /// <summary>Maps the status page and, if its services were added (AddDashboard), the Orleans dashboard.</summary>
    public static void MapMinBftDashboard(this WebApplication app, bool orleansDashboard)
    {
        ArgumentNullException.ThrowIfNull(app);
        app.UseWhen(
            context => context.Request.Path.StartsWithSegments(StatusPath) || context.Request.Path.StartsWithSegments(OrleansDashboardPath),
            branch => branch.Use(async (context, next) =>
            {
                if (context.Connection.RemoteIpAddress is { } remote && !IPAddress.IsLoopback(remote))
                {
                    context.Response.StatusCode = StatusCodes.Status403Forbidden;
                    await context.Response.WriteAsync("the dashboard answers on localhost only\n", context.RequestAborted).ConfigureAwait(false);
                    return;
                }
                await next(context).ConfigureAwait(false);
            }));
        app.MapGet(StatusPath, async (HttpContext context, ReplicaStatusReader reader, ThroughputSampler sampler) =>
        {
            var replicas = await reader.ReadAsync(ReplicaStatusReader.DefaultTimeout, context.RequestAborted).ConfigureAwait(false);
            var html = StatusPage.Render(replicas, sampler.History(), DateTimeOffset.UtcNow, orleansDashboard);
            return Results.Content(html, "text/html; charset=utf-8");
        });
        app.MapGet(StatusJsonPath, async (HttpContext context, ReplicaStatusReader reader, ThroughputSampler sampler) =>
        {
            var replicas = await reader.ReadAsync(ReplicaStatusReader.DefaultTimeout, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(StatusDocument.Create(replicas, sampler.History(), DateTimeOffset.UtcNow), Json);
        });
        if (orleansDashboard) app.MapOrleansDashboard(OrleansDashboardPath);
    }
}

/// <summary>The body of <c>/minbft/status.json</c>: what the status page shows.</summary>
public sealed record StatusDocument(DateTimeOffset Time, int N, IReadOnlyList<ReplicaDocument> Replicas, IReadOnlyList<ThroughputSample> History)
{
    public static StatusDocument Create(IReadOnlyList<ReplicaReading> replicas, IReadOnlyList<ThroughputSample> history, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(replicas);
        return new(now, replicas.Count, [.. replicas.Select(ReplicaDocument.From)], history);
    }
}

/// <summary>One replica in <see cref="StatusDocument"/>; the status fields are null when it is unreachable.</summary>
public sealed record ReplicaDocument(
    int Replica, bool Reachable, string? Error, long? View, int? Primary, ulong? Executed, ulong? StableCheckpoint,
    ulong? UsigCounter, int? SentLog, IReadOnlyDictionary<string, long>? Rejections, string? Halted, bool? ViewChanging, string? UsigMode)
{
    public static ReplicaDocument From(ReplicaReading reading)
    {
        ArgumentNullException.ThrowIfNull(reading);
        var s = reading.Status;
        return new(reading.ReplicaId, s is not null, reading.Error, s?.View, s?.Primary, s?.ExecutedSequence, s?.StableCheckpoint,
            s?.LastUiCounter, s?.SentLogCount, s?.Rejections, s?.Halted, s?.ViewChanging, s?.UsigMode);
    }
}
