using System.Globalization;
using Microsoft.Extensions.Logging;
using Orleans;
using Orleans.Runtime;
using Orleans.Storage;

namespace MinBft.Hosting.Journal;

/// <summary>
/// A replica journal over any Orleans <see cref="IGrainStorage"/> (the domain's Redis server in
/// production, other providers in tests): one new record per write (<c>journal-0</c>,
/// <c>journal-1</c>, ...), never rewritten, so an append writes only what it appends.
/// </summary>
/// <remarks>
/// <para><b>Fencing.</b> Records are written without ETag: a record that exists cannot be
/// written again (the provider's ETag rule). <c>OpenAsync</c> reads the records up to the
/// first missing one and writes an <see cref="JournalRecordKind.Open"/> record there: that is
/// exactly where an earlier owner would write next, so its next write fails. Open records are
/// never deleted (one small record per activation), so that slot can never be written again.</para>
/// <para><b>Trimming.</b> Each append record carries the first counter kept. Once at least
/// <see cref="GrainStorageReplicaJournalFactory.DefaultTrimRecords"/> leading records hold only
/// entries below it, the head (<c>journal-head</c>) moves past them and they are deleted: one
/// small write plus one delete per record, amortized over many appends. The head also names
/// where deletion started, so deletions a crash interrupted are finished later. The head is
/// written with its ETag and rewritten by every open, so a stale owner cannot move it.</para>
/// <para>Providers that keep cleared records as tombstones (MinBFT's "minbft" Redis provider
/// does) would keep one key per append: production registers a separate provider that deletes
/// on clear (<see cref="JournalSiloBuilderExtensions.RedisJournalStorageName"/>).</para>
/// </remarks>
public sealed partial class GrainStorageReplicaJournal : ReplicaJournal
{
    private const string HeadName = "journal-head";
    private const int ReadWindow = 16;

    private readonly IGrainStorage _storage;
    private readonly GrainId _grainId;
    private readonly int _trimRecords;
    private readonly ILogger _logger;

    // Records from the head on, in order, as written or read (their ETags, to delete them).
    private readonly List<LiveRecord> _live = [];
    private GrainState<JournalHead> _head = new(new JournalHead());
    private long _owner = -1;
    private long _nextRecord;
    private long _garbageFrom;
    private ulong _trimCheckedAt;
    private Task _deletions = Task.CompletedTask;

    /// <summary>Creates the journal of <paramref name="grainId"/> in <paramref name="storage"/>.</summary>
    /// <param name="storage">The store; its ETag rules must refuse a write without ETag over an existing record.</param>
    /// <param name="grainId">Whose journal (records are states of this grain id).</param>
    /// <param name="logger">The logger.</param>
    /// <param name="trimRecords">How many leading records must be droppable before the head moves past them.</param>
    public GrainStorageReplicaJournal(IGrainStorage storage, GrainId grainId, ILogger<GrainStorageReplicaJournal> logger, int trimRecords = GrainStorageReplicaJournalFactory.DefaultTrimRecords)
    {
        ArgumentNullException.ThrowIfNull(storage);
        ArgumentNullException.ThrowIfNull(logger);
        ArgumentOutOfRangeException.ThrowIfLessThan(trimRecords, 1);
        _storage = storage;
        _grainId = grainId;
        _logger = logger;
        _trimRecords = trimRecords;
    }

    /// <summary>The state name of record <paramref name="index"/>.</summary>
    public static string RecordName(long index) => string.Create(CultureInfo.InvariantCulture, $"journal-{index}");

    /// <summary>The index of the first record kept (for tests and diagnostics).</summary>
    internal long FirstRecord => _head.State!.FirstRecord;

    /// <summary>The index the next record goes to.</summary>
    internal long NextRecord => _nextRecord;

    private protected override async Task<JournalContents> LoadAndClaimAsync(CancellationToken cancellationToken)
    {
        await _deletions.ConfigureAwait(false);
        _live.Clear();
        _owner = -1;
        _trimCheckedAt = 0;
        var head = new GrainState<JournalHead>(new JournalHead());
        await _storage.ReadStateAsync(HeadName, _grainId, head, cancellationToken).ConfigureAwait(false);
        if (!head.RecordExists || head.State is null) head.State = new JournalHead();
        var replay = new JournalReplay(_grainId.ToString(), head.State);

        var index = head.State.FirstRecord;
        var end = false;
        while (!end)
        {
            var window = new Task<GrainState<JournalRecord>>[ReadWindow];
            for (var k = 0; k < ReadWindow; k++) window[k] = ReadRecordAsync(index + k, cancellationToken);
            await Task.WhenAll(window).ConfigureAwait(false);
            foreach (var read in window)
            {
                var record = read.Result;
                if (!record.RecordExists || record.State is null)
                {
                    end = true;
                    break;
                }
                replay.Apply(index, record.State);
                _live.Add(new LiveRecord(index, record.State.Kind == JournalRecordKind.Open, replay.Next, replay.View, record.ETag));
                index++;
            }
        }
        var contents = replay.ToContents();

        // Claim: the first missing record is where any earlier owner writes next.
        var open = new GrainState<JournalRecord>(new JournalRecord
        {
            Kind = JournalRecordKind.Open,
            Owner = index,
            View = contents.View,
            FirstAfter = contents.FirstCounter,
            NextAfter = contents.NextCounter,
        });
        await _storage.WriteStateAsync(RecordName(index), _grainId, open, cancellationToken).ConfigureAwait(false);
        _live.Add(new LiveRecord(index, true, contents.NextCounter, contents.View, open.ETag));

        // Rewrite the head: an earlier owner's trim (an ETag-conditional head write) now fails too.
        head.State.Owner = index;
        await _storage.WriteStateAsync(HeadName, _grainId, head, cancellationToken).ConfigureAwait(false);

        _head = head;
        _owner = index;
        _nextRecord = index + 1;
        _garbageFrom = head.State.GarbageFrom;
        LogOpened(_logger, _grainId, index, head.State.FirstRecord, contents.FirstCounter, contents.NextCounter, contents.View);
        return contents;
    }

    private protected override async Task CommitAsync(JournalWrite write, CancellationToken cancellationToken)
    {
        var state = new GrainState<JournalRecord>(ToRecord(write));
        try
        {
            // No ETag: fails if the record exists (another owner claimed it).
            await _storage.WriteStateAsync(RecordName(_nextRecord), _grainId, state, cancellationToken).ConfigureAwait(false);
        }
        catch (InconsistentStateException e)
        {
            throw await DescribeConflictAsync(e, write.Attempt, cancellationToken).ConfigureAwait(false);
        }
        _live.Add(new LiveRecord(_nextRecord, false, write.NextAfter, write.View, state.ETag));
        _nextRecord++;
    }

    // A refused append names who holds the record it aimed at, so a halt says which owner it
    // met: another activation's Open record, or one of this owner's own writes.
    private async Task<InconsistentStateException> DescribeConflictAsync(InconsistentStateException conflict, long attempt, CancellationToken cancellationToken)
    {
        string holder;
        try
        {
            var read = await ReadRecordAsync(_nextRecord, cancellationToken).ConfigureAwait(false);
            holder = read is { RecordExists: true, State: { } record }
                ? string.Create(CultureInfo.InvariantCulture, $"{record.Kind} record of the owner that opened at record {record.Owner} (attempt {record.Attempt})")
                : "nothing now";
        }
        catch (Exception e)
        {
            holder = "unknown (" + e.GetType().Name + " reading it)";
        }
        return new InconsistentStateException(
            string.Create(CultureInfo.InvariantCulture,
                $"Journal of {_grainId}: record {_nextRecord} (attempt {attempt} of the owner that opened at record {_owner}) was refused: it holds {holder}. {conflict.Message}"),
            conflict.StoredEtag,
            conflict.CurrentEtag,
            conflict);
    }

    private protected override ValueTask DisposeCoreAsync() => new(_deletions);

    private protected override bool AbsentIsFinal => false; // a write that timed out may still land

    private protected override async Task<JournalWrite?> FindLandedAsync(IReadOnlyList<JournalWrite> pending, CancellationToken cancellationToken)
    {
        var read = await ReadRecordAsync(_nextRecord, cancellationToken).ConfigureAwait(false);
        if (!read.RecordExists || read.State is null) return null;
        var record = read.State;
        if (record.Owner != _owner)
        {
            throw new InconsistentStateException(
                string.Create(CultureInfo.InvariantCulture, $"Journal of {_grainId}: record {_nextRecord} was written by the owner that opened at record {record.Owner}, not by this one (record {_owner})."),
                read.ETag,
                (string?)null);
        }
        var landed = pending.FirstOrDefault(w => w.Attempt == record.Attempt)
            ?? throw new InvalidOperationException(string.Create(CultureInfo.InvariantCulture, $"Journal of {_grainId}: record {_nextRecord} holds attempt {record.Attempt}, which this owner never made."));
        _live.Add(new LiveRecord(_nextRecord, false, landed.NextAfter, landed.View, read.ETag));
        _nextRecord++;
        LogLandedLate(_logger, _grainId, _nextRecord - 1);
        return landed;
    }

    // Never throws: the write is durable by now, and the caller must not see it as failed.
    private protected override async Task AfterCommitAsync(JournalWrite write, CancellationToken cancellationToken)
    {
        var first = Index!.First;
        // A record can become droppable only when the first counter moves, or when a write
        // leaves the journal empty: only then look (so an append stays O(appended)).
        if (first == _trimCheckedAt && write.NextAfter > first) return;
        _trimCheckedAt = first;
        // The last record whose state holds no entry at or above the first counter kept.
        var cut = -1;
        for (var i = 0; i < _live.Count; i++)
        {
            if (_live[i].NextAfter <= first) cut = i;
        }
        if (cut + 1 < _trimRecords) return;
        await _deletions.ConfigureAwait(false);
        var dropped = _live.GetRange(0, cut + 1);
        var oldFirst = _head.State!.FirstRecord;
        var newHead = new JournalHead
        {
            FirstRecord = dropped[^1].Index + 1,
            FirstCounter = first,
            NextCounter = dropped[^1].NextAfter,
            View = dropped[^1].ViewAfter,
            GarbageFrom = _garbageFrom,
            Owner = _owner,
        };
        var head = new GrainState<JournalHead>(newHead) { ETag = _head.ETag, RecordExists = _head.RecordExists };
        try
        {
            await _storage.WriteStateAsync(HeadName, _grainId, head, cancellationToken).ConfigureAwait(false);
        }
        catch (InconsistentStateException e)
        {
            // The append is durable; the next write must fail: another owner opened since.
            LogTrimFenced(_logger, e, _grainId);
            Fence("another owner rewrote the journal head");
            return;
        }
        catch (Exception e)
        {
            LogTrimFailed(_logger, e, _grainId);
            _trimCheckedAt = 0;
            return;
        }
        _head = head;
        _live.RemoveRange(0, dropped.Count);

        // Delete what the head no longer covers, off the append's path; the next trim waits for it.
        _deletions = DeleteBelowHeadAsync(oldFirst, dropped, newHead.FirstRecord);
        LogTrimmed(_logger, _grainId, dropped.Count, newHead.FirstRecord, first);
    }

    /// <summary>Completes when the deletions of the last trim have finished (they never throw).</summary>
    internal Task WhenDeletedAsync() => _deletions;

    // Deletes the records below the head, except Open records (they keep fencing): the leftovers
    // of interrupted trims from _garbageFrom up to the old head, then the records just dropped.
    private async Task DeleteBelowHeadAsync(long oldFirst, List<LiveRecord> dropped, long newFirst)
    {
        var deletions = new List<Task<bool>>();
        for (var index = _garbageFrom; index < oldFirst; index++) deletions.Add(DeleteUnknownAsync(index));
        foreach (var record in dropped)
        {
            if (!record.IsOpen) deletions.Add(DeleteAsync(record.Index, record.ETag));
        }
        var clean = true;
        foreach (var deletion in deletions) clean &= await deletion.ConfigureAwait(false);
        if (clean) _garbageFrom = newFirst;
    }

    private async Task<GrainState<JournalRecord>> ReadRecordAsync(long index, CancellationToken cancellationToken)
    {
        var state = new GrainState<JournalRecord>(new JournalRecord());
        await _storage.ReadStateAsync(RecordName(index), _grainId, state, cancellationToken).ConfigureAwait(false);
        return state;
    }

    private async Task<bool> DeleteAsync(long index, string? etag)
    {
        try
        {
            var state = new GrainState<JournalRecord>(new JournalRecord()) { ETag = etag, RecordExists = true };
            await _storage.ClearStateAsync(RecordName(index), _grainId, state).ConfigureAwait(false);
            return true;
        }
        catch (Exception e)
        {
            LogDeleteFailed(_logger, e, _grainId, index);
            return false;
        }
    }

    // A record below the head left over from an interrupted trim: read it for its ETag and kind first.
    private async Task<bool> DeleteUnknownAsync(long index)
    {
        try
        {
            var read = await ReadRecordAsync(index, CancellationToken.None).ConfigureAwait(false);
            if (!read.RecordExists || read.State is null || read.State.Kind == JournalRecordKind.Open) return true;
            return await DeleteAsync(index, read.ETag).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            LogDeleteFailed(_logger, e, _grainId, index);
            return false;
        }
    }

    private JournalRecord ToRecord(JournalWrite write) => JournalRecord.Of(write, _owner);

    /// <summary>A record from the head on: whether it is an Open record, and the journal's state after it.</summary>
    private sealed record LiveRecord(long Index, bool IsOpen, ulong NextAfter, long ViewAfter, string? ETag);

    [LoggerMessage(Level = LogLevel.Information, Message = "Journal of {GrainId} opened at record {Record} (records from {FirstRecord}): counters [{First}, {Next}), view {View}.")]
    private static partial void LogOpened(ILogger logger, GrainId grainId, long record, long firstRecord, ulong first, ulong next, long view);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Journal of {GrainId}: a write that failed had landed as record {Record}; it counts.")]
    private static partial void LogLandedLate(ILogger logger, GrainId grainId, long record);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Journal of {GrainId}: dropped {Count} records; records start at {FirstRecord}, counters at {First}.")]
    private static partial void LogTrimmed(ILogger logger, GrainId grainId, int count, long firstRecord, ulong first);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Journal of {GrainId}: another owner rewrote the head; this instance is fenced.")]
    private static partial void LogTrimFenced(ILogger logger, Exception exception, GrainId grainId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Journal of {GrainId}: moving the head failed; records are dropped on a later append.")]
    private static partial void LogTrimFailed(ILogger logger, Exception exception, GrainId grainId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Journal of {GrainId}: deleting record {Record} failed; retried at the next trim.")]
    private static partial void LogDeleteFailed(ILogger logger, Exception exception, GrainId grainId, long record);
}
