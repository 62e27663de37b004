using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using MinBft.Hosting;
using MinBft.Tests.Client;
using Xunit.Abstractions;

namespace MinBft.Tests.Integration;

/// <summary>
/// <c>Silo local</c> (a whole dev cluster in one process) exports traces and metrics over OTLP
/// when <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set, as the per-domain host does: the real
/// program in a process of its own, an OTLP/HTTP receiver in the test that decodes the spans it
/// is sent, and one request through the CLI.
/// </summary>
[Collection(nameof(SeparateProcessCollection))]
public sealed class LocalTracingExportTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("minbft-local-otlp-").FullName;

    public void Dispose()
    {
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
            // A store may still be open for a moment; it is a temp directory.
        }
    }

    [Fact]
    public async Task Silo_local_exports_the_spans_of_a_request_and_the_meter_over_OTLP_when_the_endpoint_is_set()
    {
        using var receiver = new OtlpReceiver();
        var ports = new LocalClusterOptions { F = 1 }.UseFreePorts();
        var data = Path.Combine(_directory, "data");
        using var silo = new SiloProcess("local",
        [
            "local", "--f", "1", "--data", data,
            "--silo-port", ports.SiloPort.ToString(CultureInfo.InvariantCulture),
            "--gateway-port", ports.GatewayPort.ToString(CultureInfo.InvariantCulture),
            "--status-interval", "60",
        ], new Dictionary<string, string>
        {
            ["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.Endpoint,
            ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf",
            // Export soon after the request, not after the default 5 s and 60 s.
            ["OTEL_BSP_SCHEDULE_DELAY"] = "200",
            ["OTEL_METRIC_EXPORT_INTERVAL"] = "500",
            ["DOTNET_gcServer"] = "0",
        }, _directory);
        silo.Start();
        try
        {
            await Conditions.WaitUntilAsync(() =>
            {
                var tail = silo.Tail(40);
                return Task.FromResult((tail.Contains("Press Ctrl+C to stop.", StringComparison.Ordinal) || !silo.IsRunning, tail));
            }, TimeSpan.FromSeconds(120), "Silo local is up");
            Assert.True(silo.IsRunning, "Silo local exited:\n" + silo.Tail(40));

            var cliOutput = new StringWriter();
            var cli = new MinBft.Client.Cli.ClientCli(new MinBft.Client.Cli.CliConsole(cliOutput, cliOutput, ErrorIsTerminal: false));
            var exit = await cli.InvokeAsync(
                ["put", "traced", "v", "--gateway", $"127.0.0.1:{ports.GatewayPort}", "--manifest", Path.Combine(data, LocalCluster.KeysDirectoryName, DeploymentKeys.ManifestFileName)],
                CancellationToken.None);
            Assert.True(exit == 0, $"put exited {exit}: {cliOutput}");

            // The batch that executed it (at each replica) and the proxy's span, below Orleans'
            // server span of the Submit call: trace context crossed the grain call (propagation is on).
            List<OtlpSpan> spans = [];
            OtlpSpan? proxy = null;
            await Conditions.WaitUntilAsync(() =>
            {
                spans = receiver.Spans();
                proxy = spans.FirstOrDefault(s => s.Scope == MinBftTracing.SourceName && s.Name == MinBftTracing.ProxySpan
                    && spans.Any(p => p.SpanId == s.ParentSpanId && p.TraceId == s.TraceId));
                var batches = spans.Count(s => s.Scope == MinBftTracing.SourceName && s.Name == MinBftTracing.BatchSpan);
                return Task.FromResult((proxy is not null && batches >= 3, $"{spans.Count} spans, {batches} batch spans, proxy span with parent: {proxy is not null}"));
            }, TimeSpan.FromSeconds(30), "the proxy span with its parent and the replicas' batch spans are exported");
            foreach (var span in spans.Take(30)) output.WriteLine($"{span.Scope}: {span.Name} trace {span.TraceId[..8]} span {span.SpanId} parent {span.ParentSpanId}");
            var parent = spans.Single(p => p.SpanId == proxy!.ParentSpanId);
            Assert.StartsWith("Microsoft.Orleans.", parent.Scope, StringComparison.Ordinal);
            Assert.Equal("IClientProxyGrain/Submit", parent.Name);
            // Each span once: one tracer provider for the process, not one per silo.
            Assert.Equal(spans.Count, spans.Select(s => (s.TraceId, s.SpanId)).Distinct().Count());

            await Conditions.WaitUntilAsync(() => Task.FromResult((receiver.MetricsContain("minbft.requests.executed"), "not yet")),
                TimeSpan.FromSeconds(30), "the MinBft meter is exported");
        }
        finally
        {
            output.WriteLine(silo.Tail(30));
        }
    }
}

/// <summary>
/// <c>demo</c> (a local cluster and its clients in the CLI's process) exports over OTLP too when
/// <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set: each request is one trace from the SDK's span through
/// the proxy's, and the replicas' batch spans are exported.
/// </summary>
[Collection(nameof(SeparateProcessCollection))]
public sealed class DemoTracingExportTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("minbft-demo-otlp-").FullName;

    public void Dispose()
    {
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
            // A temp directory; a file may still be open for a moment.
        }
    }

    /// <summary>The CLI in its own build output (Client/bin/CONFIG/TFM), the way a user runs it: the copy
    /// next to the tests lacks what the Tests project takes from the ASP.NET shared framework.</summary>
    private static string ClientProgram()
    {
        var testsBin = Path.DirectorySeparatorChar + Path.Combine("Tests", "bin") + Path.DirectorySeparatorChar;
        var path = Path.Combine(AppContext.BaseDirectory.Replace(testsBin, Path.DirectorySeparatorChar + Path.Combine("Client", "bin") + Path.DirectorySeparatorChar, StringComparison.Ordinal), "MinBft.Client.dll");
        if (!File.Exists(path)) Assert.Fail($"{path} is missing: build the solution (dotnet test MinBft.Orleans.sln builds Client/)");
        return path;
    }

    [Fact]
    public async Task Demo_exports_one_trace_per_request_from_the_SDK_through_the_proxy_when_the_endpoint_is_set()
    {
        using var receiver = new OtlpReceiver();
        const int requests = 12;
        using var demo = new SiloProcess("demo", ["demo", "--requests", requests.ToString(CultureInfo.InvariantCulture), "--clients", "2"],
            new Dictionary<string, string>
            {
                ["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.Endpoint,
                ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf",
                ["OTEL_BSP_SCHEDULE_DELAY"] = "200",
                ["OTEL_METRIC_EXPORT_INTERVAL"] = "500",
                ["DOTNET_gcServer"] = "0",
            }, _directory)
        {
            Program = ClientProgram(),
        };
        demo.Start();
        try
        {
            await Conditions.WaitUntilAsync(() => Task.FromResult((!demo.IsRunning, demo.Tail(5))), TimeSpan.FromSeconds(180), "demo finishes");
            Assert.True(demo.ExitCode == 0, $"demo exited {demo.ExitCode}:\n{demo.Tail(30)}");
            Assert.Contains("demo ok:", demo.Tail(30), StringComparison.Ordinal);

            // Flushed at exit: every span is in by now.
            var spans = receiver.Spans();
            foreach (var span in spans.Where(s => s.Scope == MinBftTracing.SourceName).Take(30)) output.WriteLine($"{span.Scope}: {span.Name} trace {span.TraceId[..8]} span {span.SpanId} parent {span.ParentSpanId}");
            var roots = spans.Where(s => s.Scope == MinBftTracing.SourceName && s.Name == MinBftTracing.RequestSpan).ToList();
            // The demo's own reads of the state may add requests; each is a trace of its own.
            Assert.True(roots.Count >= requests, $"{roots.Count} SDK request spans for {requests} requests");
            Assert.Equal(roots.Count, roots.Select(r => r.TraceId).Distinct().Count());
            var byId = spans.ToDictionary(s => (s.TraceId, s.SpanId));
            var proxies = spans.Where(s => s.Scope == MinBftTracing.SourceName && s.Name == MinBftTracing.ProxySpan).ToList();
            Assert.NotEmpty(proxies);
            foreach (var proxy in proxies)
            {
                // Up the parent chain (Orleans' client and server spans between) to the SDK's span.
                var at = proxy;
                while (at.Name != MinBftTracing.RequestSpan && byId.TryGetValue((at.TraceId, at.ParentSpanId), out var parent)) at = parent;
                Assert.Equal(MinBftTracing.RequestSpan, at.Name);
            }
            Assert.Contains(spans, s => s.Scope == MinBftTracing.SourceName && s.Name == MinBftTracing.BatchSpan);
            Assert.True(receiver.MetricsContain("minbft.requests.executed"), "the MinBft meter is exported");
        }
        finally
        {
            output.WriteLine(demo.Tail(30));
        }
    }
}

/// <summary>One span as an OTLP/protobuf export carries it (ids in hex).</summary>
internal sealed record OtlpSpan(string Scope, string Name, string TraceId, string SpanId, string ParentSpanId);

/// <summary>
/// A minimal OTLP/HTTP receiver: accepts protobuf exports on <c>/v1/traces</c> and
/// <c>/v1/metrics</c> and decodes the spans (scope, name, ids) with a small wire-format reader.
/// </summary>
internal sealed class OtlpReceiver : IDisposable
{
    private readonly HttpListener _listener = new();
    private readonly ConcurrentQueue<byte[]> _traces = new();
    private readonly ConcurrentQueue<byte[]> _metrics = new();
    private readonly Task _serving;

    public OtlpReceiver()
    {
        var port = FreePorts.Next();
        Endpoint = string.Create(CultureInfo.InvariantCulture, $"http://127.0.0.1:{port}");
        _listener.Prefixes.Add(Endpoint + "/");
        _listener.Start();
        _serving = Task.Run(ServeAsync);
    }

    public string Endpoint { get; }

    private async Task ServeAsync()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try
            {
                context = await _listener.GetContextAsync();
            }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException)
            {
                return;
            }
            using var body = new MemoryStream();
            await context.Request.InputStream.CopyToAsync(body);
            var path = context.Request.Url?.AbsolutePath;
            if (path == "/v1/traces") _traces.Enqueue(body.ToArray());
            else if (path == "/v1/metrics") _metrics.Enqueue(body.ToArray());
            context.Response.StatusCode = path is "/v1/traces" or "/v1/metrics" ? 200 : 404;
            context.Response.ContentType = "application/x-protobuf";
            context.Response.Close(); // an empty Export*ServiceResponse
        }
    }

    /// <summary>Every span received so far: ExportTraceServiceRequest → ResourceSpans(1) → ScopeSpans(2) → scope(1).name(1), spans(2).</summary>
    public List<OtlpSpan> Spans()
    {
        var spans = new List<OtlpSpan>();
        foreach (var request in _traces)
            foreach (var resourceSpans in Protobuf.Messages(request, 1))
                foreach (var scopeSpans in Protobuf.Messages(resourceSpans, 2))
                {
                    var scope = Protobuf.Messages(scopeSpans, 1).Select(s => Protobuf.String(s, 1)).FirstOrDefault() ?? "";
                    foreach (var span in Protobuf.Messages(scopeSpans, 2))
                        spans.Add(new OtlpSpan(scope, Protobuf.String(span, 5) ?? "", Protobuf.Hex(span, 1), Protobuf.Hex(span, 2), Protobuf.Hex(span, 4)));
                }
        return spans;
    }

    /// <summary>True if a metrics export names <paramref name="metric"/> (names are plain UTF-8 in protobuf).</summary>
    public bool MetricsContain(string metric)
    {
        var name = System.Text.Encoding.UTF8.GetBytes(metric);
        return _metrics.Any(m => m.AsSpan().IndexOf(name) >= 0);
    }

    public void Dispose()
    {
        _listener.Stop();
        _listener.Close();
        _serving.Wait(TimeSpan.FromSeconds(5));
    }

    /// <summary>The protobuf wire format, as far as reading nested messages, strings and bytes needs.</summary>
    private static class Protobuf
    {
        public static IEnumerable<byte[]> Messages(byte[] message, int field) =>
            Fields(message).Where(f => f.Field == field && f.Bytes is not null).Select(f => f.Bytes!);

        public static string? String(byte[] message, int field) =>
            Messages(message, field).Select(b => System.Text.Encoding.UTF8.GetString(b)).FirstOrDefault();

        public static string Hex(byte[] message, int field) =>
            Messages(message, field).Select(b => Convert.ToHexString(b).ToLowerInvariant()).FirstOrDefault() ?? "";

        private static List<(int Field, byte[]? Bytes)> Fields(byte[] message)
        {
            var fields = new List<(int, byte[]?)>();
            var at = 0;
            while (at < message.Length)
            {
                var tag = Varint(message, ref at);
                var field = (int)(tag >> 3);
                switch (tag & 7)
                {
                    case 0:
                        Varint(message, ref at);
                        fields.Add((field, null));
                        break;
                    case 1:
                        at += 8;
                        fields.Add((field, null));
                        break;
                    case 2:
                        var length = (int)Varint(message, ref at);
                        fields.Add((field, message[at..(at + length)]));
                        at += length;
                        break;
                    case 5:
                        at += 4;
                        fields.Add((field, null));
                        break;
                    default:
                        throw new InvalidDataException($"wire type {tag & 7} at byte {at}");
                }
            }
            return fields;
        }

        private static ulong Varint(byte[] data, ref int at)
        {
            ulong value = 0;
            for (var shift = 0; ; shift += 7)
            {
                var b = data[at++];
                value |= (ulong)(b & 0x7F) << shift;
                if ((b & 0x80) == 0) return value;
            }
        }
    }
}
