using MinBft.Hosting;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;

namespace MinBft.Client.Cli;

/// <summary>
/// The demo's traces and metrics, exported over OTLP when the standard
/// <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set, as <c>Silo local</c> does: one tracer provider
/// for the process (the demo's silos and its client all run here, and a provider per silo would
/// export each span once per silo). Unset, nothing starts and nothing listens to the sources,
/// so no span is made (tracing costs throughput).
/// </summary>
internal sealed class DemoTelemetry : IDisposable
{
    private readonly TracerProvider _traces;
    private readonly MeterProvider _metrics;

    private DemoTelemetry()
    {
        _traces = Sdk.CreateTracerProviderBuilder()
            .AddSource(MinBftTracing.SourceName)
            .AddSource([.. MinBftTracing.OrleansSources])
            .AddOtlpExporter()
            .Build();
        _metrics = Sdk.CreateMeterProviderBuilder().AddMeter(MinBftMetrics.MeterName).AddOtlpExporter().Build();
    }

    /// <summary>The exporters if <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set, else null.</summary>
    public static DemoTelemetry? StartIfConfigured() =>
        string.IsNullOrWhiteSpace(Environment.GetEnvironmentVariable("OTEL_EXPORTER_OTLP_ENDPOINT")) ? null : new DemoTelemetry();

    /// <summary>Flushes what is buffered (the last spans of the run) and stops.</summary>
    public void Dispose()
    {
        _traces.ForceFlush(5_000);
        _metrics.ForceFlush(5_000);
        _traces.Dispose();
        _metrics.Dispose();
    }
}
