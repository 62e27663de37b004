using System.Globalization;
using MinBft.Messages;
using Orleans.Runtime;
using Orleans.Storage;

namespace MinBft.Hosting;

/// <summary>One stored piece of a replica's sent log: counters <c>index*size+1 ..</c>, and the view at the time of writing.</summary>
[GenerateSerializer, Alias("minbft.ReplicaLogSegment")]
public sealed class ReplicaLogSegment
{
    [Id(0)]
    public long View { get; set; }

    [Id(1)]
    public CertifiedMessage[] Messages { get; set; } = [];
}

/// <summary>
/// A replica's durable sent log in fixed-size segments of grain storage (state names
/// <c>log-0</c>, <c>log-1</c>, ...), so that making a new message durable rewrites at most the
/// last, partly filled segment instead of the whole log. Every write is conditional on the
/// segment's ETag: a second activation of the same replica fails its write
/// (<see cref="InconsistentStateException"/>) instead of silently forking the log.
/// </summary>
internal sealed class ReplicaLogStore(IGrainStorage storage, GrainId grainId, int segmentSize = ReplicaLogStore.DefaultSegmentSize)
{
    public const int DefaultSegmentSize = 64;

    private readonly List<GrainState<ReplicaLogSegment>> _segments = [];

    /// <summary>Reads every segment, in order; the view is the one stored with the last segment.</summary>
    public async Task<(long View, List<CertifiedMessage> Log)> LoadAsync()
    {
        _segments.Clear();
        var log = new List<CertifiedMessage>();
        long view = 0;
        while (true)
        {
            var segment = new GrainState<ReplicaLogSegment>(new ReplicaLogSegment());
            await storage.ReadStateAsync(Name(_segments.Count), grainId, segment);
            if (!segment.RecordExists) break;
            if (log.Count % segmentSize != 0)
                throw new InvalidDataException($"{grainId}: stored log segment {_segments.Count - 1} is not full but a later one exists");
            var messages = segment.State?.Messages ?? [];
            if (messages.Length is 0 || messages.Length > segmentSize)
                throw new InvalidDataException($"{grainId}: stored log segment {_segments.Count} holds {messages.Length} messages");
            _segments.Add(segment);
            log.AddRange(messages);
            view = segment.State!.View;
        }
        return (view, log);
    }

    /// <summary>
    /// Makes <c>log[durable..]</c> durable, rewriting only the segments those messages fall in.
    /// The segments are cut before the first await: the caller's list keeps growing meanwhile.
    /// </summary>
    public async Task WriteAsync(long view, List<CertifiedMessage> log, int durable)
    {
        var first = durable / segmentSize;
        var last = (log.Count - 1) / segmentSize;
        var writes = new List<(int Index, CertifiedMessage[] Messages)>();
        for (var k = first; k <= last; k++)
        {
            var start = k * segmentSize;
            writes.Add((k, log.GetRange(start, Math.Min(segmentSize, log.Count - start)).ToArray()));
        }
        foreach (var (index, messages) in writes)
        {
            if (index == _segments.Count) _segments.Add(new GrainState<ReplicaLogSegment>(new ReplicaLogSegment()));
            var segment = _segments[index];
            segment.State = new ReplicaLogSegment { View = view, Messages = messages };
            await storage.WriteStateAsync(Name(index), grainId, segment);
        }
    }

    private static string Name(int index) => string.Create(CultureInfo.InvariantCulture, $"log-{index}");
}
