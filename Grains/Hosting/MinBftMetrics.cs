using System.Diagnostics.Metrics;

namespace MinBft.Hosting;

/// <summary>
/// The <c>MinBft</c> meter: what the replicas of this silo do, tagged with the replica id.
/// Read it with <c>dotnet-counters monitor -n MinBft.Silo --counters MinBft</c> or any
/// OpenTelemetry pipeline that adds the meter <see cref="MeterName"/>.
/// </summary>
public sealed class MinBftMetrics
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "MinBft";

    private readonly Counter<long> _requestsExecuted;
    private readonly Histogram<int> _batchSize;
    private readonly Histogram<double> _usigLatency;
    private readonly Histogram<double> _storageLatency;
    private readonly Histogram<double> _commitLatency;
    private readonly Counter<long> _viewChanges;
    private readonly Counter<long> _rejections;
    private readonly Counter<long> _clientEvictions;
    private readonly Counter<long> _directoryRefusals;

    /// <summary>Creates the instruments on a meter from <paramref name="meters"/> (one per silo's services).</summary>
    public MinBftMetrics(IMeterFactory meters)
    {
        ArgumentNullException.ThrowIfNull(meters);
        var meter = Meter = meters.Create(MeterName);
        _requestsExecuted = meter.CreateCounter<long>("minbft.requests.executed", "{request}", "Client requests executed (each replica counts its own)");
        _batchSize = meter.CreateHistogram("minbft.batch.size", "{request}", "Requests per executed batch",
            advice: new InstrumentAdvice<int> { HistogramBucketBoundaries = BatchSizeBuckets });
        var latency = new InstrumentAdvice<double> { HistogramBucketBoundaries = LatencyBucketsMs };
        _usigLatency = meter.CreateHistogram("minbft.usig.latency", "ms", "Time for the USIG to issue one batch of UIs, retries included", advice: latency);
        _storageLatency = meter.CreateHistogram("minbft.storage.write.latency", "ms", "Time for one durable write (kind: log or checkpoint), retries included", advice: latency);
        _commitLatency = meter.CreateHistogram("minbft.commit.latency", "ms", "At the primary: from sending a batch's PREPARE to executing the batch", advice: latency);
        _viewChanges = meter.CreateCounter<long>("minbft.view.changes", "{view}", "Views a replica moved past");
        _rejections = meter.CreateCounter<long>("minbft.rejections", "{input}", "Inputs rejected, by reason");
        _directoryRefusals = meter.CreateCounter<long>("minbft.directory.refused", "{entry}", "Grain directory entries of a fault domain's grain refused because the silo's certificate names another domain");
        _clientEvictions = meter.CreateCounter<long>("minbft.client.evictions", "{record}", "Client records evicted from the replicated table (beyond maxClientRecords)");
    }

    /// <summary>
    /// Bucket bounds (ms) advised for the latency histograms. A synced write takes 0.1-0.5 ms and a
    /// batch commits in 1-20 ms, where OpenTelemetry's default bounds (0, 5, 10, 25, ... ms) would
    /// put nearly every sample into one bucket; retries and view changes reach seconds.
    /// </summary>
    public static readonly IReadOnlyList<double> LatencyBucketsMs =
        [0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10, 15, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];

    /// <summary>Bucket bounds advised for batch sizes: powers of two up to the largest batch (1,024 requests).</summary>
    public static readonly IReadOnlyList<int> BatchSizeBuckets = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

    /// <summary>This silo's meter (a listener can tell silos of one process apart by it).</summary>
    public Meter Meter { get; }

    internal void Executed(int replica, int requests)
    {
        var tag = ReplicaTag(replica);
        _requestsExecuted.Add(requests, tag);
        _batchSize.Record(requests, tag);
    }

    internal void UsigIssued(int replica, TimeSpan took) => _usigLatency.Record(took.TotalMilliseconds, ReplicaTag(replica));

    internal void StorageWritten(int replica, string kind, TimeSpan took) =>
        _storageLatency.Record(took.TotalMilliseconds, ReplicaTag(replica), new KeyValuePair<string, object?>("kind", kind));

    internal void Committed(int replica, TimeSpan took) => _commitLatency.Record(took.TotalMilliseconds, ReplicaTag(replica));

    internal void ViewChanged(int replica, long views) => _viewChanges.Add(views, ReplicaTag(replica));

    internal void Rejected(int replica, string reason) =>
        _rejections.Add(1, ReplicaTag(replica), new KeyValuePair<string, object?>("reason", reason));

    internal void ClientsEvicted(int replica, long records) => _clientEvictions.Add(records, ReplicaTag(replica));

    internal void DirectoryEntryRefused() => _directoryRefusals.Add(1);

    private static KeyValuePair<string, object?> ReplicaTag(int replica) => new("replica", replica);
}
