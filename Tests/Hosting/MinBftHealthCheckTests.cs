using Microsoft.Extensions.Diagnostics.HealthChecks;
using MinBft.Hosting;

namespace MinBft.Tests.Hosting;

/// <summary>The health a replica's status maps to, state by state (issue 12: /healthz).</summary>
public sealed class MinBftHealthCheckTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(10);

    private static ReplicaStatus Running() => new(0, 3, 0, 42, "", new Dictionary<string, long>(), 0, 0, 0, 7, 0, 0, null, "", 40, "isolated");

    [Fact]
    public void A_running_replica_is_healthy_and_says_where_it_is()
    {
        var result = MinBftHealthCheck.Evaluate(Running(), Limit);
        Assert.Equal(HealthStatus.Healthy, result.Status);
        Assert.Contains("view 3, executed 42", result.Description, StringComparison.Ordinal);
        Assert.Equal(40UL, result.Data["stableCheckpoint"]);
    }

    [Fact]
    public void A_view_change_or_a_state_transfer_is_degraded()
    {
        Assert.Equal(HealthStatus.Degraded, MinBftHealthCheck.Evaluate(Running() with { ViewChanging = true }, Limit).Status);
        var transfer = MinBftHealthCheck.Evaluate(Running() with { StateTransferInProgress = true }, Limit);
        Assert.Equal(HealthStatus.Degraded, transfer.Status);
        Assert.Contains("fetching state", transfer.Description, StringComparison.Ordinal);
    }

    [Fact]
    public void A_replica_withholding_view_changes_after_a_counter_gap_is_degraded_until_its_checkpoint_catches_up()
    {
        var withholding = MinBftHealthCheck.Evaluate(Running() with { StableCheckpoint = 10, ViewChangesWithheldUntil = 12 }, Limit);
        Assert.Equal(HealthStatus.Degraded, withholding.Status);
        Assert.Contains("no VIEW-CHANGE until its stable checkpoint reaches 12", withholding.Description, StringComparison.Ordinal);
        Assert.Equal(HealthStatus.Healthy, MinBftHealthCheck.Evaluate(Running() with { StableCheckpoint = 12, ViewChangesWithheldUntil = 12 }, Limit).Status);
    }

    [Fact]
    public void A_store_or_USIG_write_failing_briefly_is_degraded_and_for_long_unhealthy()
    {
        var brief = MinBftHealthCheck.Evaluate(Running() with { DurableFailingFor = TimeSpan.FromSeconds(1) }, Limit);
        Assert.Equal(HealthStatus.Degraded, brief.Status);
        var longer = MinBftHealthCheck.Evaluate(Running() with { DurableFailingFor = Limit }, Limit);
        Assert.Equal(HealthStatus.Unhealthy, longer.Status);
        Assert.Contains("failing for 10 s", longer.Description, StringComparison.Ordinal);
    }

    [Fact]
    public void A_halted_replica_is_unhealthy_whatever_else_it_shows()
    {
        var result = MinBftHealthCheck.Evaluate(Running() with { Halted = "another activation of this replica wrote its log", ViewChanging = true }, Limit);
        Assert.Equal(HealthStatus.Unhealthy, result.Status);
        Assert.Contains("halted: another activation", result.Description, StringComparison.Ordinal);
    }

    [Fact]
    public void A_replica_that_halted_recently_is_unhealthy_though_it_came_back_and_healthy_after_the_window()
    {
        var options = new MinBftHealthCheckOptions { UnhealthyAfterHaltFor = TimeSpan.FromMinutes(1) };
        var back = Running() with { LastHalt = "another activation of this replica wrote its log", SinceLastHalt = TimeSpan.FromSeconds(5) };
        var recent = MinBftHealthCheck.Evaluate(back, options);
        Assert.Equal(HealthStatus.Unhealthy, recent.Status);
        Assert.Contains("halted 5 s ago (another activation of this replica wrote its log)", recent.Description, StringComparison.Ordinal);
        Assert.Equal(HealthStatus.Healthy, MinBftHealthCheck.Evaluate(back with { SinceLastHalt = TimeSpan.FromMinutes(1) }, options).Status);
        // The window is the default one with the older overload.
        Assert.Equal(HealthStatus.Unhealthy, MinBftHealthCheck.Evaluate(back, Limit).Status);
    }
}
