using MinBft;

namespace MinBft.Silo.Dashboard;

/// <summary>One replica as the dashboard saw it: its status, or why it did not answer.</summary>
public sealed record ReplicaReading(int ReplicaId, ReplicaStatus? Status, string? Error)
{
    public bool Reachable => Status is not null;
}

/// <summary>
/// Reads <see cref="IReplicaGrain.GetStatus"/> of replicas 0..n-1 in parallel, each with a short
/// timeout: a replica that does not answer in time (its silo is down, it is busy) is shown as
/// unreachable instead of holding up the page.
/// </summary>
public sealed class ReplicaStatusReader(IGrainFactory grains, int replicas)
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(2);

    /// <summary>n, the number of replicas read.</summary>
    public int Replicas { get; } = replicas;

    public async Task<ReplicaReading[]> ReadAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        var reads = Enumerable.Range(0, Replicas).Select(async i =>
        {
            try
            {
                var status = await grains.GetGrain<IReplicaGrain>(i).GetStatus().WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
                return new ReplicaReading(i, status, null);
            }
            catch (TimeoutException)
            {
                return new ReplicaReading(i, null, $"no answer within {timeout.TotalSeconds:0.#} s");
            }
            catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                return new ReplicaReading(i, null, e.GetType().Name + ": " + e.Message);
            }
        });
        return await Task.WhenAll(reads).ConfigureAwait(false);
    }
}
