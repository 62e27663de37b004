using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Orleans;

namespace MinBft.Hosting;

/// <summary>
/// The <c>MinBft</c> activity source (OpenTelemetry traces), shared by the client SDK and the
/// silo. A request is one trace: <see cref="RequestSpan"/> in the SDK, then <see cref="ProxySpan"/>
/// in the client proxy grain. Requests travel in batches, so the calls that carry them belong to
/// no single request's trace: the SDK's Submit call carries each request's context by index
/// (<see cref="RequestLinksKey"/>) and the proxy's span takes it as its parent; a replica's
/// <see cref="BatchSpan"/> cannot have one parent either: it starts its own trace and links to
/// the proxy spans of the requests it executed.
/// <para>
/// Every span is started through <see cref="ActivitySource.StartActivity(string, ActivityKind)"/>,
/// which returns null while nothing listens: tracing off costs a check, no allocation.
/// Listen to <see cref="SourceName"/> and to <see cref="OrleansSources"/> (Orleans injects the
/// trace context into a call only when its own source is listened to).
/// </para>
/// </summary>
public static class MinBftTracing
{
    /// <summary>The activity source's name.</summary>
    public const string SourceName = "MinBft";

    /// <summary>The SDK's span of one request, all attempts included (root unless the caller has an activity).</summary>
    public const string RequestSpan = "minbft.request";

    /// <summary>The client proxy grain's span of one submission of a request (one attempt), until its outcome.</summary>
    public const string ProxySpan = "minbft.proxy.execute";

    /// <summary>A replica's execution of one batch: a trace of its own, linked to its requests' proxy spans.</summary>
    public const string BatchSpan = "minbft.batch";

    /// <summary>Tag: the first 12 hex digits of the client id.</summary>
    public const string ClientTag = "minbft.client";

    /// <summary>Tag: the request's sequence number of its client.</summary>
    public const string SeqTag = "minbft.seq";

    /// <summary>Tag: attempts the SDK made (calls to the proxy).</summary>
    public const string AttemptsTag = "minbft.attempts";

    /// <summary>Tag: valid replies the proxy had received when the call ended.</summary>
    public const string RepliesTag = "minbft.replies";

    /// <summary>Tag: the replica executing a batch.</summary>
    public const string ReplicaTag = "minbft.replica";

    /// <summary>Tag: the batch's sequence number.</summary>
    public const string SequenceTag = "minbft.sequence";

    /// <summary>Tag: the view the batch was ordered in.</summary>
    public const string ViewTag = "minbft.view";

    /// <summary>Tag: requests in the batch.</summary>
    public const string BatchSizeTag = "minbft.batch.size";

    /// <summary>
    /// Orleans' request-context key under which a call carrying many requests carries their trace
    /// contexts (W3C traceparent strings), in the requests' order: the SDK's Submit call (the
    /// request spans; null entries for requests not traced) and a proxy's SubmitBatch call (the
    /// proxy spans; set only while one is recorded). Outside the signed requests, so it changes
    /// nothing a replica decides.
    /// </summary>
    public const string RequestLinksKey = "minbft.links";

    /// <summary>Orleans' own activity sources: grain calls of the runtime and of the application.</summary>
    public static readonly IReadOnlyList<string> OrleansSources = ["Microsoft.Orleans.Runtime", "Microsoft.Orleans.Application"];

    /// <summary>The source every MinBFT span comes from.</summary>
    public static ActivitySource Source { get; } = new(SourceName);

    /// <summary>A context as a W3C traceparent (what <see cref="RequestLinksKey"/> carries).</summary>
    public static string ToTraceparent(ActivityContext context) =>
        $"00-{context.TraceId.ToHexString()}-{context.SpanId.ToHexString()}-{((context.TraceFlags & ActivityTraceFlags.Recorded) != 0 ? "01" : "00")}";

    /// <summary>
    /// Whether Orleans' activity propagation (<c>AddActivityPropagation</c>) is already in these
    /// services: adding it twice would give every grain call two spans per side.
    /// </summary>
    public static bool HasActivityPropagation(IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        // The filter is internal to Orleans; its name is the only handle.
        return services.Any(d => d.ServiceType == typeof(IOutgoingGrainCallFilter)
            && d.ImplementationType?.FullName == "Orleans.Runtime.ActivityPropagationOutgoingGrainCallFilter");
    }
}
