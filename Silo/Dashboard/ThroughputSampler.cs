using System.Diagnostics.Metrics;
using Microsoft.Extensions.Hosting;
using MinBft.Hosting;

namespace MinBft.Silo.Dashboard;

/// <summary>One second of the cluster, as the chart shows it.</summary>
/// <param name="Time">When the sample was taken.</param>
/// <param name="RequestsPerSecond">Client requests executed per second (by the replica of this process that executed most; every replica executes every request).</param>
/// <param name="BatchesPerSecond">Batches executed per second (highest executed position over the answering replicas).</param>
/// <param name="CommitLatencyMs">Mean commit latency of the batches the primary committed in the interval; null if none (idle, or the primary is in another process).</param>
/// <param name="CommitLatencyMaxMs">Slowest commit of the interval; null if none.</param>
public sealed record ThroughputSample(DateTimeOffset Time, double RequestsPerSecond, double BatchesPerSecond, double? CommitLatencyMs, double? CommitLatencyMaxMs);

/// <summary>
/// Samples throughput and commit latency about once a second into a bounded history (the
/// last <see cref="HistoryLength"/> samples) for the status page's charts. Throughput and
/// latency come from the MinBft meter of this process (a <see cref="MeterListener"/>: every
/// silo of the process, whichever host created its meter); the executed positions from
/// <see cref="ReplicaStatusReader"/>, so batches per second counts replicas in other processes too.
/// </summary>
public sealed class ThroughputSampler : BackgroundService
{
    /// <summary>Five minutes at one sample a second.</summary>
    public const int HistoryLength = 300;

    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(1);

    private readonly ReplicaStatusReader _reader;
    private readonly TimeProvider _clock;
    private readonly MeterListener _listener = new();
    private readonly Lock _gate = new();
    private readonly Dictionary<int, long> _executedByReplica = [];
    private readonly Queue<ThroughputSample> _history = new();
    private double _latencySum;
    private long _latencyCount;
    private double _latencyMax;

    public ThroughputSampler(ReplicaStatusReader reader, TimeProvider? clock = null)
    {
        _reader = reader;
        _clock = clock ?? TimeProvider.System;
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == MinBftMetrics.MeterName && instrument.Name is "minbft.requests.executed" or "minbft.commit.latency")
                listener.EnableMeasurementEvents(instrument);
        };
        _listener.SetMeasurementEventCallback<long>(OnExecuted);
        _listener.SetMeasurementEventCallback<double>(OnCommitted);
        _listener.Start();
    }

    /// <summary>The samples, oldest first.</summary>
    public IReadOnlyList<ThroughputSample> History()
    {
        lock (_gate) return [.. _history];
    }

    public override void Dispose()
    {
        _listener.Dispose();
        base.Dispose();
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        long lastRequests = Requests();
        ulong? lastExecuted = null;
        var lastTime = _clock.GetUtcNow();
        using var timer = new PeriodicTimer(Interval, _clock);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                var readings = await _reader.ReadAsync(Interval, stoppingToken, stateDigest: false).ConfigureAwait(false);
                var now = _clock.GetUtcNow();
                var seconds = Math.Max((now - lastTime).TotalSeconds, 0.001);
                var executed = readings.Where(r => r.Reachable).Select(r => (ulong?)r.Status!.ExecutedSequence).Max();
                var requests = Requests();
                double? mean, max;
                lock (_gate)
                {
                    mean = _latencyCount == 0 ? null : _latencySum / _latencyCount;
                    max = _latencyCount == 0 ? null : _latencyMax;
                    (_latencySum, _latencyCount, _latencyMax) = (0, 0, 0);
                }
                // A replica that restarted (or no replica answering) must not show as negative throughput.
                var batches = executed is { } e && lastExecuted is { } l && e >= l ? (e - l) / seconds : 0;
                var sample = new ThroughputSample(now, Math.Max(requests - lastRequests, 0) / seconds, batches, mean, max);
                lock (_gate)
                {
                    _history.Enqueue(sample);
                    while (_history.Count > HistoryLength) _history.Dequeue();
                }
                (lastRequests, lastTime) = (requests, now);
                if (executed is not null) lastExecuted = executed;
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>Requests executed so far by the replica of this process that executed most.</summary>
    private long Requests()
    {
        lock (_gate) return _executedByReplica.Count == 0 ? 0 : _executedByReplica.Values.Max();
    }

    private void OnExecuted(Instrument instrument, long value, ReadOnlySpan<KeyValuePair<string, object?>> tags, object? state)
    {
        var replica = ReplicaOf(tags);
        lock (_gate) _executedByReplica[replica] = _executedByReplica.GetValueOrDefault(replica) + value;
    }

    private void OnCommitted(Instrument instrument, double milliseconds, ReadOnlySpan<KeyValuePair<string, object?>> tags, object? state)
    {
        lock (_gate)
        {
            _latencySum += milliseconds;
            _latencyCount++;
            _latencyMax = Math.Max(_latencyMax, milliseconds);
        }
    }

    private static int ReplicaOf(ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        foreach (var (key, value) in tags)
            if (key == "replica" && value is int replica) return replica;
        return -1;
    }
}
