using System.Diagnostics;
using MinBft.Hosting;
using MinBft.Protocol;
using Orleans.Runtime;
using Request = MinBft.Messages.Request;

namespace MinBft.ReplicaHost;

/// <summary>
/// Replica i's <see cref="MinBftTracing.BatchSpan"/>s. A batch orders requests of many clients
/// that came in many calls, so its span is the root of a trace of its own and links to the
/// proxy spans of its requests: their contexts come with the proxy's SubmitBatch call (Orleans'
/// request context, <see cref="MinBftTracing.RequestLinksKey"/>) and wait here, by client and
/// seq, until the batch executes. Only the replicas a proxy sent a request to know its context,
/// usually the primary alone; the others' spans carry no link. Nothing is kept or created while
/// nothing listens to the MinBft source.
/// </summary>
internal sealed class BatchTracing(int replicaId)
{
    /// <summary>Most request contexts kept; the table is cleared when full (a request that is
    /// never executed here, e.g. a retransmission of one already executed, leaves its entry).</summary>
    internal const int MaxContexts = 8_192;

    private readonly Dictionary<(string ClientId, ulong Seq), ActivityContext> _contexts = [];

    /// <summary>Contexts waiting for their batch (for tests).</summary>
    internal int Waiting => _contexts.Count;

    /// <summary>
    /// Takes the request contexts the current incoming call carries, and removes them from the
    /// request context so that the calls this step makes do not carry them on. Null when absent
    /// (tracing off at the proxy): one lookup in an empty request context.
    /// </summary>
    public static string[]? TakeLinks()
    {
        if (RequestContext.Get(MinBftTracing.RequestLinksKey) is not string[] links) return null;
        RequestContext.Remove(MinBftTracing.RequestLinksKey);
        return links;
    }

    /// <summary>Keeps the contexts of <paramref name="requests"/> (same order as <paramref name="links"/>; a proxy may be Byzantine, so they are parsed, not trusted).</summary>
    public void Note(IReadOnlyList<Request> requests, string[] links)
    {
        if (!MinBftTracing.Source.HasListeners()) return;
        var count = Math.Min(requests.Count, links.Length);
        for (var i = 0; i < count; i++)
        {
            if (links[i] is not { } link || requests[i] is not { ClientId: { } clientId } request) continue;
            if (!ActivityContext.TryParse(link, null, isRemote: true, out var context)) continue;
            if (_contexts.Count >= MaxContexts) _contexts.Clear();
            _contexts[(clientId, request.Seq)] = context;
        }
    }

    /// <summary>
    /// Records the batch's span when something listens. <paramref name="sincePrepare"/>: at the
    /// primary, the time since it sent the batch's PREPARE (the span then covers ordering and
    /// execution); elsewhere the span marks the execution.
    /// </summary>
    public void Executed(Executed executed, TimeSpan? sincePrepare)
    {
        if (!MinBftTracing.Source.HasListeners()) return;
        List<ActivityLink>? links = null;
        foreach (var request in executed.Requests)
            if (_contexts.Remove((request.ClientId, request.Seq), out var context)) (links ??= []).Add(new ActivityLink(context));

        var now = DateTimeOffset.UtcNow;
        // A root: the incoming call that completed the batch (some replica's COMMIT) is not its parent.
        var ambient = Activity.Current;
        Activity.Current = null;
        try
        {
            using var span = MinBftTracing.Source.StartActivity(
                MinBftTracing.BatchSpan, ActivityKind.Internal, parentContext: default, tags: null, links: links,
                startTime: sincePrepare is { } took ? now - took : now);
            if (span is { IsAllDataRequested: true })
            {
                span.SetTag(MinBftTracing.ReplicaTag, replicaId);
                span.SetTag(MinBftTracing.SequenceTag, executed.Sequence);
                span.SetTag(MinBftTracing.ViewTag, executed.View);
                span.SetTag(MinBftTracing.BatchSizeTag, executed.Requests.Count);
            }
        }
        finally
        {
            Activity.Current = ambient;
        }
    }
}
