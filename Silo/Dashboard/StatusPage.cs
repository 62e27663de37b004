using System.Globalization;
using System.Net;
using System.Text;

namespace MinBft.Silo.Dashboard;

/// <summary>
/// The HTML of <c>/minbft</c>, rendered on the server: a table of the replicas and two inline
/// SVG charts. No script and nothing from another site (the machines it runs on may have no
/// internet); the page reloads itself every few seconds.
/// </summary>
public static class StatusPage
{
    public const int RefreshSeconds = 2;

    private const int ChartWidth = 560;
    private const int ChartHeight = 150;
    private const int Left = 48;
    private const int Bottom = 20;

    public static string Render(IReadOnlyList<ReplicaReading> replicas, IReadOnlyList<ThroughputSample> history, DateTimeOffset now, bool orleansDashboard)
    {
        ArgumentNullException.ThrowIfNull(replicas);
        ArgumentNullException.ThrowIfNull(history);
        var html = new StringBuilder(8192);
        html.Append(CultureInfo.InvariantCulture, $$"""
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta http-equiv="refresh" content="{{RefreshSeconds}}">
            <title>MinBFT status</title>
            <style>
            body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
            table { border-collapse: collapse; margin-bottom: 1.5em; }
            th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
            th { background: #f0f0f0; }
            td.text { text-align: left; }
            tr.unreachable td { color: #a00; background: #fff4f4; }
            tr.halted td { background: #fff0d0; }
            .charts { display: flex; flex-wrap: wrap; gap: 1.5em; }
            figure { margin: 0; }
            figcaption { font-weight: 600; margin-bottom: 0.3em; }
            svg text { font-size: 11px; fill: #555; }
            .muted { color: #777; }
            </style>
            </head>
            <body>
            <h1>MinBFT status</h1>
            <p class="muted">n = {{replicas.Count}}, read {{now.ToUniversalTime():yyyy-MM-dd HH:mm:ss}} UTC; this page reloads every {{RefreshSeconds}} s.
            JSON: <a href="/minbft/status.json">/minbft/status.json</a>{{(orleansDashboard ? " &middot; Orleans dashboard: <a href=\"/dashboard/\">/dashboard/</a>" : "")}}</p>
            <table id="replicas">
            <thead><tr><th>replica</th><th>state</th><th>view</th><th>primary</th><th>executed</th><th>stable checkpoint</th><th>USIG counter</th><th>sent log</th><th>rejections</th><th>halted</th></tr></thead>
            <tbody>

            """);
        foreach (var replica in replicas)
        {
            if (replica.Status is not { } s)
            {
                html.Append(CultureInfo.InvariantCulture,
                    $"<tr id=\"replica-{replica.ReplicaId}\" class=\"unreachable\"><td>{replica.ReplicaId}</td><td class=\"state text\">unreachable</td><td colspan=\"8\" class=\"text\">{Encode(replica.Error)}</td></tr>\n");
                continue;
            }
            var state = s.Halted is not null ? "halted"
                : s.ViewChanging ? "changing view"
                : s.StateTransferInProgress ? "state transfer"
                : s.Primary == s.ReplicaId ? "primary" : "backup";
            var rejections = s.Rejections.Count == 0
                ? "none"
                : string.Join(", ", s.Rejections.OrderBy(r => r.Key, StringComparer.Ordinal).Select(r => string.Create(CultureInfo.InvariantCulture, $"{Encode(r.Key)}: {r.Value}")));
            html.Append(CultureInfo.InvariantCulture,
                $"<tr id=\"replica-{replica.ReplicaId}\"{(s.Halted is null ? "" : " class=\"halted\"")}><td>{replica.ReplicaId}</td><td class=\"state text\">{state}</td>"
                + $"<td class=\"view\">{s.View}</td><td class=\"primary\">{s.Primary}</td><td class=\"executed\">{s.ExecutedSequence}</td>"
                + $"<td class=\"checkpoint\">{s.StableCheckpoint}</td><td class=\"usig\">{s.LastUiCounter}</td><td class=\"sentlog\">{s.SentLogCount}</td>"
                + $"<td class=\"rejections text\">{rejections}</td><td class=\"halted text\">{Encode(s.Halted ?? "")}</td></tr>\n");
        }
        html.Append("</tbody>\n</table>\n<div class=\"charts\">\n");
        var span = TimeSpan.FromSeconds(ThroughputSampler.HistoryLength * ThroughputSampler.Interval.TotalSeconds);
        AppendChart(html, "throughput", "Throughput (executed per second)", history, now, span,
            [new Series(s => s.RequestsPerSecond, "#2a6fdb", "requests", "/s"), new Series(s => s.BatchesPerSecond, "#999", "batches", "/s")]);
        AppendChart(html, "latency", "Commit latency at the primary (ms)", history, now, span,
            [new Series(s => s.CommitLatencyMs, "#d9480f", "mean", " ms"), new Series(s => s.CommitLatencyMaxMs, "#f4a582", "max", " ms")]);
        html.Append("</div>\n</body>\n</html>\n");
        return html.ToString();
    }

    private sealed record Series(Func<ThroughputSample, double?> Value, string Colour, string Label, string Unit);

    private static void AppendChart(StringBuilder html, string id, string caption, IReadOnlyList<ThroughputSample> history, DateTimeOffset now, TimeSpan span, Series[] series)
    {
        var values = series.SelectMany(s => history.Select(s.Value)).OfType<double>().ToList();
        var top = NiceCeiling(values.Count == 0 ? 1 : Math.Max(values.Max(), 1e-9));
        var plotWidth = ChartWidth - Left - 8;
        var plotHeight = ChartHeight - Bottom - 8;
        double X(DateTimeOffset t) => Left + plotWidth * Math.Clamp(1 - (now - t).TotalSeconds / span.TotalSeconds, 0, 1);
        double Y(double v) => 8 + plotHeight * (1 - Math.Clamp(v / top, 0, 1));

        html.Append(CultureInfo.InvariantCulture, $"<figure id=\"{id}\"><figcaption>{Encode(caption)}</figcaption>\n");
        html.Append(CultureInfo.InvariantCulture, $"<svg width=\"{ChartWidth}\" height=\"{ChartHeight}\" viewBox=\"0 0 {ChartWidth} {ChartHeight}\" role=\"img\" aria-label=\"{Encode(caption)}\">\n");
        html.Append(CultureInfo.InvariantCulture, $"<rect x=\"{Left}\" y=\"8\" width=\"{plotWidth}\" height=\"{plotHeight}\" fill=\"#fafafa\" stroke=\"#ccc\"/>\n");
        foreach (var fraction in new[] { 0.5, 1.0 })
        {
            var y = Y(top * fraction);
            html.Append(CultureInfo.InvariantCulture, $"<line x1=\"{Left}\" y1=\"{y:0.#}\" x2=\"{Left + plotWidth}\" y2=\"{y:0.#}\" stroke=\"#e4e4e4\"/>");
            html.Append(CultureInfo.InvariantCulture, $"<text x=\"{Left - 4}\" y=\"{y + 4:0.#}\" text-anchor=\"end\">{Format(top * fraction)}</text>\n");
        }
        html.Append(CultureInfo.InvariantCulture, $"<text x=\"{Left - 4}\" y=\"{Y(0) + 4:0.#}\" text-anchor=\"end\">0</text>");
        html.Append(CultureInfo.InvariantCulture, $"<text x=\"{Left}\" y=\"{ChartHeight - 4}\">-{span.TotalMinutes:0} min</text>");
        html.Append(CultureInfo.InvariantCulture, $"<text x=\"{Left + plotWidth}\" y=\"{ChartHeight - 4}\" text-anchor=\"end\">now</text>\n");
        var legendX = Left + 8;
        foreach (var s in series)
        {
            // A series is drawn in runs: a sample without a value (no commit that second) breaks the line.
            var run = new List<string>();
            void Flush()
            {
                if (run.Count > 0)
                    html.Append(CultureInfo.InvariantCulture, $"<polyline fill=\"none\" stroke=\"{s.Colour}\" stroke-width=\"1.5\" points=\"{string.Join(' ', run)}\"/>\n");
                run.Clear();
            }
            foreach (var sample in history)
            {
                if (s.Value(sample) is { } v) run.Add(string.Create(CultureInfo.InvariantCulture, $"{X(sample.Time):0.#},{Y(v):0.#}"));
                else Flush();
            }
            Flush();
            html.Append(CultureInfo.InvariantCulture, $"<text x=\"{legendX}\" y=\"22\" style=\"fill:{s.Colour}\">&#9632; {Encode(s.Label)}</text>");
            legendX += 90;
        }
        var last = history.Count == 0 ? null : history[^1];
        var current = last is null ? "no samples yet" : string.Join(", ", series.Select(s => s.Label + " " + (s.Value(last) is { } v ? Format(v) + s.Unit : "-")));
        html.Append(CultureInfo.InvariantCulture, $"\n</svg>\n<div class=\"muted\" id=\"{id}-now\">last second: {Encode(current)}</div></figure>\n");
    }

    /// <summary>1, 2 or 5 times a power of ten, at least <paramref name="value"/>: round axis labels.</summary>
    private static double NiceCeiling(double value)
    {
        var power = Math.Pow(10, Math.Floor(Math.Log10(value)));
        foreach (var step in new[] { 1.0, 2.0, 5.0, 10.0 })
            if (step * power >= value) return step * power;
        return 10 * power;
    }

    private static string Format(double value) => value >= 100
        ? value.ToString("0", CultureInfo.InvariantCulture)
        : value.ToString("0.##", CultureInfo.InvariantCulture);

    private static string Encode(string? text) => WebUtility.HtmlEncode(text ?? "");
}
