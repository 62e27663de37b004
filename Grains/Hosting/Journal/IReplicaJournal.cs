using MinBft.Messages;

namespace MinBft.Hosting.Journal;

/// <summary>One durable, atomic append to a replica's own-stream journal.</summary>
public sealed record JournalAppend(
    long View,
    ulong FirstIntentCounter,
    IReadOnlyList<CertifiedMessage> Intents,
    IReadOnlyList<UniqueIdentifier> Uis,
    ulong KeepFrom);

/// <summary>What a journal holds: entries from <see cref="FirstCounter"/> on, each with its UI where
/// that UI was durably appended.</summary>
public sealed record JournalContents(long View, ulong FirstCounter, IReadOnlyList<CertifiedMessage> Entries);

/// <summary>A replica's durable own-stream log (see the helper's implementations).</summary>
public interface IReplicaJournal
{
    Task<JournalContents> OpenAsync(CancellationToken ct);
    Task AppendAsync(JournalAppend append, CancellationToken ct);
    Task DropFromAsync(ulong counter, CancellationToken ct);
    Task RestartAtAsync(ulong nextCounter, CancellationToken ct);
}

/// <summary>This silo's journals: one per replica grain of its fault domain.</summary>
public interface IReplicaJournalFactory
{
    IReplicaJournal Create(Orleans.Runtime.GrainId replica);
}
