using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;

namespace MinBft.Hosting;

/// <summary>
/// The health of this silo's replica (Microsoft.Extensions.Diagnostics.HealthChecks): unhealthy
/// when it halted (or halted less than <see cref="MinBftHealthCheckOptions.UnhealthyAfterHaltFor"/>
/// ago), when its store or USIG has kept failing, or when it does not answer; degraded
/// during a view change, a state transfer, or while a durable write is being retried; healthy
/// otherwise. A silo without a fault domain (a gateway) holds no replica and is healthy.
/// Register it with <see cref="MinBftHealthCheckBuilderExtensions.AddMinBftReplica"/>.
/// </summary>
public sealed class MinBftHealthCheck(IGrainFactory grains, IOptions<MinBftHealthCheckOptions> options, MinBftSilo? silo = null) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        if (silo?.Options.FaultDomain is not { } domain) return HealthCheckResult.Healthy("gateway silo: no replica here");
        ReplicaStatus status;
        try
        {
            status = await grains.GetGrain<IReplicaGrain>(domain).GetStatusWithoutStateDigest().WaitAsync(options.Value.StatusTimeout, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            return HealthCheckResult.Unhealthy($"replica {domain} did not answer its status call: {e.Message}", e);
        }
        return Evaluate(status, options.Value);
    }

    /// <summary>The health a replica's status shows, with the default halt window.</summary>
    public static HealthCheckResult Evaluate(ReplicaStatus status, TimeSpan unhealthyAfterFailingFor) =>
        Evaluate(status, new MinBftHealthCheckOptions { UnhealthyAfterFailingFor = unhealthyAfterFailingFor });

    /// <summary>The health a replica's status shows (pure: tested state by state).</summary>
    public static HealthCheckResult Evaluate(ReplicaStatus status, MinBftHealthCheckOptions options)
    {
        ArgumentNullException.ThrowIfNull(status);
        ArgumentNullException.ThrowIfNull(options);
        var unhealthyAfterFailingFor = options.UnhealthyAfterFailingFor;
        var data = new Dictionary<string, object>
        {
            ["replica"] = status.ReplicaId,
            ["view"] = status.View,
            ["primary"] = status.Primary,
            ["executed"] = status.ExecutedSequence,
            ["stableCheckpoint"] = status.StableCheckpoint,
            ["usig"] = status.UsigMode ?? "",
        };
        var who = $"replica {status.ReplicaId} (view {status.View}, executed {status.ExecutedSequence})";
        if (status.Halted is { } reason) return HealthCheckResult.Unhealthy($"{who} halted: {reason}", data: data);
        // A halted replica deactivates at once and the next call (this check's own status call,
        // if nothing else) brings it back from its durable state: without this, a check would
        // almost never see a halt, not even a replica that halts again and again.
        if (status.LastHalt is { } last && status.SinceLastHalt < options.UnhealthyAfterHaltFor)
            return HealthCheckResult.Unhealthy($"{who} halted {status.SinceLastHalt.TotalSeconds:F0} s ago ({last}) and came back from its durable state", data: data);
        if (status.DurableFailingFor >= unhealthyAfterFailingFor)
            return HealthCheckResult.Unhealthy($"{who}: its store or USIG has been failing for {status.DurableFailingFor.TotalSeconds:F0} s", data: data);
        if (status.DurableFailingFor > TimeSpan.Zero)
            return HealthCheckResult.Degraded($"{who}: retrying a failed store or USIG write ({status.DurableFailingFor.TotalSeconds:F1} s)", data: data);
        if (status.ViewChanging) return HealthCheckResult.Degraded($"{who}: changing views", data: data);
        if (status.StateTransferInProgress) return HealthCheckResult.Degraded($"{who}: fetching state from its peers", data: data);
        // After a counter gap the replica sits out view changes: one more fault could stall them.
        if (status.ViewChangesWithheldUntil > status.StableCheckpoint)
            return HealthCheckResult.Degraded($"{who}: restarted after a USIG counter gap, it sends no VIEW-CHANGE until its stable checkpoint reaches {status.ViewChangesWithheldUntil}", data: data);
        return HealthCheckResult.Healthy(who, data);
    }
}

/// <summary>Options of <see cref="MinBftHealthCheck"/>.</summary>
public sealed class MinBftHealthCheckOptions
{
    /// <summary>A store or USIG write failing for this long makes the replica unhealthy (shorter: degraded).</summary>
    public TimeSpan UnhealthyAfterFailingFor { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// A replica that halted less than this long ago is unhealthy although it has come back from
    /// its durable state (a halted replica deactivates and is reactivated by the next call).
    /// </summary>
    public TimeSpan UnhealthyAfterHaltFor { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>How long the check waits for the replica's status.</summary>
    public TimeSpan StatusTimeout { get; set; } = TimeSpan.FromSeconds(5);
}

/// <summary>Registers <see cref="MinBftHealthCheck"/>.</summary>
public static class MinBftHealthCheckBuilderExtensions
{
    /// <summary>Adds the health check "minbft" of this silo's replica (see <see cref="MinBftHealthCheck"/>).</summary>
    public static IHealthChecksBuilder AddMinBftReplica(this IHealthChecksBuilder builder, Action<MinBftHealthCheckOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        if (configure is not null) builder.Services.Configure(configure);
        return builder.AddCheck<MinBftHealthCheck>("minbft", tags: ["minbft"]);
    }
}
