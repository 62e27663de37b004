using Microsoft.Extensions.Configuration;
using MinBft.Hosting;
using OpenTelemetry;
using OpenTelemetry.Trace;

namespace MinBft.Silo;

/// <summary>The silo host's traces: the MinBft source and Orleans' grain-call sources.</summary>
public static class SiloTracing
{
    /// <summary>
    /// Records the <see cref="MinBftTracing.SourceName"/> spans and Orleans' own
    /// (<see cref="MinBftTracing.OrleansSources"/>; Orleans passes the trace context on only from
    /// a span of its own), and exports them over OTLP when the standard
    /// <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set, as the metrics do. <paramref name="configure"/>
    /// adds to the pipeline (tests: an in-memory exporter).
    /// </summary>
    public static OpenTelemetryBuilder WithMinBftTracing(this OpenTelemetryBuilder builder, IConfiguration configuration, Action<TracerProviderBuilder>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(configuration);
        return builder.WithTracing(tracing =>
        {
            tracing.AddSource(MinBftTracing.SourceName).AddSource([.. MinBftTracing.OrleansSources]);
            if (ExportsOtlp(configuration)) tracing.AddOtlpExporter();
            configure?.Invoke(tracing);
        });
    }

    /// <summary>True when the standard <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set: traces and metrics are pushed over OTLP.</summary>
    public static bool ExportsOtlp(IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        return !string.IsNullOrWhiteSpace(configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]);
    }

    /// <summary>
    /// <c>Silo local</c>'s traces: the pipeline of <see cref="WithMinBftTracing"/>, exported over
    /// OTLP, only when <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set; otherwise nothing listens to
    /// the sources, so no span is started (tracing costs throughput). One pipeline for the whole
    /// process: a tracer provider per silo would export every span once per silo. True if added.
    /// </summary>
    public static bool WithLocalClusterTracing(this OpenTelemetryBuilder builder, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(builder);
        if (!ExportsOtlp(configuration)) return false;
        builder.WithMinBftTracing(configuration);
        return true;
    }
}
