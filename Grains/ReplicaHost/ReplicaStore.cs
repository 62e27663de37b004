using MinBft.Hosting;
using MinBft.Hosting.Journal;
using MinBft.Protocol;

namespace MinBft.ReplicaHost;

/// <summary>
/// Fault domain i's store as replica i uses it: the journal of its own stream, and its stable
/// checkpoint in grain storage. Both are written only when the core asks (<see cref="WriteLog"/>,
/// <see cref="StoreCheckpoint"/>) and read back only at activation.
/// </summary>
internal sealed class ReplicaStore(IReplicaJournal journal, ReplicaCheckpointStore checkpoints) : IAsyncDisposable
{
    /// <summary>What survived the last activation, for <see cref="ReplicaCore.Restore"/>.</summary>
    public async Task<RecoveredState> LoadAsync(ulong usigCounter, CancellationToken cancellationToken)
    {
        var log = await journal.OpenAsync(cancellationToken);
        var checkpoint = await checkpoints.LoadAsync();
        return new RecoveredState(log.View, checkpoint.Certificate, checkpoint.StoredSnapshot(), checkpoint.ViewStarts,
            log.FirstCounter, log.Entries, usigCounter);
    }

    /// <summary>A log write: the restart after a counter gap first, if asked for, then the append.
    /// Retried unchanged after a failure (the journal finds out whether a failed append landed).</summary>
    public async Task<int> WriteLogAsync(LogWrite write)
    {
        if (write.RestartAt is { } next) await journal.RestartAtAsync(next, CancellationToken.None);
        await journal.AppendAsync(new JournalAppend(write.View, write.FirstIntentCounter, write.Intents, write.Uis, write.KeepFrom), CancellationToken.None);
        return 0;
    }

    /// <summary>Overwrites the stored checkpoint (idempotent). It runs on the thread pool, not in
    /// the replica's turn: a snapshot holds the whole service state, and serializing and writing
    /// it (synchronously, with the embedded store) took the replica out of ordering for as long
    /// (130 ms a checkpoint at 100,000 keys). The core hands out one checkpoint at a time and
    /// waits for <see cref="ReplicaCore.OnCheckpointStored"/>, so writes never overlap.</summary>
    public async Task<int> StoreCheckpointAsync(StoreCheckpoint store)
    {
        var record = new ReplicaCheckpointRecord
        {
            Certificate = store.Certificate,
            SnapshotHead = store.Snapshot.Head,
            SnapshotApplication = store.Snapshot.Application,
            SnapshotTail = store.Snapshot.Tail,
            View = store.View,
            ViewStarts = store.ViewStarts.ToArray(),
        };
        await Task.Run(() => checkpoints.WriteAsync(record));
        return 0;
    }

    /// <summary>The SQLite journal holds a connection of its own.</summary>
    public ValueTask DisposeAsync() => journal.DisposeAsync();
}
