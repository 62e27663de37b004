using System.Diagnostics.Metrics;
using MinBft.Hosting;
using OpenTelemetry;
using OpenTelemetry.Metrics;

namespace MinBft.Tests.Hosting;

/// <summary>The <c>MinBft</c> meter's histograms as an OpenTelemetry pipeline (the Prometheus
/// endpoint's, or OTLP) exports them: with buckets fine enough for what they time.</summary>
public sealed class MinBftMetricsTests
{
    [Fact]
    public void Latency_histograms_export_sub_millisecond_buckets_and_batch_sizes_powers_of_two()
    {
        // A meter version of this test's own: clusters of other tests in this process record
        // into MinBft meters of their own at the same time.
        var version = Guid.NewGuid().ToString("N");
        using var meters = new VersionedMeterFactory(version);
        var exported = new List<Metric>();
        using var provider = Sdk.CreateMeterProviderBuilder().AddMeter(MinBftMetrics.MeterName).AddInMemoryExporter(exported).Build();
        var metrics = new MinBftMetrics(meters);
        metrics.UsigIssued(0, TimeSpan.FromMilliseconds(0.25));
        metrics.UsigIssued(0, TimeSpan.FromMilliseconds(0.26));
        metrics.StorageWritten(0, "log", TimeSpan.FromMilliseconds(0.15));
        metrics.Committed(0, TimeSpan.FromMilliseconds(1.8));
        metrics.Executed(0, 30);
        provider.ForceFlush();
        var ours = exported.Where(m => m.MeterVersion == version).ToDictionary(m => m.Name);

        // Each sample lands in the bucket that tells it apart, not in OpenTelemetry's default 0-5 ms.
        Assert.Equal((0.2, 0.3, 2L), OnlyFilledBucket(ours["minbft.usig.latency"]));
        Assert.Equal((0.1, 0.2, 1L), OnlyFilledBucket(ours["minbft.storage.write.latency"]));
        Assert.Equal((1.5, 2.0, 1L), OnlyFilledBucket(ours["minbft.commit.latency"]));
        Assert.Equal((16.0, 32.0, 1L), OnlyFilledBucket(ours["minbft.batch.size"]));
        Assert.Equal([.. MinBftMetrics.LatencyBucketsMs, double.PositiveInfinity], Bounds(ours["minbft.usig.latency"]));
    }

    private static (double Above, double AtMost, long Count) OnlyFilledBucket(Metric metric)
    {
        var filled = new List<(double, double, long)>();
        foreach (ref readonly var point in metric.GetMetricPoints())
        {
            var below = double.NegativeInfinity;
            foreach (var bucket in point.GetHistogramBuckets())
            {
                if (bucket.BucketCount > 0) filled.Add((below, bucket.ExplicitBound, bucket.BucketCount));
                below = bucket.ExplicitBound;
            }
        }
        return Assert.Single(filled);
    }

    private static double[] Bounds(Metric metric)
    {
        var bounds = new List<double>();
        foreach (ref readonly var point in metric.GetMetricPoints())
        {
            foreach (var bucket in point.GetHistogramBuckets()) bounds.Add(bucket.ExplicitBound);
            break;
        }
        return [.. bounds];
    }

    private sealed class VersionedMeterFactory(string version) : IMeterFactory
    {
        private readonly List<Meter> _created = [];

        public Meter Create(MeterOptions options)
        {
            var meter = new Meter(new MeterOptions(options.Name) { Version = version, Scope = this });
            _created.Add(meter);
            return meter;
        }

        public void Dispose()
        {
            foreach (var meter in _created) meter.Dispose();
        }
    }
}
