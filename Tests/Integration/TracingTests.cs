using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using MinBft.Application;
using MinBft.Hosting;
using MinBft.Messages;
using MinBft.Protocol;
using MinBft.ReplicaHost;
using MinBft.Silo;
using MinBft.Testing;
using OpenTelemetry;
using OpenTelemetry.Trace;
using Orleans.TestingHost;
using Xunit.Abstractions;

namespace MinBft.Tests.Integration;

/// <summary>
/// OpenTelemetry traces (<see cref="MinBftTracing"/>): a request is one trace from the SDK through
/// the client proxy (with the probe that precedes it, when it sends one); a replica's batch is a
/// trace of its own, linked to its requests. One class,
/// so its tests run one after another: whether anything listens to the MinBft source is
/// process-wide, and no other test class listens to it.
/// </summary>
public sealed class TracingTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task A_request_is_one_trace_from_the_sdk_span_through_the_proxy_span_and_the_primary_batch_span_links_to_it()
    {
        var builder = new InProcessTestClusterBuilder();
        using var deployment = builder.AddMinBft(o =>
        {
            // Propagation is opt-in (it costs every grain call).
            o.ConfigureMinBft = m => m.Tracing = true;
            o.ConfigureClient = c => c.Tracing = true;
        });
        await using var cluster = builder.Build();
        await cluster.DeployAsync();
        await cluster.WaitForMinBftAsync();
        var client = cluster.GetMinBftClient();

        using var spans = new SpanRecorder([MinBftTracing.SourceName, .. MinBftTracing.OrleansSources]);
        // Concurrent requests, so that the proxy and the primary batch them.
        const int Requests = 8;
        var results = await Task.WhenAll(Enumerable.Range(0, Requests)
            .Select(i => client.ExecuteVerifiedAsync(KeyValueOperation.EncodePut("trace-" + i, [(byte)i]))));
        Assert.All(results, r => Assert.True(r.Replies.Count >= deployment.Manifest.ReplyQuorum));

        var clients = client.ClientIds.Select(id => id[..12]).ToHashSet(StringComparer.Ordinal);
        List<Activity> requests = [];
        await MinBftTestCluster.UntilAsync(() =>
        {
            requests = spans.Stopped.Where(a => a.OperationName == MinBftTracing.RequestSpan
                && a.GetTagItem(MinBftTracing.ClientTag) is string c && clients.Contains(c)).ToList();
            // Every request's primary batch span, too (the primary stops it before it replies).
            return Task.FromResult(requests.Count == Requests && requests.All(r => spans.Stopped.Any(b => b.OperationName == MinBftTracing.BatchSpan
                && b.Links.Any(l => l.Context.TraceId == r.TraceId))));
        }, "a request span per request, and a batch span linked to each");

        var all = spans.Stopped.ToList();
        List<Activity> probing = [];
        foreach (var request in requests)
        {
            // The SDK span is the trace's root.
            Assert.Equal(default, request.ParentSpanId);
            Assert.Equal(ActivityKind.Client, request.Kind);
            var seq = Convert.ToUInt64(request.GetTagItem(MinBftTracing.SeqTag));
            Assert.True(seq > 0);
            var attempts = Convert.ToInt32(request.GetTagItem(MinBftTracing.AttemptsTag));
            Assert.True(attempts >= 1);

            // One proxy span per attempt, in the same trace, right below the SDK span: the
            // Submit call carries many requests, so each request's context rides along with it
            // (MinBftTracing.RequestLinksKey) and the proxy's span continues that trace. A request
            // that probed first (the client's first) has its probe's proxy spans there too: same
            // identity, a lower seq of its own.
            var inTrace = all.Where(a => a.OperationName == MinBftTracing.ProxySpan && a.TraceId == request.TraceId).ToList();
            foreach (var proxy in inTrace)
            {
                Assert.Equal(request.GetTagItem(MinBftTracing.ClientTag), proxy.GetTagItem(MinBftTracing.ClientTag));
                Assert.Equal(ActivityKind.Server, proxy.Kind);
                Assert.Equal(request.SpanId, proxy.ParentSpanId);
            }
            var proxies = inTrace.Where(p => Convert.ToUInt64(p.GetTagItem(MinBftTracing.SeqTag)) == seq).ToList();
            Assert.Equal(attempts, proxies.Count);
            var probes = inTrace.Except(proxies).ToList();
            if (probes.Count > 0)
            {
                probing.Add(request);
                var probeSeq = Assert.Single(probes.Select(p => Convert.ToUInt64(p.GetTagItem(MinBftTracing.SeqTag))).Distinct());
                Assert.True(probeSeq < seq, $"probe seq {probeSeq}, request seq {seq}");
                Assert.Single(probes, p => p.Status != ActivityStatusCode.Error);
            }
            var answered = Assert.Single(proxies, p => p.Status != ActivityStatusCode.Error);
            Assert.True(Convert.ToInt32(answered.GetTagItem(MinBftTracing.RepliesTag)) >= deployment.Manifest.ReplyQuorum);

            // The batch that executed it links to the proxy span that sent it; a batch is a
            // root of its own trace, and a replica executes a request in one batch only.
            var batches = all.Where(b => b.OperationName == MinBftTracing.BatchSpan && b.Links.Any(l => proxies.Any(p => p.Context.SpanId == l.Context.SpanId && p.TraceId == l.Context.TraceId))).ToList();
            Assert.NotEmpty(batches);
            Assert.Equal(batches.Count, batches.Select(b => b.GetTagItem(MinBftTracing.ReplicaTag)).Distinct().Count());
            Assert.Contains(batches, b => Convert.ToInt32(b.GetTagItem(MinBftTracing.ReplicaTag)) == 0); // the primary of view 0
            foreach (var batch in batches)
            {
                Assert.Equal(default, batch.ParentSpanId);
                Assert.NotEqual(request.TraceId, batch.TraceId);
                Assert.True(Convert.ToUInt64(batch.GetTagItem(MinBftTracing.SequenceTag)) > 0);
                Assert.Equal(0L, Convert.ToInt64(batch.GetTagItem(MinBftTracing.ViewTag)));
                var size = Convert.ToInt32(batch.GetTagItem(MinBftTracing.BatchSizeTag));
                Assert.InRange(batch.Links.Count(), 1, size);
            }
        }
        // The requests started together found no proven position, and shared one probe.
        Assert.Single(probing);

        // The calls that carry many requests or outcomes (the SDK's to the proxy, the proxy's to
        // the replicas and back to the SDK's observer) belong to no request's trace.
        var traces = requests.Select(r => r.TraceId).ToHashSet();
        Assert.DoesNotContain(all, a => traces.Contains(a.TraceId)
            && a.DisplayName is "IReplicaGrain/SubmitBatch" or "IReplicaGrain/Submit" or "IClientProxyGrain/Submit" or "IClientProxyObserver/Completed");
        Assert.Contains(all, a => a.DisplayName == "IClientProxyGrain/Submit");
        var batched = all.Where(b => b.OperationName == MinBftTracing.BatchSpan && b.Links.Any(l => traces.Contains(l.Context.TraceId))).ToList();
        output.WriteLine($"{requests.Count} requests, {batched.Count} linked batch spans (sizes {string.Join(", ", batched.Select(b => b.GetTagItem(MinBftTracing.BatchSizeTag)))})");
    }

    [Fact]
    public async Task Without_a_listener_on_the_MinBft_source_no_span_is_started_and_no_context_is_kept()
    {
        Assert.False(MinBftTracing.Source.HasListeners());

        // The replica side's hooks, with nothing listening: nothing kept, nothing allocated.
        var tracing = new BatchTracing(0);
        var request = new Request("client", [], 1, [1], []);
        var executed = new Executed(1, 0, 1, new byte[32], [request], [request]);
        tracing.Note([request], [MinBftTracing.ToTraceparent(new ActivityContext(ActivityTraceId.CreateRandom(), ActivitySpanId.CreateRandom(), ActivityTraceFlags.Recorded))]);
        Assert.Equal(0, tracing.Waiting);
        tracing.Executed(executed, TimeSpan.FromMilliseconds(1)); // warm up
        Assert.Null(BatchTracing.TakeLinks());
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1_000; i++)
        {
            tracing.Executed(executed, TimeSpan.FromMilliseconds(1));
            Assert.Null(BatchTracing.TakeLinks());
        }
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);

        // A cluster traced by Orleans' sources only: Orleans spans exist, MinBFT's do not, and no
        // span sits between the SDK's call and the proxy's (an Activity made without the source
        // would show up as a parent or a child).
        var builder = new InProcessTestClusterBuilder();
        using var deployment = builder.AddMinBft(o =>
        {
            // Propagation is opt-in (it costs every grain call).
            o.ConfigureMinBft = m => m.Tracing = true;
            o.ConfigureClient = c => c.Tracing = true;
        });
        await using var cluster = builder.Build();
        await cluster.DeployAsync();
        await cluster.WaitForMinBftAsync();
        var client = cluster.GetMinBftClient();
        using var spans = new SpanRecorder(MinBftTracing.OrleansSources);
        Assert.False(MinBftTracing.Source.HasListeners());
        for (var i = 0; i < 3; i++) await client.ExecuteAsync(KeyValueOperation.EncodePut("untraced-" + i, [(byte)i]));

        List<Activity> calls = [];
        await MinBftTestCluster.UntilAsync(() =>
        {
            calls = spans.Stopped.Where(a => a.Kind == ActivityKind.Client && a.DisplayName == "IClientProxyGrain/Submit"
                && a.GetTagItem("orleans.rpc.target_id") is string target && target.Contains(client.ProxyKey, StringComparison.Ordinal)).ToList();
            return Task.FromResult(calls.Count >= 3);
        }, "Orleans' client spans of the three Submit calls");
        var all = spans.Stopped.ToList();
        Assert.DoesNotContain(all, a => a.Source.Name == MinBftTracing.SourceName);
        foreach (var call in calls)
        {
            Assert.Equal(default, call.ParentSpanId);
            var server = Assert.Single(all, a => a.ParentSpanId == call.SpanId);
            Assert.Equal(ActivityKind.Server, server.Kind);
            Assert.DoesNotContain(all, a => a.ParentSpanId == server.SpanId);
        }
    }

    [Fact]
    public void The_silo_host_records_the_MinBft_and_Orleans_sources()
    {
        var exported = new List<Activity>();
        Activity? batch, call, skipped;
        var services = new ServiceCollection();
        services.AddOpenTelemetry().WithMinBftTracing(new ConfigurationBuilder().Build(), t => t.AddInMemoryExporter(exported));
        using (var provider = services.BuildServiceProvider())
        {
            using var tracer = provider.GetRequiredService<TracerProvider>();
            using var orleans = new ActivitySource(MinBftTracing.OrleansSources[1]);
            using var other = new ActivitySource("NotMinBft");
            Assert.True(MinBftTracing.Source.HasListeners());
            // The provider listens process-wide, so spans of clusters other test classes run at
            // the same time may be exported too: check these very spans.
            batch = MinBftTracing.Source.StartActivity(MinBftTracing.BatchSpan);
            batch?.Stop();
            call = orleans.StartActivity("call");
            call?.Stop();
            skipped = other.StartActivity("other");
            tracer.ForceFlush();
        }
        Assert.NotNull(batch);
        Assert.NotNull(call);
        Assert.Null(skipped); // nobody listens to other sources
        // The provider is disposed: nothing is added to the list any more.
        Assert.Contains(batch, exported);
        Assert.Contains(call, exported);
        Assert.DoesNotContain(exported, a => a.Source.Name == "NotMinBft");
        Assert.False(MinBftTracing.Source.HasListeners());
    }

    [Fact]
    public void Silo_local_traces_only_when_OTLP_export_is_configured()
    {
        // Without OTEL_EXPORTER_OTLP_ENDPOINT: no pipeline, nothing listens, no propagation.
        var unset = new ConfigurationBuilder().Build();
        var services = new ServiceCollection();
        Assert.False(services.AddOpenTelemetry().WithLocalClusterTracing(unset));
        using (var provider = services.BuildServiceProvider())
        {
            Assert.Null(provider.GetService<TracerProvider>());
            Assert.False(MinBftTracing.Source.HasListeners());
        }
        Assert.Null(MinBft.Silo.Program.LocalMinBftOptions(null, unset));
        var ledger = new MinBftOptions();
        MinBft.Silo.Program.LocalMinBftOptions(MinBftStateMachineKind.Ledger, unset)!(ledger);
        Assert.Equal(MinBftStateMachineKind.Ledger, ledger.StateMachine);
        Assert.False(ledger.Tracing);

        // With it: one pipeline recording the MinBft source, and propagation across grain calls.
        var set = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:9" }).Build();
        services = new ServiceCollection();
        Assert.True(services.AddOpenTelemetry().WithLocalClusterTracing(set));
        using (var provider = services.BuildServiceProvider())
        {
            Assert.NotNull(provider.GetService<TracerProvider>());
            Assert.True(MinBftTracing.Source.HasListeners());
        }
        Assert.False(MinBftTracing.Source.HasListeners());
        var traced = new MinBftOptions();
        MinBft.Silo.Program.LocalMinBftOptions(null, set)!(traced);
        Assert.True(traced.Tracing);
    }

    /// <summary>Records every stopped activity of the given sources, as a tracing SDK would.</summary>
    private sealed class SpanRecorder : IDisposable
    {
        private readonly ActivityListener _listener;
        private readonly ConcurrentQueue<Activity> _stopped = new();

        public SpanRecorder(IReadOnlyCollection<string> sources)
        {
            _listener = new ActivityListener
            {
                ShouldListenTo = s => sources.Contains(s.Name),
                Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
                ActivityStopped = _stopped.Enqueue,
            };
            ActivitySource.AddActivityListener(_listener);
        }

        public IEnumerable<Activity> Stopped => _stopped;

        public void Dispose() => _listener.Dispose();
    }
}
