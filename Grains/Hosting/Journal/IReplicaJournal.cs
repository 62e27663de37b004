using MinBft.Messages;
using Orleans.Runtime;

namespace MinBft.Hosting.Journal;

/// <summary>
/// One durable, atomic append to a replica's journal: after a crash either all of it is
/// durable or none of it.
/// </summary>
/// <param name="View">The replica's view now; the view of the last append is restored on load. It never goes back.</param>
/// <param name="FirstIntentCounter">The counter of <c>Intents[0]</c>: the journal's next counter. Ignored when <paramref name="Intents"/> is empty.</param>
/// <param name="Intents">New entries at consecutive counters, usually without UI (<see cref="UniqueIdentifier.IsNone"/>: an intent).
/// An entry that carries a UI must carry the one for its own counter.</param>
/// <param name="Uis">UIs for entries appended earlier or in this append, identified by <see cref="UniqueIdentifier.Counter"/>.
/// A UI equal to the one already stored for its counter is accepted and ignored (a retry).</param>
/// <param name="KeepFrom">Entries below this counter may be dropped from storage (0: keep all). At most the next counter after this append.</param>
public sealed record JournalAppend(
    long View,
    ulong FirstIntentCounter,
    IReadOnlyList<CertifiedMessage> Intents,
    IReadOnlyList<UniqueIdentifier> Uis,
    ulong KeepFrom);

/// <summary>
/// What a journal holds: <c>Entries[i]</c> has counter <c>FirstCounter + i</c>, with its UI where
/// that UI was durably appended, else <see cref="UniqueIdentifier.None"/>. The next intent goes
/// at <see cref="NextCounter"/>. An empty journal that was never written holds view 0 and starts at counter 1.
/// </summary>
public sealed record JournalContents(long View, ulong FirstCounter, IReadOnlyList<CertifiedMessage> Entries)
{
    /// <summary>The counter the next intent must have.</summary>
    public ulong NextCounter => FirstCounter + (ulong)Entries.Count;
}

/// <summary>
/// A replica's durable journal of its own UI-certified message stream (intents, then their
/// UIs). A write costs what it appends, not what is stored. The caller does group commit:
/// it never overlaps two calls on one journal, and batches everything produced while one
/// write is in flight into the next.
/// </summary>
/// <remarks>
/// <para>Invalid input (counters not consecutive or not contiguous with what is stored, a UI
/// for no stored entry, a second, different UI for a counter, a view going back, ...) is a bug
/// in the caller: the call throws <see cref="ArgumentException"/> and stores nothing.</para>
/// <para>Failures: <see cref="Orleans.Storage.InconsistentStateException"/> means another
/// activation opened the journal since this one did (fencing); every later call fails the
/// same way until <see cref="OpenAsync"/>. Any other exception leaves the write's outcome
/// unknown: retry it (an append extended with more intents or UIs is fine, as long as it
/// repeats the failed one's intents first), and the journal finds out whether the failed
/// attempt became durable and writes only the rest. Or call <see cref="OpenAsync"/> again.</para>
/// </remarks>
public interface IReplicaJournal : IAsyncDisposable
{
    /// <summary>
    /// Loads the journal and takes ownership of it: appends of an instance that opened it
    /// earlier (another activation of the replica) fail from now on.
    /// </summary>
    Task<JournalContents> OpenAsync(CancellationToken cancellationToken);

    /// <summary>Appends durably (synced to the store when the task completes) and atomically.</summary>
    Task AppendAsync(JournalAppend append, CancellationToken cancellationToken);

    /// <summary>
    /// Recovery after a counter gap: removes every entry; the next intent goes at
    /// <paramref name="nextCounter"/>, which must lie above every counter with a stored UI
    /// and not below the first stored counter.
    /// </summary>
    Task RestartAtAsync(ulong nextCounter, CancellationToken cancellationToken);
}

/// <summary>This fault domain's journals: one per replica grain, in the domain's own store.</summary>
public interface IReplicaJournalFactory
{
    /// <summary>The journal of <paramref name="owner"/> (a replica grain). Call <see cref="IReplicaJournal.OpenAsync"/> before anything else.</summary>
    IReplicaJournal Create(GrainId owner);
}
