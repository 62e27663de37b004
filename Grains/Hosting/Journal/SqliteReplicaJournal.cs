using System.Globalization;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;
using MinBft.Messages;
using Orleans.Serialization;
using Orleans.Storage;

namespace MinBft.Hosting.Journal;

/// <summary>
/// The embedded replica journal: one row per entry in a SQLite file of the fault domain's own
/// (next to, not inside, the grain storage file that holds the USIG's counter, so the two
/// fsyncs do not queue behind each other). One transaction per write, so a write is atomic;
/// WAL with synchronous=FULL, so a committed write is on disk.
/// </summary>
/// <remarks>
/// <para>Schema: <c>journal</c> has one row per journal (name, owner, last attempt, view, first
/// and next counter); each journal's entries live in their own table <c>entries_{id}</c> keyed
/// by counter (the rowid: appends go to the right edge of one B-tree, and no second index is
/// written). An append inserts one row per intent, updates one row per UI and the journal row,
/// and deletes the rows below the first counter kept: its cost is what it appends.</para>
/// <para>Fencing: <c>OpenAsync</c> increments <c>owner</c>; every write's transaction first
/// updates the journal row <c>WHERE owner = </c>the value this instance took, and rolls back
/// with <see cref="InconsistentStateException"/> if another instance opened since.</para>
/// <para>SQLite calls are synchronous; each write runs on the thread pool, so the calling grain
/// can go on (and batch the next write) while the transaction waits for the disk.</para>
/// <para>Messages are stored with the Orleans serializer, the contract the grains exchange
/// them in (version tolerance included); UIs in their own columns.</para>
/// </remarks>
public sealed partial class SqliteReplicaJournal : ReplicaJournal
{
    private const string Schema = """
        CREATE TABLE IF NOT EXISTS journal (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            owner INTEGER NOT NULL,
            attempt INTEGER NOT NULL,
            view INTEGER NOT NULL,
            first_counter INTEGER NOT NULL,
            next_counter INTEGER NOT NULL
        );
        """;

    private readonly string _path;
    private readonly string _name;
    private readonly Serializer _serializer;
    private readonly TimeSpan _busyTimeout;
    private readonly ILogger _logger;

    private SqliteConnection? _connection;
    private long _id;
    private long _owner;
    private SqliteCommand? _updateJournal;
    private SqliteCommand? _insert;
    private SqliteCommand? _setUi;
    private SqliteCommand? _deleteBelow;
    private SqliteCommand? _deleteAll;
    private SqliteCommand? _probe;

    /// <summary>Creates the journal <paramref name="name"/> in the database file <paramref name="path"/>.</summary>
    /// <param name="path">The database file (created if missing).</param>
    /// <param name="name">The journal's name in the file (the replica grain's id).</param>
    /// <param name="serializer">The Orleans serializer, for messages.</param>
    /// <param name="busyTimeout">How long a statement waits for another connection's lock on the file.</param>
    /// <param name="logger">The logger.</param>
    public SqliteReplicaJournal(string path, string name, Serializer serializer, TimeSpan busyTimeout, ILogger<SqliteReplicaJournal> logger)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(serializer);
        ArgumentNullException.ThrowIfNull(logger);
        _path = Path.GetFullPath(path);
        _name = name;
        _serializer = serializer;
        _busyTimeout = busyTimeout;
        _logger = logger;
    }

    /// <summary>The database file.</summary>
    public string DatabasePath => _path;

    /// <summary>Test hook, called inside a write's transaction at "before-commit" and "after-commit": throw from it to fail there.</summary>
    internal Action<string>? FaultHook { get; set; }

    /// <summary>Rows inserted, updated or deleted on this journal's connection so far (SQLite's total_changes()).</summary>
    internal long TotalChanges()
    {
        using var command = Connection.CreateCommand();
        command.CommandText = "SELECT total_changes()";
        return (long)command.ExecuteScalar()!;
    }

    /// <summary>Creates the file and schema if missing and checks WAL and synchronous=FULL (at silo start).</summary>
    internal static void EnsureDatabase(string path, TimeSpan busyTimeout)
    {
        using var connection = SqliteDatabase.Open(path, busyTimeout);
        using var schema = connection.CreateCommand();
        schema.CommandText = Schema;
        schema.ExecuteNonQuery();
    }

    /// <summary>
    /// Marks journal <paramref name="name"/> in <paramref name="path"/> as moved to another store:
    /// its entries are deleted and its counters set to 0, which this class (in every build) reads
    /// as damaged and refuses to open, so an older build started on the directory stops instead of
    /// running on a journal that lost the stream. Idempotent.
    /// </summary>
    internal static void MarkMoved(string path, string name, TimeSpan busyTimeout)
    {
        using var connection = SqliteDatabase.Open(path, busyTimeout);
        using var transaction = connection.BeginTransaction();
        using (var schema = connection.CreateCommand())
        {
            schema.Transaction = transaction;
            schema.CommandText = Schema;
            schema.ExecuteNonQuery();
        }
        long id;
        using (var mark = connection.CreateCommand())
        {
            mark.Transaction = transaction;
            mark.CommandText = """
                INSERT INTO journal (name, owner, attempt, view, first_counter, next_counter) VALUES ($name, 0, 0, 0, 0, 0)
                    ON CONFLICT (name) DO UPDATE SET owner = owner + 1, first_counter = 0, next_counter = 0;
                SELECT id FROM journal WHERE name = $name;
                """;
            mark.Parameters.AddWithValue("$name", name);
            id = (long)mark.ExecuteScalar()!;
        }
        using (var drop = connection.CreateCommand())
        {
            drop.Transaction = transaction;
            drop.CommandText = string.Create(CultureInfo.InvariantCulture, $"DROP TABLE IF EXISTS entries_{id};");
            drop.ExecuteNonQuery();
        }
        transaction.Commit();
    }

    /// <summary>True if <see cref="MarkMoved"/> marked journal <paramref name="name"/> in <paramref name="path"/>.</summary>
    internal static bool IsMarkedMoved(string path, string name, TimeSpan busyTimeout)
    {
        using var connection = SqliteDatabase.Open(path, busyTimeout);
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'journal'";
        if ((long)command.ExecuteScalar()! == 0) return false;
        command.CommandText = "SELECT first_counter FROM journal WHERE name = $name";
        command.Parameters.AddWithValue("$name", name);
        return command.ExecuteScalar() is long first && first == 0;
    }

    private SqliteConnection Connection => _connection ?? throw new InvalidOperationException("The journal is not open.");

    private protected override Task<JournalContents> LoadAndClaimAsync(CancellationToken cancellationToken) =>
        Task.Run(LoadAndClaim, cancellationToken);

    private protected override Task CommitAsync(JournalWrite write, CancellationToken cancellationToken)
    {
        var first = Index!.First;
        return Task.Run(() => Commit(write, first), cancellationToken);
    }

    private protected override bool AbsentIsFinal => true; // a failed transaction rolled back; nothing is left in flight

    private protected override Task<JournalWrite?> FindLandedAsync(IReadOnlyList<JournalWrite> pending, CancellationToken cancellationToken) =>
        Task.Run(() =>
        {
            using var reader = (_probe ?? throw new InvalidOperationException("The journal is not open.")).ExecuteReader();
            if (!reader.Read()) throw new InvalidDataException($"Journal {_name} lost its row in {_path}.");
            var owner = reader.GetInt64(0);
            if (owner != _owner) throw Fenced(owner);
            var attempt = reader.GetInt64(1);
            return pending.FirstOrDefault(w => w.Attempt == attempt);
        }, cancellationToken);

    private protected override ValueTask DisposeCoreAsync()
    {
        CloseConnection();
        return ValueTask.CompletedTask;
    }

    private JournalContents LoadAndClaim()
    {
        CloseConnection();
        var connection = SqliteDatabase.Open(_path, _busyTimeout);
        _connection = connection;
        using (var schema = connection.CreateCommand())
        {
            schema.CommandText = Schema;
            schema.ExecuteNonQuery();
        }

        long view;
        ulong first, next;
        var rows = new List<(long Counter, byte[] Message, long? Epoch, byte[]? Certificate)>();
        using (var transaction = connection.BeginTransaction())
        {
            using (var claim = connection.CreateCommand())
            {
                claim.Transaction = transaction;
                claim.CommandText = """
                    INSERT INTO journal (name, owner, attempt, view, first_counter, next_counter) VALUES ($name, 0, 0, 0, 1, 1)
                        ON CONFLICT (name) DO NOTHING;
                    UPDATE journal SET owner = owner + 1 WHERE name = $name
                        RETURNING id, owner, view, first_counter, next_counter;
                    """;
                claim.Parameters.AddWithValue("$name", _name);
                using var reader = claim.ExecuteReader();
                if (!reader.Read()) throw new InvalidOperationException($"Journal {_name}: claiming its row in {_path} returned nothing.");
                _id = reader.GetInt64(0);
                _owner = reader.GetInt64(1);
                view = reader.GetInt64(2);
                first = checked((ulong)reader.GetInt64(3));
                next = checked((ulong)reader.GetInt64(4));
            }

            using (var table = connection.CreateCommand())
            {
                table.Transaction = transaction;
                table.CommandText = string.Create(
                    CultureInfo.InvariantCulture,
                    $"CREATE TABLE IF NOT EXISTS {Entries} (counter INTEGER PRIMARY KEY, message BLOB NOT NULL, ui_epoch INTEGER NULL, ui_certificate BLOB NULL);");
                table.ExecuteNonQuery();
            }

            using (var select = connection.CreateCommand())
            {
                select.Transaction = transaction;
                select.CommandText = $"SELECT counter, message, ui_epoch, ui_certificate FROM {Entries} WHERE counter >= $first AND counter < $next ORDER BY counter";
                select.Parameters.AddWithValue("$first", (long)first);
                select.Parameters.AddWithValue("$next", (long)next);
                using var reader = select.ExecuteReader();
                while (reader.Read())
                {
                    rows.Add((
                        reader.GetInt64(0),
                        (byte[])reader.GetValue(1),
                        reader.IsDBNull(2) ? null : reader.GetInt64(2),
                        reader.IsDBNull(3) ? null : (byte[])reader.GetValue(3)));
                }
            }

            transaction.Commit();
        }

        if (first == 0 || next < first || (ulong)rows.Count != next - first)
            throw Corrupt($"holds {rows.Count} entries for counters [{first}, {next})");
        var entries = new List<CertifiedMessage>(rows.Count);
        foreach (var (counter, bytes, epoch, certificate) in rows)
        {
            var expected = first + (ulong)entries.Count;
            if ((ulong)counter != expected) throw Corrupt($"has counter {counter} where {expected} belongs");
            var message = _serializer.Deserialize<CertifiedMessage>(bytes)
                ?? throw Corrupt($"has no message at counter {counter}");
            if (epoch is { } e && message.Ui.IsNone)
                message = message.WithUi(new UniqueIdentifier(unchecked((ulong)e), (ulong)counter, certificate ?? []));
            entries.Add(message);
        }

        PrepareCommands(connection);
        LogOpened(_logger, _name, _path, _owner, first, next, view);
        return new JournalContents(view, first, entries);
    }

    private void Commit(JournalWrite write, ulong first)
    {
        // Serialize before taking the database's write lock.
        var blobs = new byte[write.Intents.Length][];
        for (var i = 0; i < blobs.Length; i++) blobs[i] = _serializer.SerializeToArray(write.Intents[i]);

        var connection = Connection;
        using var transaction = connection.BeginTransaction();
        Bind(_updateJournal!, transaction);
        _updateJournal!.Parameters["$attempt"].Value = write.Attempt;
        _updateJournal.Parameters["$view"].Value = write.View;
        _updateJournal.Parameters["$first"].Value = (long)write.FirstAfter;
        _updateJournal.Parameters["$next"].Value = (long)write.NextAfter;
        if (_updateJournal.ExecuteNonQuery() != 1)
        {
            using var owner = connection.CreateCommand();
            owner.Transaction = transaction;
            owner.CommandText = "SELECT owner FROM journal WHERE id = $id";
            owner.Parameters.AddWithValue("$id", _id);
            throw Fenced(owner.ExecuteScalar() as long? ?? -1);
        }

        switch (write.Kind)
        {
            case JournalWriteKind.Append:
                Bind(_insert!, transaction);
                for (var i = 0; i < blobs.Length; i++)
                {
                    var ui = write.Intents[i].Ui;
                    _insert!.Parameters["$counter"].Value = (long)(write.FirstIntentCounter + (ulong)i);
                    _insert.Parameters["$message"].Value = blobs[i];
                    _insert.Parameters["$epoch"].Value = ui.IsNone ? DBNull.Value : unchecked((long)ui.Epoch);
                    _insert.Parameters["$certificate"].Value = ui.IsNone ? DBNull.Value : ui.Certificate;
                    _insert.ExecuteNonQuery();
                }
                Bind(_setUi!, transaction);
                foreach (var ui in write.Uis)
                {
                    _setUi!.Parameters["$counter"].Value = (long)ui.Counter;
                    _setUi.Parameters["$epoch"].Value = unchecked((long)ui.Epoch);
                    _setUi.Parameters["$certificate"].Value = ui.Certificate;
                    if (_setUi.ExecuteNonQuery() != 1) throw Corrupt($"has no row for counter {ui.Counter}, which the index holds");
                }
                if (write.FirstAfter > first)
                {
                    Bind(_deleteBelow!, transaction);
                    _deleteBelow!.Parameters["$first"].Value = (long)write.FirstAfter;
                    _deleteBelow.ExecuteNonQuery();
                }
                break;
            case JournalWriteKind.RestartAt:
                Bind(_deleteAll!, transaction);
                _deleteAll!.ExecuteNonQuery();
                break;
        }

        FaultHook?.Invoke("before-commit");
        transaction.Commit();
        FaultHook?.Invoke("after-commit");
    }

    private string Entries => string.Create(CultureInfo.InvariantCulture, $"entries_{_id}");

    private void PrepareCommands(SqliteConnection connection)
    {
        _updateJournal = Command(
            connection,
            "UPDATE journal SET attempt = $attempt, view = $view, first_counter = $first, next_counter = $next WHERE id = $id AND owner = $owner",
            "$attempt", "$view", "$first", "$next");
        _updateJournal.Parameters["$id"].Value = _id;
        _updateJournal.Parameters["$owner"].Value = _owner;
        _insert = Command(
            connection,
            $"INSERT INTO {Entries} (counter, message, ui_epoch, ui_certificate) VALUES ($counter, $message, $epoch, $certificate)",
            "$counter", "$message", "$epoch", "$certificate");
        _setUi = Command(connection, $"UPDATE {Entries} SET ui_epoch = $epoch, ui_certificate = $certificate WHERE counter = $counter", "$counter", "$epoch", "$certificate");
        _deleteBelow = Command(connection, $"DELETE FROM {Entries} WHERE counter < $first", "$first");
        _deleteAll = Command(connection, $"DELETE FROM {Entries}");
        _probe = Command(connection, "SELECT owner, attempt FROM journal WHERE id = $id");
        _probe.Parameters["$id"].Value = _id;
    }

    private static SqliteCommand Command(SqliteConnection connection, string sql, params string[] parameters)
    {
        var command = connection.CreateCommand();
        command.CommandText = sql;
        foreach (var name in parameters) command.Parameters.Add(new SqliteParameter(name, null));
        if (sql.Contains("$id", StringComparison.Ordinal)) command.Parameters.Add(new SqliteParameter("$id", null));
        if (sql.Contains("$owner", StringComparison.Ordinal)) command.Parameters.Add(new SqliteParameter("$owner", null));
        return command;
    }

    private static void Bind(SqliteCommand command, SqliteTransaction transaction) => command.Transaction = transaction;

    private void CloseConnection()
    {
        foreach (var command in new[] { _updateJournal, _insert, _setUi, _deleteBelow, _deleteAll, _probe }) command?.Dispose();
        _updateJournal = _insert = _setUi = _deleteBelow = _deleteAll = _probe = null;
        _connection?.Dispose();
        _connection = null;
    }

    private InconsistentStateException Fenced(long storedOwner)
    {
        var message = string.Create(
            CultureInfo.InvariantCulture,
            $"Journal {_name} in {_path}: opened as owner {_owner}, but owner {storedOwner} opened it since (another activation). Nothing was written.");
        LogFenced(_logger, _name, _owner, storedOwner);
        return new InconsistentStateException(message, storedOwner.ToString(CultureInfo.InvariantCulture), _owner.ToString(CultureInfo.InvariantCulture));
    }

    private InvalidDataException Corrupt(string reason) => new($"Stored journal {_name} in {_path} {reason}.");

    [LoggerMessage(Level = LogLevel.Information, Message = "Journal {Name} opened in {Path} as owner {Owner}: counters [{First}, {Next}), view {View}.")]
    private static partial void LogOpened(ILogger logger, string name, string path, long owner, ulong first, ulong next, long view);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Journal {Name}: write of owner {Owner} refused, owner {StoredOwner} opened it since.")]
    private static partial void LogFenced(ILogger logger, string name, long owner, long storedOwner);
}
