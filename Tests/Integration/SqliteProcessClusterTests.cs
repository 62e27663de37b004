using Xunit.Abstractions;

namespace MinBft.Tests.Integration;

/// <summary>
/// A cluster of separate processes without Redis: every fault domain on its embedded SQLite
/// store, development clustering through a membership silo process (the fault-domain silos
/// join it with <c>--primary-silo</c>; it is never killed), a client in the test process.
/// </summary>
[Collection(nameof(SeparateProcessCollection))]
public sealed class SqliteProcessClusterTests(ITestOutputHelper output)
{
    private static readonly TimeSpan StartBudget = TimeSpan.FromSeconds(100);

    // As in RedisProcessClusterTests: a base for load, kill, view change, restart and checks, plus
    // twice the measured start-up (as slow as the machine is now), at most MaxRunBudget.
    private static readonly TimeSpan RunBudget = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan MaxRunBudget = TimeSpan.FromSeconds(170);

    /// <summary>
    /// kill -9 of the primary's process under load (whichever replica is primary then): the two
    /// others change view and keep ordering, the killed silo restarts from its SQLite store and
    /// catches up, every acknowledged write reads back, and each domain's /healthz is Healthy.
    /// </summary>
    [Fact(Timeout = 300_000)]
    public async Task Sqlite_processes_kill_9_of_the_primary_under_load_the_view_changes_and_no_acknowledged_write_is_lost()
    {
        using var budget = new CancellationTokenSource(StartBudget);
        using var deployment = await ProcessDeployment.StartAsync(output, checkpointInterval: 8, watermark: 16, budget.Token, storage: ProcessStorage.Sqlite);
        var run = RunBudget + deployment.Startup * 2;
        budget.CancelAfter(run < MaxRunBudget ? run : MaxRunBudget);
        output.WriteLine($"started in {deployment.Startup.TotalSeconds:F1} s; budget for the rest: {(run < MaxRunBudget ? run : MaxRunBudget).TotalSeconds:F0} s");
        await deployment.RunKillAndRestartAsync(budget.Token, killPrimary: true);
    }
}
