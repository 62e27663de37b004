using System.Globalization;
using Microsoft.Extensions.Logging;
using Orleans.Runtime;

namespace MinBft.Hosting.Journal;

/// <summary>
/// The service state of each replica's stored checkpoint as a file of its own, beside the
/// journals of an embedded store (<c>minbft-domain-i-checkpoints/</c>), while the checkpoint's
/// record (certificate, view, view starts, the snapshot's small parts) stays in grain storage and
/// names the file. A snapshot holds the whole service state: as a SQLite row, each checkpoint
/// rewrote it through the database (reading the old row's pages to free them, then the WAL, then
/// the database file), which cost more CPU than ordering at 100,000 keys (RESULTS.md).
/// </summary>
/// <remarks>
/// A file is written whole under a name never used before, synced, and only then named by the
/// record; a referenced file is never changed. So a crash leaves either the old record and its
/// file (plus an unnamed new file, deleted at the next load), or the new ones. The content is
/// checked where it counts: the core installs a stored snapshot only if its digest is the one
/// its certificate certifies.
/// </remarks>
public sealed partial class CheckpointSnapshotFiles(string directory, ILogger<CheckpointSnapshotFiles> logger)
{
    private const string Extension = ".snapshot";

    /// <summary>The full path of this fault domain's checkpoint directory.</summary>
    public string Directory { get; } = Path.GetFullPath(directory);

    /// <summary>Writes <paramref name="bytes"/> to a new file for <paramref name="owner"/>'s checkpoint
    /// at <paramref name="sequence"/>, durably (file and directory synced); returns its name.</summary>
    public string Write(GrainId owner, ulong sequence, ReadOnlySpan<byte> bytes)
    {
        System.IO.Directory.CreateDirectory(Directory);
        // Unique, so that a retried store never rewrites a file a stored record may already name.
        var name = string.Create(CultureInfo.InvariantCulture, $"{Stem(owner)}-{sequence}-{Guid.NewGuid():N}{Extension}");
        using (var file = new FileStream(Path.Combine(Directory, name), FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 0))
        {
            // One sync for the whole file: syncing it a MiB at a time, so that the journal's
            // syncs would not wait behind a large one, measured slower (RESULTS.md).
            file.Write(bytes);
            file.Flush(flushToDisk: true);
        }
        // Registered with the file journal only, which runs on Linux.
        if (OperatingSystem.IsLinux()) FileReplicaJournal.SyncDirectory(Directory);
        return name;
    }

    /// <summary>The file a stored record names; <see cref="InvalidDataException"/> if it is missing
    /// or not the length the record says.</summary>
    public byte[] Read(string name, long length)
    {
        if (name.Length == 0 || Path.GetFileName(name) != name || !name.EndsWith(Extension, StringComparison.Ordinal))
            throw new InvalidDataException($"The stored checkpoint names '{name}', which is not a checkpoint snapshot file.");
        var path = Path.Combine(Directory, name);
        if (!File.Exists(path))
            throw new InvalidDataException($"The stored checkpoint's snapshot file {path} is missing: restore the data directory whole, or start the replica on an empty store to fetch the state from its peers.");
        var bytes = File.ReadAllBytes(path);
        if (bytes.Length != length)
            throw new InvalidDataException($"The stored checkpoint's snapshot file {path} holds {bytes.Length} bytes, not the {length} its record says.");
        return bytes;
    }

    /// <summary>Deletes <paramref name="owner"/>'s snapshot files other than <paramref name="keep"/>:
    /// those of older checkpoints, and any a crash left unnamed. A failure is logged, not thrown
    /// (an extra file costs space, not correctness).</summary>
    public void DeleteAllBut(GrainId owner, string? keep)
    {
        if (!System.IO.Directory.Exists(Directory)) return;
        foreach (var path in System.IO.Directory.EnumerateFiles(Directory, Stem(owner) + "-*" + Extension))
        {
            if (Path.GetFileName(path) == keep) continue;
            try
            {
                File.Delete(path);
            }
            catch (IOException e)
            {
                LogDeleteFailed(logger, e, path);
            }
            catch (UnauthorizedAccessException e)
            {
                LogDeleteFailed(logger, e, path);
            }
        }
    }

    private static string Stem(GrainId owner) => ReplicaFileNames.Stem(owner.ToString());

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not delete the checkpoint snapshot file {Path}, which no stored checkpoint names")]
    private static partial void LogDeleteFailed(ILogger logger, Exception exception, string path);
}
