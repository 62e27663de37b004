using System.Globalization;
using System.Runtime.Versioning;
using MinBft.Usig;

namespace MinBft;

/// <summary>
/// Where the in-process USIG keeps its counter when the fault domain's storage is embedded
/// (SQLite): in the USIG program's counter file (<see cref="FileCounterStore"/>: two checksummed
/// 4 KiB slots, fsync before a UI is returned, locked against a second opener), beside the domain's
/// SQLite files instead of a row in them. A counter write is on every operation's path, and one
/// synced 4 KiB write costs less than a SQLite transaction. With Redis the counter stays in the
/// domain's grain storage, which any silo of the domain can reach.
/// </summary>
/// <remarks>
/// A counter an earlier build kept in grain storage is moved into the file once, and grain storage
/// is then marked as moved: from then on a missing file stops the USIG (its state is lost; it needs
/// a new epoch) instead of bringing an older counter back, which would let it certify two messages
/// with one counter.
/// </remarks>
[SupportedOSPlatform("linux")]
internal static class EmbeddedUsigCounterFile
{
    public static string PathFor(string dataDirectory, int faultDomain) =>
        Path.Combine(dataDirectory, string.Create(CultureInfo.InvariantCulture, $"minbft-domain-{faultDomain}.usig"));

    /// <summary>Opens USIG <paramref name="replicaId"/>'s counter file, first moving a counter that
    /// <paramref name="grainStorage"/> still holds into it. <paramref name="initializing"/>: the
    /// operator asked for a fresh state (a new epoch), so a missing file is expected. The caller
    /// disposes the store.</summary>
    public static async Task<FileCounterStore> OpenAsync(string path, int replicaId, GrainStorageCounterStore grainStorage, bool initializing)
    {
        var stored = await grainStorage.ReadStoredAsync();
        if (!File.Exists(path))
        {
            if (stored.MovedToFile && !initializing)
                throw new InvalidDataException($"USIG {replicaId}'s counter file {path} is missing, and its counter was moved there from grain storage: the USIG's state is lost and it needs a new epoch (see 'A lost or corrupted USIG state' in the README)");
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            // All or nothing: a crash here leaves no file, and the counter still in grain storage.
            // The whole state moves: counter, recent digests and the messages the last batch kept.
            if (stored.Usig is { } held) FileCounterStore.CreateHolding(path, replicaId, held.ToUsigState());
        }
        var file = FileCounterStore.Open(path, replicaId, create: true);
        try
        {
            // The file holds the counter now (moved above, or before a crash on an earlier start).
            if (stored.Usig is not null) await grainStorage.MarkMovedToFileAsync();
            return file;
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }
}
