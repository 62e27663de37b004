using System.Globalization;
using Microsoft.Extensions.Logging;
using Orleans;
using Orleans.Runtime;
using Orleans.Serialization;

namespace MinBft.Hosting.Journal;

/// <summary>Options of <see cref="FileReplicaJournalFactory"/>.</summary>
public sealed class FileReplicaJournalOptions
{
    /// <summary>Directory of the journal directories; the same as the grain storage's, by default.</summary>
    public string DataDirectory { get; set; } = "minbft-data";

    /// <summary>The fault domain whose journals these are. Null means the silo's <see cref="FaultDomainOptions.FaultDomain"/>.</summary>
    public int? FaultDomain { get; set; }

    /// <summary>A journal file is compacted (rewritten with its live entries only) once it is larger than this and than twice its last compacted size.</summary>
    public long MinCompactionBytes { get; set; } = 8 * 1024 * 1024;

    /// <summary>
    /// Zeros are written this far ahead of a journal file's end (in steps of this size), so that a
    /// write lands inside the file and changes no size: its <c>fdatasync</c> then needs no file
    /// system journal commit (on ext4 with a journal, a write cost half as much or less). 0 appends
    /// to the file's end instead.
    /// </summary>
    public long PreallocationBytes { get; set; } = 1024 * 1024;

    /// <summary>
    /// Move the journals an earlier build kept in the domain's SQLite journal file
    /// (<see cref="SqliteReplicaJournalOptions.GetDatabasePath"/> in the same directory) into files, where that file exists.
    /// </summary>
    public bool MoveFromSqliteJournal { get; set; } = true;

    /// <summary>The directory of <paramref name="faultDomain"/>'s journals (<c>minbft-domain-0-journal</c>).</summary>
    public string GetDirectory(int faultDomain) =>
        Path.Combine(DataDirectory, string.Create(CultureInfo.InvariantCulture, $"minbft-domain-{faultDomain}-journal"));

    /// <summary>The directory of <paramref name="faultDomain"/>'s checkpoint snapshots
    /// (<c>minbft-domain-0-checkpoints</c>, <see cref="CheckpointSnapshotFiles"/>).</summary>
    public string GetCheckpointDirectory(int faultDomain) =>
        Path.Combine(DataDirectory, string.Create(CultureInfo.InvariantCulture, $"minbft-domain-{faultDomain}-checkpoints"));
}

/// <summary>Journals of one fault domain as files of its own (<see cref="FileReplicaJournal"/>).</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class FileReplicaJournalFactory : IReplicaJournalFactory
{
    private readonly FileReplicaJournalOptions _options;
    private readonly Serializer _serializer;
    private readonly ILoggerFactory _loggerFactory;

    /// <summary>Creates the factory; <see cref="FileReplicaJournalOptions.FaultDomain"/> must be set.</summary>
    public FileReplicaJournalFactory(FileReplicaJournalOptions options, Serializer serializer, ILoggerFactory loggerFactory)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(serializer);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        if (options.FaultDomain is not { } faultDomain || faultDomain < 0)
        {
            throw new OrleansConfigurationException(
                $"The replica journal has no fault domain: call AddMinBftFaultDomain on the silo or set {nameof(FileReplicaJournalOptions)}.{nameof(FileReplicaJournalOptions.FaultDomain)}.");
        }
        _options = options;
        _serializer = serializer;
        _loggerFactory = loggerFactory;
        Directory = Path.GetFullPath(options.GetDirectory(faultDomain));
        LegacyDatabasePath = Path.GetFullPath(new SqliteReplicaJournalOptions { DataDirectory = options.DataDirectory }.GetDatabasePath(faultDomain));
    }

    /// <summary>The full path of this fault domain's journal directory.</summary>
    public string Directory { get; }

    /// <summary>Where an earlier build kept this domain's journals (moved from when it exists).</summary>
    public string LegacyDatabasePath { get; }

    /// <inheritdoc/>
    public IReplicaJournal Create(GrainId owner)
    {
        var name = owner.ToString();
        var legacy = _options.MoveFromSqliteJournal && File.Exists(LegacyDatabasePath)
            ? new SqliteJournalMove(LegacyDatabasePath, name, _serializer, _loggerFactory)
            : null;
        return new FileReplicaJournal(
            Path.Combine(Directory, FileName(name)), name, _serializer,
            _options.MinCompactionBytes, _options.PreallocationBytes, legacy, _loggerFactory.CreateLogger<FileReplicaJournal>());
    }

    private static string FileName(string name) => ReplicaFileNames.Stem(name) + ".journal";
}
