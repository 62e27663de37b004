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

/// <summary>Where a replica's stored sent log starts (segments before it were dropped after checkpoints).</summary>
[GenerateSerializer, Alias("minbft.ReplicaLogHead")]
public sealed class ReplicaLogHead
{
    [Id(0)]
    public int FirstSegment { get; set; }

    /// <summary>The first counter kept when it is not the first segment's start: after a restart
    /// the log resumes past counters the USIG issued for messages that never became durable.</summary>
    [Id(1)]
    public ulong FirstCounter { get; set; }
}

/// <summary>
/// A replica's durable sent log in fixed-size segments of grain storage (state names
/// <c>log-0</c>, <c>log-1</c>, ..., and <c>log-head</c> naming the first one kept), so that
/// making a new message durable rewrites at most the last, partly filled segment instead of the
/// whole log, and the part the core garbage-collected after a stable checkpoint can be dropped.
/// Segment k holds counters <c>k*size+1 .. (k+1)*size</c>. Every write is conditional on the
/// ETag: a second activation of the same replica fails its write
/// (<see cref="InconsistentStateException"/>) instead of silently forking the log.
/// </summary>
internal sealed class ReplicaLogStore(IGrainStorage storage, GrainId grainId, int segmentSize = ReplicaLogStore.DefaultSegmentSize)
{
    public const int DefaultSegmentSize = 64;

    private const string HeadName = "log-head";

    private readonly GrainState<ReplicaLogHead> _head = new(new ReplicaLogHead());
    // Segments from _head.FirstSegment on, as last read or written (their ETags).
    private readonly List<GrainState<ReplicaLogSegment>> _segments = [];

    public int SegmentSize => segmentSize;

    /// <summary>
    /// Reads the kept segments in order. Returns the view stored with the last one, the counter
    /// the kept log starts at, and the messages (without a gap: checked by the caller).
    /// </summary>
    public async Task<(long View, ulong FirstCounter, List<CertifiedMessage> Log)> LoadAsync()
    {
        await storage.ReadStateAsync(HeadName, grainId, _head);
        _head.State ??= new ReplicaLogHead();
        _segments.Clear();
        var log = new List<CertifiedMessage>();
        long view = 0;
        var first = FirstCounter;
        while (true)
        {
            var segment = new GrainState<ReplicaLogSegment>(new ReplicaLogSegment());
            var index = _head.State.FirstSegment + _segments.Count;
            await storage.ReadStateAsync(Name(index), grainId, segment);
            if (!segment.RecordExists) break;
            var messages = segment.State?.Messages ?? [];
            if (messages.Length > segmentSize)
                throw new InvalidDataException($"{grainId}: stored log segment {index} holds {messages.Length} messages");
            _segments.Add(segment);
            log.AddRange(messages);
            view = segment.State!.View;
        }
        // The first segment may still hold counters from before a reset (crash before its rewrite).
        var skip = (int)Math.Min((ulong)log.Count, first - ((ulong)_head.State.FirstSegment * (ulong)segmentSize + 1));
        log.RemoveRange(0, skip);
        // Certified messages, then possibly messages logged before their UI was issued (intents).
        var intents = false;
        for (var i = 0; i < log.Count; i++)
        {
            var counter = first + (ulong)i;
            if (log[i]?.Ui is not { } ui) throw new InvalidDataException($"{grainId}: stored sent log has an empty entry at counter {counter}");
            if (ui.IsNone) intents = true;
            else if (intents || ui.Counter != counter)
                throw new InvalidDataException($"{grainId}: stored sent log has a gap or a foreign entry at counter {counter}");
        }
        return (view, first, log);
    }

    private ulong FirstCounter => Math.Max((ulong)_head.State!.FirstSegment * (ulong)segmentSize + 1, _head.State.FirstCounter);

    /// <summary>
    /// Starts the log afresh at <paramref name="firstCounter"/> (above everything stored), after
    /// a restart found USIG counters that never reached the log. The head moves first; the old
    /// segments are then dropped, except the one the new start falls in (rewritten on next write).
    /// </summary>
    public async Task ResetAsync(ulong firstCounter)
    {
        var newFirst = (int)((firstCounter - 1) / (ulong)segmentSize);
        var oldFirst = _head.State!.FirstSegment;
        _head.State = new ReplicaLogHead { FirstSegment = newFirst, FirstCounter = firstCounter };
        await storage.WriteStateAsync(HeadName, grainId, _head);
        var kept = new List<GrainState<ReplicaLogSegment>>();
        for (var i = 0; i < _segments.Count; i++)
        {
            if (oldFirst + i == newFirst) kept.Add(_segments[i]);
            else if (oldFirst + i < newFirst) await storage.ClearStateAsync(Name(oldFirst + i), grainId, _segments[i]);
        }
        _segments.Clear();
        _segments.AddRange(kept);
    }

    /// <summary>
    /// Makes the entries with counters <c>durable+1 .. last</c> durable, and rewrites the ones in
    /// <c>rewriteFrom+1 .. rewriteTo</c> (entries that gained their UI since they were written),
    /// touching only the segments those fall in. <paramref name="log"/> holds counters from
    /// <paramref name="firstCounter"/> on and must hold every counter of those segments. The
    /// segments are cut before the first await: the caller's list keeps changing meanwhile.
    /// </summary>
    public async Task WriteAsync(long view, List<CertifiedMessage> log, ulong firstCounter, ulong durable, ulong rewriteFrom = ulong.MaxValue, ulong rewriteTo = 0)
    {
        var last = firstCounter + (ulong)log.Count - 1;
        var indexes = new SortedSet<int>();
        if (durable < last)
            for (var k = (int)(durable / (ulong)segmentSize); k <= (int)((last - 1) / (ulong)segmentSize); k++) indexes.Add(k);
        if (rewriteTo > rewriteFrom)
            for (var k = (int)(rewriteFrom / (ulong)segmentSize); k <= (int)((rewriteTo - 1) / (ulong)segmentSize); k++) indexes.Add(k);
        var writes = new List<(int Index, CertifiedMessage[] Messages)>();
        foreach (var k in indexes)
        {
            var start = Math.Max((ulong)k * (ulong)segmentSize + 1, FirstCounter);
            if (start < firstCounter) throw new InvalidOperationException($"segment {k} is no longer held in memory");
            var offset = (int)(start - firstCounter);
            var end = Math.Min((ulong)(k + 1) * (ulong)segmentSize, last); // a segment never holds the next one's counters
            writes.Add((k, log.GetRange(offset, (int)(end - start + 1)).ToArray()));
        }
        foreach (var (index, messages) in writes)
        {
            var slot = index - _head.State!.FirstSegment;
            if (slot == _segments.Count) _segments.Add(new GrainState<ReplicaLogSegment>(new ReplicaLogSegment()));
            var segment = _segments[slot];
            segment.State = new ReplicaLogSegment { View = view, Messages = messages };
            await storage.WriteStateAsync(Name(index), grainId, segment);
        }
    }

    /// <summary>
    /// Drops the stored segments whose counters are all below <paramref name="keepFrom"/>, and
    /// returns the first counter still stored. The head moves first: a crash in between leaves
    /// unreferenced rows, never a gap.
    /// </summary>
    public async Task<ulong> TrimAsync(ulong keepFrom)
    {
        var head = _head.State!;
        var newFirst = (int)((keepFrom - 1) / (ulong)segmentSize);
        // Never drop the segment still being filled.
        newFirst = Math.Min(newFirst, head.FirstSegment + Math.Max(0, _segments.Count - 1));
        if (newFirst > head.FirstSegment)
        {
            var dropped = _segments.GetRange(0, newFirst - head.FirstSegment);
            var oldFirst = head.FirstSegment;
            _head.State = new ReplicaLogHead { FirstSegment = newFirst, FirstCounter = head.FirstCounter };
            await storage.WriteStateAsync(HeadName, grainId, _head);
            _segments.RemoveRange(0, dropped.Count);
            for (var i = 0; i < dropped.Count; i++) await storage.ClearStateAsync(Name(oldFirst + i), grainId, dropped[i]);
        }
        return FirstCounter;
    }

    private static string Name(int index) => string.Create(CultureInfo.InvariantCulture, $"log-{index}");
}
