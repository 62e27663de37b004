using System.Globalization;

namespace MinBft.Client.Cli;

/// <summary>
/// What a bench phase cost: the CPU time of the replicas' silo processes (each counted once,
/// however many replicas it hosts) and of their isolated USIG programs (where the silos can see
/// them), the batches the replicas ordered, and the bench process's own CPU time. Read from
/// replica status calls before and after the phase.
/// </summary>
internal sealed record ClusterCost(IReadOnlyDictionary<string, TimeSpan> ProcessCpu, ulong Executed, TimeSpan ClientCpu)
{
    private static readonly TimeSpan StatusTimeout = TimeSpan.FromSeconds(5);

    /// <summary>Reads every replica's status; a replica that does not answer is left out.</summary>
    public static async Task<ClusterCost> SampleAsync(ClusterConnection cluster, CancellationToken cancellationToken)
    {
        var statuses = await Task.WhenAll(Enumerable.Range(0, cluster.Manifest.N).Select(async i =>
        {
            try
            {
                return await cluster.Client.GetGrain<IReplicaGrain>(i).GetStatus().WaitAsync(StatusTimeout, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                return null;
            }
        })).ConfigureAwait(false);
        return FromStatuses(statuses, Environment.CpuUsage.TotalTime);
    }

    /// <summary>The cost so far, from the replicas' statuses (null: did not answer).</summary>
    internal static ClusterCost FromStatuses(IEnumerable<ReplicaStatus?> statuses, TimeSpan clientCpu)
    {
        var cpu = new Dictionary<string, TimeSpan>(StringComparer.Ordinal);
        ulong executed = 0;
        foreach (var status in statuses)
        {
            if (status is null) continue;
            if (status.Process.Length > 0) cpu[status.Process] = status.ProcessCpu;
            // An isolated USIG program is part of the replica's cost too.
            if (status.UsigProcess.Length > 0) cpu[status.UsigProcess] = status.UsigProcessCpu;
            executed = Math.Max(executed, status.ExecutedSequence);
        }
        return new ClusterCost(cpu, executed, clientCpu);
    }

    /// <summary>The cost of the operations completed between two samples.</summary>
    public static PhaseCost Between(ClusterCost before, ClusterCost after, long operations)
    {
        TimeSpan? silos = null;
        foreach (var (process, cpu) in after.ProcessCpu)
        {
            if (!before.ProcessCpu.TryGetValue(process, out var start)) continue;
            silos = (silos ?? TimeSpan.Zero) + (cpu - start);
        }
        var batches = after.Executed > before.Executed ? after.Executed - before.Executed : 0;
        return new PhaseCost(operations, silos, batches, after.ClientCpu - before.ClientCpu);
    }
}

/// <summary>One phase's cost; null silo CPU when no replica answered both status calls.</summary>
internal sealed record PhaseCost(long Operations, TimeSpan? SiloCpu, ulong Batches, TimeSpan ClientCpu)
{
    public string Format() => string.Create(CultureInfo.InvariantCulture,
        $" cpu_ms_per_op={PerOperation(SiloCpu)} batch_avg={(Batches > 0 ? (Operations / (double)Batches).ToString("F1", CultureInfo.InvariantCulture) : "n/a")}");

    public string FormatClient() => string.Create(CultureInfo.InvariantCulture,
        $"bench client: cpu_ms_per_op={PerOperation(ClientCpu)} (the bench process itself, not counted above)");

    private string PerOperation(TimeSpan? cpu) =>
        cpu is { } c && Operations > 0 ? (c.TotalMilliseconds / Operations).ToString("F3", CultureInfo.InvariantCulture) : "n/a";
}
