using System.Globalization;
using Microsoft.Extensions.Logging;
using Orleans;
using Orleans.Runtime;
using Orleans.Serialization;
using Orleans.Storage;

namespace MinBft.Hosting.Journal;

/// <summary>Options of <see cref="SqliteReplicaJournalFactory"/>.</summary>
public sealed class SqliteReplicaJournalOptions
{
    /// <summary>Directory of the database files; the same as the grain storage's, by default.</summary>
    public string DataDirectory { get; set; } = "minbft-data";

    /// <summary>Start of the database file name; the fault domain and "-journal" are appended.</summary>
    public string FileNamePrefix { get; set; } = "minbft";

    /// <summary>The fault domain whose journals these are. Null means the silo's <see cref="FaultDomainOptions.FaultDomain"/>.</summary>
    public int? FaultDomain { get; set; }

    /// <summary>How long a statement waits for another connection's lock on the same file.</summary>
    public TimeSpan BusyTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>The silo lifecycle stage at which the file is created and checked.</summary>
    public int InitStage { get; set; } = ServiceLifecycleStage.ApplicationServices;

    /// <summary>
    /// The journal file of <paramref name="faultDomain"/>, next to the grain storage file
    /// (<c>minbft-domain-0.db</c> and <c>minbft-domain-0-journal.db</c>).
    /// </summary>
    public string GetDatabasePath(int faultDomain) =>
        Path.Combine(DataDirectory, string.Create(CultureInfo.InvariantCulture, $"{FileNamePrefix}-domain-{faultDomain}-journal.db"));
}

/// <summary>Journals of one fault domain in its own SQLite journal file (<see cref="SqliteReplicaJournal"/>).</summary>
public sealed partial class SqliteReplicaJournalFactory : IReplicaJournalFactory, ILifecycleParticipant<ISiloLifecycle>
{
    private readonly SqliteReplicaJournalOptions _options;
    private readonly Serializer _serializer;
    private readonly ILoggerFactory _loggerFactory;
    private readonly ILogger _logger;

    /// <summary>Creates the factory; <see cref="SqliteReplicaJournalOptions.FaultDomain"/> must be set.</summary>
    public SqliteReplicaJournalFactory(SqliteReplicaJournalOptions options, Serializer serializer, ILoggerFactory loggerFactory)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(serializer);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        if (options.FaultDomain is not { } faultDomain || faultDomain < 0)
        {
            throw new OrleansConfigurationException(
                $"The replica journal has no fault domain: call AddMinBftFaultDomain on the silo or set {nameof(SqliteReplicaJournalOptions)}.{nameof(SqliteReplicaJournalOptions.FaultDomain)}.");
        }
        _options = options;
        _serializer = serializer;
        _loggerFactory = loggerFactory;
        _logger = loggerFactory.CreateLogger<SqliteReplicaJournalFactory>();
        DatabasePath = Path.GetFullPath(options.GetDatabasePath(faultDomain));
    }

    /// <summary>The full path of this fault domain's journal file.</summary>
    public string DatabasePath { get; }

    /// <inheritdoc/>
    public IReplicaJournal Create(GrainId owner) =>
        new SqliteReplicaJournal(DatabasePath, owner.ToString(), _serializer, _options.BusyTimeout, _loggerFactory.CreateLogger<SqliteReplicaJournal>());

    /// <inheritdoc/>
    public void Participate(ISiloLifecycle lifecycle) =>
        lifecycle.Subscribe(nameof(SqliteReplicaJournalFactory), _options.InitStage, _ =>
        {
            // A bad path, or a file that refuses WAL, stops the silo now rather than the replica later.
            SqliteReplicaJournal.EnsureDatabase(DatabasePath, _options.BusyTimeout);
            LogReady(_logger, DatabasePath);
            return Task.CompletedTask;
        });

    [LoggerMessage(Level = LogLevel.Information, Message = "Replica journal file {Path} ready (WAL, synchronous=FULL).")]
    private static partial void LogReady(ILogger logger, string path);
}

/// <summary>Journals in a grain storage provider (<see cref="GrainStorageReplicaJournal"/>).</summary>
public sealed class GrainStorageReplicaJournalFactory(Func<IGrainStorage> storage, ILoggerFactory loggerFactory, int trimRecords = GrainStorageReplicaJournalFactory.DefaultTrimRecords)
    : IReplicaJournalFactory
{
    /// <summary>Leading records that must be droppable before the head moves past them (one head write per this many).</summary>
    public const int DefaultTrimRecords = 32;

    /// <inheritdoc/>
    public IReplicaJournal Create(GrainId owner) =>
        new GrainStorageReplicaJournal(storage(), owner, loggerFactory.CreateLogger<GrainStorageReplicaJournal>(), trimRecords);
}
