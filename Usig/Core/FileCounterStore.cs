using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Microsoft.Win32.SafeHandles;

namespace MinBft.Usig;

/// <summary>
/// The USIG program's counter file: two fixed slots, each holding a whole state with a sequence
/// number and a SHA-256 checksum. A write goes to the slot that does not hold the newest state and
/// is synced (fdatasync) before it returns, so a torn write (a crash mid-write) damages only that slot
/// and the previous state survives in the other; a read takes the valid slot with the higher
/// sequence. The file is locked (FileShare.None: flock on Linux), so a second USIG process on the
/// same file fails to open it instead of forking the counter. Rollback protection rests on the
/// file system and whoever can write the file: a real deployment would keep the counter in a TPM
/// NV counter or an enclave.
/// <code>
/// slot (4 KiB, big-endian) := magic[8] sequence:u64 replica:i32 epoch:u64 counter:u64 n:u16 n×digest[32]
///                             [keptCount:u8 keptCount×(length:u16 bytes), format 2 only] sha256[32] of all before it
/// </code>
/// Format 2 (<c>MBUSIG02</c>, always written) holds the last batch's kept messages, so they are
/// durable in the same synced write as the counter that certified them; format 1 (<c>MBUSIG01</c>,
/// written by earlier builds, no kept part) still reads, as a state that keeps nothing, and the
/// first write after it replaces both slots, so that no earlier build can read the file again. A slot
/// whose kept part runs past the slot or does not fit the last batch is invalid like a bad
/// checksum: the other slot's state, with its own kept messages, is read instead.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed partial class FileCounterStore : IUsigCounterStore, IDisposable
{
    private const int SlotSize = 4096;
    private const int HeaderSize = 8 + 8 + 4 + 8 + 8 + 2;
    private const int ChecksumSize = 32;
    private static ReadOnlySpan<byte> MagicV1 => "MBUSIG01"u8;
    private static ReadOnlySpan<byte> MagicV2 => "MBUSIG02"u8;

    private readonly FileStream _stream;
    // Taken once: FileStream.SafeFileHandle's getter seeks to sync the stream's position each time
    // (four lseeks per counter write); every access here is positional (RandomAccess).
    private readonly SafeFileHandle _file;
    private readonly int _replicaId;
    private ulong _sequence;
    // A valid format 1 slot was read: the next write goes to both slots (see WriteAsync).
    private bool _formatOneLeft;

    private FileCounterStore(FileStream stream, int replicaId) => (_stream, _file, _replicaId) = (stream, stream.SafeFileHandle, replicaId);

    private SafeFileHandle File => _file;

    /// <summary>Opens the counter file of USIG <paramref name="replicaId"/>; only <paramref name="create"/>
    /// (initialisation) creates a missing one.</summary>
    public static FileCounterStore Open(string path, int replicaId, bool create)
    {
        if (!create && !System.IO.File.Exists(path)) throw new UsigNotInitializedException(replicaId, path);
        var options = new FileStreamOptions { Mode = FileMode.Open, Access = FileAccess.ReadWrite, Share = FileShare.None, BufferSize = 0 };
        if (create) (options.Mode, options.UnixCreateMode) = (FileMode.OpenOrCreate, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var stream = new FileStream(path, options);
        if (create) SyncDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        return new FileCounterStore(stream, replicaId);
    }

    /// <summary>Creates the counter file at <paramref name="path"/> holding <paramref name="state"/>,
    /// all or nothing: written and synced under a temporary name, then renamed into place and the
    /// directory synced, so a crash leaves either no file or the whole state (a counter moved in
    /// from another store must never come back as an empty or torn file).</summary>
    public static void CreateHolding(string path, int replicaId, UsigState state)
    {
        if (System.IO.File.Exists(path)) throw new IOException($"{path} exists: a USIG counter file is never replaced");
        var temporary = path + ".new";
        System.IO.File.Delete(temporary);
        using (var store = Open(temporary, replicaId, create: true))
            store.WriteAsync(state, CancellationToken.None).GetAwaiter().GetResult();
        System.IO.File.Move(temporary, path);
        SyncDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
    }

    public Task<UsigState?> ReadAsync(CancellationToken cancellationToken)
    {
        if (RandomAccess.GetLength(File) == 0) return Task.FromResult<UsigState?>(null); // created, never written
        var slots = new[] { Parse(0), Parse(1) }.Where(s => s is not null).OrderByDescending(s => s!.Value.Sequence).ToArray();
        if (slots.Length == 0) throw new InvalidDataException("the USIG counter file holds no valid state: if 'init' was interrupted, delete the file and init again; otherwise the state is lost and the USIG needs a new epoch");
        _sequence = slots[0]!.Value.Sequence;
        _formatOneLeft = slots.Any(s => s!.Value.Format == 1);
        return Task.FromResult<UsigState?>(slots[0]!.Value.State);
    }

    public Task WriteAsync(UsigState state, CancellationToken cancellationToken)
    {
        var kept = state.KeptMessages;
        var n = state.Recent.Length / UsigCertificateInput.DigestLength;
        var size = HeaderSize + state.Recent.Length + 1 + kept.Sum(m => 2L + m.Length) + ChecksumSize;
        // The core never produces such a state; a slot that held part of one would not read back.
        if (state.Recent.Length % UsigCertificateInput.DigestLength != 0 || n > ushort.MaxValue || kept.Length > byte.MaxValue
            || kept.Any(m => m.Length > ushort.MaxValue) || size > SlotSize)
            throw new ArgumentException($"a USIG state of {n} digests and {kept.Length} kept messages ({size} bytes) does not fit a {SlotSize}-byte slot", nameof(state));
        var slot = new byte[SlotSize];
        MagicV2.CopyTo(slot);
        BinaryPrimitives.WriteInt32BigEndian(slot.AsSpan(16), _replicaId);
        BinaryPrimitives.WriteUInt64BigEndian(slot.AsSpan(20), state.Epoch);
        BinaryPrimitives.WriteUInt64BigEndian(slot.AsSpan(28), state.Counter);
        BinaryPrimitives.WriteUInt16BigEndian(slot.AsSpan(36), (ushort)n);
        state.Recent.CopyTo(slot, HeaderSize);
        var at = HeaderSize + state.Recent.Length;
        slot[at++] = (byte)kept.Length;
        foreach (var message in kept)
        {
            BinaryPrimitives.WriteUInt16BigEndian(slot.AsSpan(at), (ushort)message.Length);
            message.CopyTo(slot, at + 2);
            at += 2 + message.Length;
        }
        WriteSlot(slot, at);
        // The first write over a format 1 file goes to the other slot too, once the first is
        // durable (a torn second write leaves the first): a build that reads only format 1 would
        // otherwise take the format 1 slot, an older counter, for the state and re-issue counters.
        // With both slots in format 2 it finds no valid slot and refuses to run.
        if (_formatOneLeft) WriteSlot(slot, at);
        _formatOneLeft = false;
        return Task.CompletedTask;
    }

    // The slot's bytes under the next sequence number, into the slot that does not hold the newest state, synced.
    private void WriteSlot(byte[] slot, int checksumAt)
    {
        BinaryPrimitives.WriteUInt64BigEndian(slot.AsSpan(8), _sequence + 1);
        SHA256.HashData(slot.AsSpan(0, checksumAt), slot.AsSpan(checksumAt));
        RandomAccess.Write(File, slot, (long)((_sequence + 1) % 2) * SlotSize);
        SyncData();
        _sequence++;
    }

    public void Dispose() => _stream.Dispose();

    // fdatasync, not fsync: the slot's bytes, and the file's size while the first two writes grow
    // it, but not the modification time, which no read depends on. On a journaled file system
    // (ext4's default) fsync commits the journal for that time stamp before the UI can be returned.
    private void SyncData()
    {
        var added = false;
        File.DangerousAddRef(ref added);
        try
        {
            if (Fdatasync((int)File.DangerousGetHandle()) != 0)
            {
                throw new IOException($"fdatasync of the USIG counter file failed (errno {Marshal.GetLastPInvokeError()})");
            }
        }
        finally
        {
            File.DangerousRelease();
        }
    }

    private (ulong Sequence, UsigState State, int Format)? Parse(int index)
    {
        var slot = new byte[SlotSize];
        if (RandomAccess.Read(File, slot, (long)index * SlotSize) < HeaderSize) return null;
        var format = slot.AsSpan(0, 8).SequenceEqual(MagicV2) ? 2 : slot.AsSpan(0, 8).SequenceEqual(MagicV1) ? 1 : 0;
        if (format == 0) return null;
        var n = BinaryPrimitives.ReadUInt16BigEndian(slot.AsSpan(36));
        if (n > UsigCore.RecentWindow) return null;
        var digestsEnd = HeaderSize + n * UsigCertificateInput.DigestLength;
        byte[][]? kept = null;
        var end = digestsEnd;
        if (format == 2)
        {
            if (ReadKept(slot, ref end, n) is not { } read) return null;
            kept = read.Length == 0 ? null : read;
        }
        if (end + ChecksumSize > SlotSize || !SHA256.HashData(slot.AsSpan(0, end)).AsSpan().SequenceEqual(slot.AsSpan(end, ChecksumSize))) return null;
        if (BinaryPrimitives.ReadInt32BigEndian(slot.AsSpan(16)) is var owner && owner != _replicaId)
            throw new InvalidDataException($"the USIG counter file belongs to replica {owner}, not {_replicaId}");
        var state = new UsigState(BinaryPrimitives.ReadUInt64BigEndian(slot.AsSpan(20)), BinaryPrimitives.ReadUInt64BigEndian(slot.AsSpan(28)), slot[HeaderSize..digestsEnd], kept);
        return (BinaryPrimitives.ReadUInt64BigEndian(slot.AsSpan(8)), state, format);
    }

    // Format 2's kept part from `at` (moved past it), or null if it is malformed (a length past the
    // slot) or cannot be the last batch's (more messages than digests or the batch limit, more bytes
    // than the limit): the checksum would be read from the wrong place, or the state is one no write
    // produced. Every length is checked against the slot before its bytes are copied.
    private static byte[][]? ReadKept(byte[] slot, ref int at, int digests)
    {
        if (at + 1 > SlotSize) return null;
        var count = slot[at++];
        if (count > UsigCore.MaxBatch || count > digests) return null;
        var kept = new byte[count][];
        var total = 0;
        for (var i = 0; i < count; i++)
        {
            if (at + 2 > SlotSize) return null;
            var length = BinaryPrimitives.ReadUInt16BigEndian(slot.AsSpan(at));
            total += length;
            if (total > UsigCore.MaxKeptBytes || at + 2 + length > SlotSize) return null;
            kept[i] = slot[(at + 2)..(at + 2 + length)];
            at += 2 + length;
        }
        return kept;
    }

    // A new file's directory entry is durable only once the directory itself is synced.
    private static void SyncDirectory(string directory)
    {
        var fd = OpenDirectory(directory, 0x10000 /* O_RDONLY | O_DIRECTORY */);
        if (fd < 0) throw new IOException($"cannot open {directory} to sync it (errno {Marshal.GetLastPInvokeError()})");
        var synced = Fsync(fd);
        Close(fd);
        if (synced != 0) throw new IOException($"fsync of {directory} failed (errno {Marshal.GetLastPInvokeError()})");
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int OpenDirectory(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "fdatasync", SetLastError = true)]
    private static partial int Fdatasync(int fd);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);
}
