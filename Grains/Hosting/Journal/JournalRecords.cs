using MinBft.Messages;

namespace MinBft.Hosting.Journal;

/// <summary>What a record of <see cref="GrainStorageReplicaJournal"/> or a frame of <see cref="FileReplicaJournal"/> holds.</summary>
[GenerateSerializer, Alias("minbft.JournalRecordKind")]
public enum JournalRecordKind
{
    /// <summary>Grain storage: written by <c>OpenAsync</c>, claims the next record, so that an earlier
    /// owner's next write fails. File: the head frame, the journal's whole contents when the file was written.</summary>
    Open,

    /// <summary>An append: intents, UIs, view and the new first counter.</summary>
    Append,

    /// <summary>Entries from <see cref="JournalRecord.NextAfter"/> on are removed. Written only by
    /// earlier builds (their restarts cut intents the USIG had not certified; now those are
    /// certified and sent instead); still replayed, so their journals load.</summary>
    DropFrom,

    /// <summary>Every entry is removed; the next intent goes at <see cref="JournalRecord.NextAfter"/>.</summary>
    RestartAt,
}

/// <summary>
/// One write, never rewritten: a record of <see cref="GrainStorageReplicaJournal"/> (state
/// <c>journal-{index}</c>) or a frame of <see cref="FileReplicaJournal"/>. Grain storage records
/// are written with no ETag, so a record that exists cannot be written again: two owners aiming
/// at the same index cannot both succeed.
/// </summary>
[GenerateSerializer, Alias("minbft.JournalRecord")]
public sealed class JournalRecord
{
    [Id(0)]
    public JournalRecordKind Kind { get; set; }

    /// <summary>The index of the writer's <see cref="JournalRecordKind.Open"/> record: who wrote this.</summary>
    [Id(1)]
    public long Owner { get; set; }

    /// <summary>Tells the writer's attempts apart when it looks whether a failed one landed.</summary>
    [Id(2)]
    public long Attempt { get; set; }

    [Id(3)]
    public long View { get; set; }

    [Id(4)]
    public ulong FirstIntentCounter { get; set; }

    [Id(5)]
    public CertifiedMessage[] Intents { get; set; } = [];

    [Id(6)]
    public UniqueIdentifier[] Uis { get; set; } = [];

    /// <summary>The journal's first counter once this record is applied (entries below are dropped).</summary>
    [Id(7)]
    public ulong FirstAfter { get; set; }

    /// <summary>The journal's next counter once this record is applied (checked on load).</summary>
    [Id(8)]
    public ulong NextAfter { get; set; }

    /// <summary>The record that stores <paramref name="write"/>, written by owner <paramref name="owner"/>.</summary>
    internal static JournalRecord Of(JournalWrite write, long owner) => new()
    {
        Kind = write.Kind switch
        {
            JournalWriteKind.Append => JournalRecordKind.Append,
            _ => JournalRecordKind.RestartAt,
        },
        Owner = owner,
        Attempt = write.Attempt,
        View = write.View,
        FirstIntentCounter = write.FirstIntentCounter,
        Intents = write.Intents,
        Uis = write.Uis,
        FirstAfter = write.FirstAfter,
        NextAfter = write.NextAfter,
    };
}

/// <summary>
/// Where <see cref="GrainStorageReplicaJournal"/>'s records start (state <c>journal-head</c>),
/// and the journal's state just before that record, so that records before it can be deleted.
/// Written when the journal is opened and when records are dropped, never on an append.
/// </summary>
[GenerateSerializer, Alias("minbft.JournalHead")]
public sealed class JournalHead
{
    [Id(0)]
    public long FirstRecord { get; set; }

    [Id(1)]
    public ulong FirstCounter { get; set; } = 1;

    [Id(2)]
    public ulong NextCounter { get; set; } = 1;

    [Id(3)]
    public long View { get; set; }

    /// <summary>Records from here up to <see cref="FirstRecord"/> may still exist (their deletion may not have finished).</summary>
    [Id(4)]
    public long GarbageFrom { get; set; }

    /// <summary>The index of the last opener's <see cref="JournalRecordKind.Open"/> record.</summary>
    [Id(5)]
    public long Owner { get; set; } = -1;
}
