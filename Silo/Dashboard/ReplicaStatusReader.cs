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

    /// <param name="stateDigest">Whether each status carries the service's state digest, which costs
    /// the replica an encoding of its state after any change (the page shows it; the sampler does not need it).</param>
    public async Task<ReplicaReading[]> ReadAsync(TimeSpan timeout, CancellationToken cancellationToken, bool stateDigest = true)
    {
        var reads = Enumerable.Range(0, Replicas).Select(async i =>
        {
            try
            {
                var replica = grains.GetGrain<IReplicaGrain>(i);
                var status = await (stateDigest ? replica.GetStatus() : replica.GetStatusWithoutStateDigest()).WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
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
