using Microsoft.Extensions.Logging;
using Orleans.Serialization;

namespace MinBft.Hosting.Journal;

/// <summary>
/// The SQLite journal an earlier build kept one replica's stream in, as <see cref="FileReplicaJournal"/>
/// moves from it: read once while the file does not exist, then marked as moved
/// (<see cref="SqliteReplicaJournal.MarkMoved"/>) once the file holds it.
/// </summary>
public sealed class SqliteJournalMove(string databasePath, string name, Serializer serializer, ILoggerFactory loggerFactory)
{
    private static readonly TimeSpan BusyTimeout = TimeSpan.FromSeconds(5);

    /// <summary>The SQLite journal file.</summary>
    public string DatabasePath => databasePath;

    /// <summary>What the SQLite journal holds, or null if it was already marked as moved (its stream went to a file since lost).</summary>
    internal async Task<JournalContents?> ReadUnlessMovedAsync(CancellationToken cancellationToken)
    {
        if (await Task.Run(() => SqliteReplicaJournal.IsMarkedMoved(databasePath, name, BusyTimeout), cancellationToken).ConfigureAwait(false)) return null;
        await using var journal = new SqliteReplicaJournal(databasePath, name, serializer, BusyTimeout, loggerFactory.CreateLogger<SqliteReplicaJournal>());
        return await journal.OpenAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Marks the SQLite journal as moved (idempotent): no build reads it again.</summary>
    internal Task MarkMovedAsync(CancellationToken cancellationToken) =>
        Task.Run(() => SqliteReplicaJournal.MarkMoved(databasePath, name, BusyTimeout), cancellationToken);
}
