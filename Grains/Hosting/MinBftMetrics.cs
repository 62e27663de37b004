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
        _batchSize = meter.CreateHistogram<int>("minbft.batch.size", "{request}", "Requests per executed batch");
        _usigLatency = meter.CreateHistogram<double>("minbft.usig.latency", "ms", "Time for the USIG to issue one batch of UIs, retries included");
        _storageLatency = meter.CreateHistogram<double>("minbft.storage.write.latency", "ms", "Time for one durable write (kind: log or checkpoint), retries included");
        _commitLatency = meter.CreateHistogram<double>("minbft.commit.latency", "ms", "At the primary: from sending a batch's PREPARE to executing the batch");
        _viewChanges = meter.CreateCounter<long>("minbft.view.changes", "{view}", "Views a replica moved past");
        _rejections = meter.CreateCounter<long>("minbft.rejections", "{input}", "Inputs rejected, by reason");
        _directoryRefusals = meter.CreateCounter<long>("minbft.directory.refused", "{entry}", "Grain directory entries of a fault domain's grain refused because the silo's certificate names another domain");
        _clientEvictions = meter.CreateCounter<long>("minbft.client.evictions", "{record}", "Client records evicted from the replicated table (beyond maxClientRecords)");
    }

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
