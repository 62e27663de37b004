using System.Globalization;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;
using Orleans;
using Orleans.Runtime;
using Orleans.Serialization.Serializers;
using Orleans.Storage;

namespace MinBft.Hosting;

/// <summary>
/// Grain storage in one SQLite file per fault domain: the embedded, zero-set-up store.
/// </summary>
/// <remarks>
/// <para>Rows are keyed by (grain type, grain key, state name). The ETag is the row's version,
/// a number that only grows: every write and every clear adds one. A clear keeps the row as a
/// tombstone (no data, next version) so that versions never restart and an activation holding
/// an old ETag can never match a recreated row.</para>
/// <para>ETag rules, checked by the database in the same statement that writes: a null ETag
/// means "I saw no row" and only succeeds if there is none; any other ETag must equal the
/// stored version. Anything else throws <see cref="InconsistentStateException"/> and changes
/// nothing. This is what keeps two activations of one USIG (Orleans' directory is eventually
/// consistent) from both writing from the same counter value.</para>
/// <para>Durability: WAL journal with synchronous=FULL, so a completed write has been flushed
/// to disk; a USIG returns a UI only after its counter write completes.</para>
/// <para>One connection, used by one operation at a time. SQLite calls are synchronous, so an
/// operation holds its thread for the duration of the write and flush (about a millisecond).</para>
/// </remarks>
public sealed partial class SqliteGrainStorage : IGrainStorage, ILifecycleParticipant<ISiloLifecycle>, IDisposable
{
    private const string Schema = """
        CREATE TABLE IF NOT EXISTS grain_state (
            grain_type TEXT NOT NULL,
            grain_key TEXT NOT NULL,
            state_name TEXT NOT NULL,
            version INTEGER NOT NULL,
            data BLOB NULL,
            PRIMARY KEY (grain_type, grain_key, state_name)
        ) WITHOUT ROWID;
        """;

    private const string KeyCondition = "grain_type = $type AND grain_key = $key AND state_name = $name";

    private readonly string _name;
    private readonly SqliteGrainStorageOptions _options;
    private readonly int _faultDomain;
    private readonly string _databasePath;
    private readonly IGrainStorageSerializer _serializer;
    private readonly IActivatorProvider _activatorProvider;
    private readonly ILogger<SqliteGrainStorage> _logger;

    // Guards _connection: a SqliteConnection must not be used by two operations at once.
    private readonly SemaphoreSlim _gate = new(1, 1);
    private SqliteConnection? _connection;
    private bool _disposed;

    /// <summary>Creates the provider; the database is opened on first use or at silo start.</summary>
    /// <param name="name">The provider name, for logs.</param>
    /// <param name="options">Options; <see cref="SqliteGrainStorageOptions.FaultDomain"/> must be set.</param>
    /// <param name="serializer">Used when the options give no serializer (normally the Orleans one).</param>
    /// <param name="activatorProvider">Creates the empty state of a grain that has no stored state.</param>
    /// <param name="logger">The logger.</param>
    public SqliteGrainStorage(
        string name,
        SqliteGrainStorageOptions options,
        IGrainStorageSerializer serializer,
        IActivatorProvider activatorProvider,
        ILogger<SqliteGrainStorage> logger)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(serializer);
        ArgumentNullException.ThrowIfNull(activatorProvider);
        ArgumentNullException.ThrowIfNull(logger);
        if (options.FaultDomain is not { } faultDomain || faultDomain < 0)
        {
            throw new OrleansConfigurationException(
                $"Grain storage '{name}' has no fault domain: call AddMinBftFaultDomain on the silo or set {nameof(SqliteGrainStorageOptions)}.{nameof(SqliteGrainStorageOptions.FaultDomain)}.");
        }

        _name = name;
        _options = options;
        _faultDomain = faultDomain;
        _databasePath = Path.GetFullPath(options.GetDatabasePath(faultDomain));
        _serializer = options.GrainStorageSerializer ?? serializer;
        _activatorProvider = activatorProvider;
        _logger = logger;
    }

    /// <summary>The full path of this fault domain's database file.</summary>
    public string DatabasePath => _databasePath;

    /// <inheritdoc/>
    public Task ReadStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState) =>
        ReadStateAsync(stateName, grainId, grainState, CancellationToken.None);

    /// <inheritdoc/>
    public async Task ReadStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(grainState);
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            using var command = CreateCommand($"SELECT version, data FROM grain_state WHERE {KeyCondition}", stateName, grainId);
            using var reader = command.ExecuteReader();
            if (!reader.Read())
            {
                grainState.State = CreateEmptyState<T>();
                grainState.ETag = null;
                grainState.RecordExists = false;
                return;
            }

            var version = reader.GetInt64(0);
            if (reader.IsDBNull(1))
            {
                // Tombstone of a cleared state: no record, but its version is the ETag to write with.
                grainState.State = CreateEmptyState<T>();
                grainState.RecordExists = false;
            }
            else
            {
                var data = (byte[])reader.GetValue(1);

                // Never substitute an empty state for stored data: a USIG restarting from an empty
                // counter would issue the same UI twice.
                grainState.State = _serializer.Deserialize<T>(new BinaryData(data))
                    ?? throw new InvalidOperationException($"Stored state '{stateName}' of {grainId} deserialized to null.");
                grainState.RecordExists = true;
            }

            grainState.ETag = FormatETag(version);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <inheritdoc/>
    public Task WriteStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState) =>
        WriteStateAsync(stateName, grainId, grainState, CancellationToken.None);

    /// <inheritdoc/>
    public async Task WriteStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(grainState);

        // Serialize before taking the gate: it is the caller's CPU work, not the database's.
        var data = _serializer.Serialize(grainState.State).ToArray();

        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var expected = ParseETag(stateName, grainId, grainState.ETag);
            long newVersion;
            SqliteCommand command;
            if (expected is null)
            {
                newVersion = 1;
                command = CreateCommand(
                    "INSERT INTO grain_state (grain_type, grain_key, state_name, version, data) "
                    + "VALUES ($type, $key, $name, 1, $data) ON CONFLICT DO NOTHING",
                    stateName, grainId);
            }
            else
            {
                newVersion = expected.Value + 1;
                command = CreateCommand(
                    $"UPDATE grain_state SET version = version + 1, data = $data WHERE {KeyCondition} AND version = $expected",
                    stateName, grainId);
                command.Parameters.AddWithValue("$expected", expected.Value);
            }

            using (command)
            {
                command.Parameters.AddWithValue("$data", data);
                if (command.ExecuteNonQuery() != 1)
                {
                    throw Inconsistent("write", stateName, grainId, grainState.ETag);
                }
            }

            grainState.ETag = FormatETag(newVersion);
            grainState.RecordExists = true;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <inheritdoc/>
    public Task ClearStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState) =>
        ClearStateAsync(stateName, grainId, grainState, CancellationToken.None);

    /// <inheritdoc/>
    public async Task ClearStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(grainState);

        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var expected = ParseETag(stateName, grainId, grainState.ETag);
            if (expected is null)
            {
                // "I saw no row": correct only if there is still none, and then there is nothing to clear.
                if (ReadVersion(stateName, grainId) is not null)
                {
                    throw Inconsistent("clear", stateName, grainId, grainState.ETag);
                }
            }
            else
            {
                using var command = CreateCommand(
                    $"UPDATE grain_state SET version = version + 1, data = NULL WHERE {KeyCondition} AND version = $expected",
                    stateName, grainId);
                command.Parameters.AddWithValue("$expected", expected.Value);
                if (command.ExecuteNonQuery() != 1)
                {
                    throw Inconsistent("clear", stateName, grainId, grainState.ETag);
                }

                grainState.ETag = FormatETag(expected.Value + 1);
            }

            grainState.State = CreateEmptyState<T>();
            grainState.RecordExists = false;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <inheritdoc/>
    public void Participate(ISiloLifecycle lifecycle) =>
        lifecycle.Subscribe(
            $"{nameof(SqliteGrainStorage)}-{_name}",
            _options.InitStage,
            async cancellationToken =>
            {
                // Open at start so a bad path or a locked/corrupt file stops the silo instead of
                // failing the first replica activation.
                await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
                try
                {
                    EnsureOpen();
                }
                finally
                {
                    _gate.Release();
                }
            });

    /// <inheritdoc/>
    public void Dispose()
    {
        // Waits for an operation in progress so the connection is not closed under it.
        _gate.Wait();
        try
        {
            _disposed = true;
            _connection?.Dispose();
            _connection = null;
        }
        finally
        {
            _gate.Release();
        }
    }

    private SqliteConnection EnsureOpen()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_connection is not null)
        {
            return _connection;
        }

        var connection = SqliteDatabase.Open(_databasePath, _options.BusyTimeout);
        try
        {
            using var schema = connection.CreateCommand();
            schema.CommandText = Schema;
            schema.ExecuteNonQuery();
        }
        catch
        {
            connection.Dispose();
            throw;
        }

        LogOpened(_logger, _name, _faultDomain, _databasePath);
        _connection = connection;
        return connection;
    }

    private SqliteCommand CreateCommand(string sql, string stateName, GrainId grainId)
    {
        var command = EnsureOpen().CreateCommand();
        command.CommandText = sql;
        command.Parameters.AddWithValue("$type", grainId.Type.ToString());
        command.Parameters.AddWithValue("$key", grainId.Key.ToString());
        command.Parameters.AddWithValue("$name", stateName);
        return command;
    }

    private long? ReadVersion(string stateName, GrainId grainId)
    {
        using var command = CreateCommand($"SELECT version FROM grain_state WHERE {KeyCondition}", stateName, grainId);
        return command.ExecuteScalar() is long version ? version : null;
    }

    // Called with the gate held.
    private InconsistentStateException Inconsistent(string operation, string stateName, GrainId grainId, string? currentETag)
    {
        // Only for the message: the decision was already taken atomically by the failed statement.
        var stored = ReadVersion(stateName, grainId) is { } version ? FormatETag(version) : null;
        LogETagMismatch(_logger, operation, stateName, grainId, stored, currentETag);
        return new InconsistentStateException(
            $"Grain storage '{_name}': {operation} of state '{stateName}' of {grainId} with ETag '{currentETag ?? "(none)"}' "
            + $"rejected; the stored ETag is '{stored ?? "(no row)"}'. Another activation wrote this state.",
            stored,
            currentETag);
    }

    // Called with the gate held (building the exception reads the database).
    private long? ParseETag(string stateName, GrainId grainId, string? etag)
    {
        if (etag is null)
        {
            return null;
        }

        if (long.TryParse(etag, NumberStyles.None, CultureInfo.InvariantCulture, out var version) && version > 0)
        {
            return version;
        }

        // Not one of ours (e.g. state read from another provider): it can never match.
        throw Inconsistent("use", stateName, grainId, etag);
    }

    private static string FormatETag(long version) => version.ToString(CultureInfo.InvariantCulture);

    private T CreateEmptyState<T>() => _activatorProvider.GetActivator<T>().Create();

    [LoggerMessage(Level = LogLevel.Information, Message = "Grain storage {Name} opened fault domain {FaultDomain} store {Path}.")]
    private static partial void LogOpened(ILogger logger, string name, int faultDomain, string path);

    [LoggerMessage(Level = LogLevel.Warning, Message = "ETag mismatch on {Operation} of state {StateName} of {GrainId}: stored {StoredETag}, given {CurrentETag}.")]
    private static partial void LogETagMismatch(ILogger logger, string operation, string stateName, GrainId grainId, string? storedETag, string? currentETag);
}
