using System.Buffers;
using System.Buffers.Binary;
using System.IO.Hashing;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;
using MinBft.Messages;
using Orleans.Serialization;
using Orleans.Storage;

namespace MinBft.Hosting.Journal;

/// <summary>
/// The embedded replica journal as a plain append-only file: one checksummed frame per write,
/// then one sync. A write costs what it appends and one small synced write, without a database
/// transaction around it.
/// </summary>
/// <remarks>
/// <para>Layout: frames of <c>magic, payload length, sequence, payload, CRC-32</c>. The first frame
/// holds the journal's whole contents when the file was written (its head); each later frame one
/// write (<see cref="JournalRecord"/>). Replay stops at the first frame that is torn (short, bad
/// checksum, wrong sequence): a crash can only tear the last write, which was never acknowledged.
/// Bytes after the last whole frame are zeroed at open, so a later, shorter frame never leaves a
/// torn one's remains behind it.</para>
/// <para>A new file, and a compacted one (the live entries only, kept in memory as writes land,
/// once the file has grown past twice its compacted size), is written whole under a temporary name, synced, renamed into place
/// and the directory synced: a crash leaves the old file or the new one.</para>
/// <para>Zeros are written ahead of the end (<c>preallocationBytes</c> at a time), so a write lands
/// inside the file, changes no size and is synced with <c>fdatasync</c>, which skips the time
/// stamps: on a journaled file system (ext4's default) a write then costs a data write and a
/// cache flush, not a journal commit as well. The zeros read as the end of the frames, as they
/// would after a crash.</para>
/// <para>Fencing, as in the other journals: the last opener owns the journal. An owner file beside
/// it holds the owner's number. Opening takes it exclusively (flock) and increments the number;
/// every write and compaction takes it shared and first checks the number, so a write of an
/// earlier opener fails with <see cref="InconsistentStateException"/>, and an opener waits for a
/// write in flight to end before it reads. This works between processes as well as within one.</para>
/// <para>A failed sync leaves the file's durable contents unknown (the kernel may have dropped the
/// dirty pages): the journal then refuses every write until it is opened again, and the replica's
/// store is reported failing.</para>
/// </remarks>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed partial class FileReplicaJournal : ReplicaJournal
{
    private const int HeaderLength = 16;
    private const int TrailerLength = 4;
    private const uint Magic = 0x4D424A31; // "MBJ1"
    private const int MaxPayload = 256 * 1024 * 1024;

    private readonly string _path;
    private readonly string _name;
    private readonly Serializer _serializer;
    private readonly long _minCompactionBytes;
    private readonly long _preallocationBytes;
    private readonly SqliteJournalMove? _legacy;
    private readonly ILogger _logger;

    private SafeFileHandle? _owners;
    private long _owner;
    private SafeFileHandle? _file;
    private readonly ArrayBufferWriter<byte> _frameBuffer = new(4096);
    private long _end;
    private long _allocated;
    private ulong _sequence;
    private long _compactAt;
    private string? _broken;

    // What the file holds, kept as each write lands: a compaction writes it without reading the file back.
    private JournalReplay? _live;

    /// <summary>Creates the journal file <paramref name="path"/> (with its owner file beside it).</summary>
    /// <param name="path">The journal file (created, with its directory, if missing).</param>
    /// <param name="name">The journal's name (the replica grain's id), for messages.</param>
    /// <param name="serializer">The Orleans serializer, for messages.</param>
    /// <param name="minCompactionBytes">The file is compacted once it is larger than this and than twice its last compacted size.</param>
    /// <param name="preallocationBytes">Zeros are written this far ahead of the end, in steps of this size (0: none).</param>
    /// <param name="legacy">The SQLite journal an earlier build kept this stream in, or null: its contents
    /// move into the file when the file is created, and it is marked as moved once the file holds them.</param>
    /// <param name="logger">The logger.</param>
    public FileReplicaJournal(string path, string name, Serializer serializer, long minCompactionBytes, long preallocationBytes, SqliteJournalMove? legacy, ILogger<FileReplicaJournal> logger)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(serializer);
        ArgumentNullException.ThrowIfNull(logger);
        ArgumentOutOfRangeException.ThrowIfNegative(minCompactionBytes);
        ArgumentOutOfRangeException.ThrowIfNegative(preallocationBytes);
        _path = Path.GetFullPath(path);
        _name = name;
        _serializer = serializer;
        _minCompactionBytes = minCompactionBytes;
        _preallocationBytes = preallocationBytes;
        _legacy = legacy;
        _logger = logger;
    }

    /// <summary>The journal file.</summary>
    public string FilePath => _path;

    /// <summary>Where the next frame goes: the bytes the frames take (the file may be longer, by zeros written ahead).</summary>
    internal long End => _end;

    /// <summary>Test hook, called at "before-sync" (a write's frame is in the file, not synced) and
    /// "before-rename" (a compaction's new file is synced under its temporary name): throw from it to fail there.</summary>
    internal Action<string>? FaultHook { get; set; }

    /// <summary>What the journal file <paramref name="path"/> holds, read without taking ownership
    /// (diagnostics and tests: the owner's writes go on; a frame it is writing may be cut).</summary>
    internal static JournalContents ReadUnowned(string path, Serializer serializer)
    {
        var reader = new FileReplicaJournal(path, Path.GetFileName(path), serializer, 0, 0, null, Microsoft.Extensions.Logging.Abstractions.NullLogger<FileReplicaJournal>.Instance);
        using var file = File.OpenHandle(reader._path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        return reader.Replay(ReadAll(file)).Live.ToContents();
    }

    private protected override bool AbsentIsFinal => true; // a write is one synchronous call: nothing is left in flight

    private protected override async Task<JournalContents> LoadAndClaimAsync(CancellationToken cancellationToken)
    {
        // An earlier build's journal: read while the file does not exist, marked as moved once the
        // file holds it (on every open: a crash may have come between the two).
        var moved = _legacy is not null && !File.Exists(_path) ? await _legacy.ReadUnlessMovedAsync(cancellationToken).ConfigureAwait(false) : null;
        if (_legacy is not null && moved is null && !File.Exists(_path)) LogMovedFileMissing(_logger, _name, _path, _legacy.DatabasePath);
        var contents = await Task.Run(() => LoadAndClaim(moved), cancellationToken).ConfigureAwait(false);
        if (_legacy is not null)
        {
            // An older build started on this directory then refuses the SQLite journal instead of
            // running on one that lost the stream: with every replica's journal lost at once, no
            // replica could settle its counter gap and the cluster would stall for good.
            await _legacy.MarkMovedAsync(cancellationToken).ConfigureAwait(false);
        }
        return contents;
    }

    private protected override Task CommitAsync(JournalWrite write, CancellationToken cancellationToken) =>
        Task.Run(() => Commit(write), cancellationToken);

    private protected override Task<JournalWrite?> FindLandedAsync(IReadOnlyList<JournalWrite> pending, CancellationToken cancellationToken) =>
        Task.Run(() =>
        {
            if (_broken is not null) throw new IOException($"Journal {_name} in {_path}: {_broken}; it must be opened again.");
            // The failed write threw before its sync: whatever reached the file is not durable, and
            // the next write goes to the same place, over it.
            return (JournalWrite?)null;
        }, cancellationToken);

    private protected override ValueTask DisposeCoreAsync()
    {
        Close();
        return ValueTask.CompletedTask;
    }

    private JournalContents LoadAndClaim(JournalContents? legacy)
    {
        Close();
        _broken = null;
        Directory.CreateDirectory(Path.GetDirectoryName(_path)!, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        _owners = OpenOwnerFile(_path + ".owner");
        using (Hold(LockExclusive))
        {
            // Claim: from now on every write of an earlier opener fails its owner check.
            var owner = new byte[8];
            var read = RandomAccess.Read(_owners, owner, 0);
            _owner = (read == 8 ? BinaryPrimitives.ReadInt64BigEndian(owner) : 0) + 1;
            BinaryPrimitives.WriteInt64BigEndian(owner, _owner);
            RandomAccess.Write(_owners, owner, 0);

            if (!File.Exists(_path))
            {
                WriteWhole(legacy ?? new JournalContents(0, 1, []));
                if (legacy is not null) LogMoved(_logger, _name, _path, legacy.FirstCounter, legacy.NextCounter, legacy.View);
            }
            _file = OpenData();
            var bytes = ReadAll(_file);
            var (live, end, sequence) = Replay(bytes);
            _live = live;
            var stored = live.ToContents();
            // The caller keeps its own copy: the live list changes with every write.
            var contents = stored with { Entries = stored.Entries.ToArray() };
            _end = end;
            _allocated = bytes.Length;
            _sequence = sequence;
            _compactAt = _minCompactionBytes; // what it holds live is unknown until compacted

            // A torn frame after the end: zero it, so no later frame can be read together with its remains.
            var dirty = bytes.AsSpan((int)end).LastIndexOfAnyExcept((byte)0);
            if (dirty >= 0)
            {
                RandomAccess.Write(_file, new byte[dirty + 1], end);
                Sync();
                LogTornTail(_logger, _name, _path, end, dirty + 1);
            }
            LogOpened(_logger, _name, _path, _owner, contents.FirstCounter, contents.NextCounter, contents.View, end);
            return contents;
        }
    }

    private void Commit(JournalWrite write)
    {
        if (_broken is not null) throw new IOException($"Journal {_name} in {_path}: {_broken}; it must be opened again.");
        var file = _file ?? throw new InvalidOperationException("The journal is not open.");
        var record = JournalRecord.Of(write, _owner);
        var frame = Frame(record, _sequence + 1, _frameBuffer);
        using (HoldAsOwner())
        {
            if (_end + frame.Length > _allocated) _allocated = Preallocate(file, _allocated, _end + frame.Length);
            RandomAccess.Write(file, frame.Span, _end);
            try
            {
                FaultHook?.Invoke("before-sync");
                Sync();
            }
            catch (Exception e)
            {
                _broken = $"a sync failed ({e.Message})";
                throw;
            }
        }
        _end += frame.Length;
        _sequence++;
        _live!.Apply((long)_sequence, record);
    }

    private protected override Task AfterCommitAsync(JournalWrite write, CancellationToken cancellationToken) =>
        _end < _compactAt ? Task.CompletedTask : Task.Run(Compact, cancellationToken);

    // Compaction is optional: a failure before the rename leaves the old file, still open, in use.
    // It holds the owner lock throughout, so it never renames over a newer owner's writes.
    private void Compact()
    {
        using var held = HoldAsOwner();
        string temporary;
        long head;
        try
        {
            (temporary, head) = WriteTemporary(_live!.ToContents());
            FaultHook?.Invoke("before-rename");
            File.Move(temporary, _path, overwrite: true);
        }
        catch (Exception e) when (e is not InconsistentStateException)
        {
            _compactAt = _end + _minCompactionBytes;
            LogCompactionFailed(_logger, e, _name, _path);
            return;
        }
        _file!.Dispose();
        _file = OpenData();
        _end = head;
        _allocated = RandomAccess.GetLength(_file);
        _sequence = 1;
        _compactAt = Math.Max(_minCompactionBytes, 2 * _end);
        try
        {
            SyncDirectory(Path.GetDirectoryName(_path)!);
        }
        catch (IOException e)
        {
            // Until the rename is durable a crash could bring the old file back without the writes
            // that follow: no write is acknowledged before the journal is opened again.
            _broken = $"the directory sync after a compaction failed ({e.Message})";
            LogCompactionFailed(_logger, e, _name, _path);
        }
    }

    // Shared with the other instances' opens: no lock of .NET's own (FileShare.None would refuse a second opener).
    private SafeFileHandle OpenData() =>
        File.OpenHandle(_path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);

    private OwnerLock HoldAsOwner()
    {
        var held = Hold(LockShared);
        Span<byte> owner = stackalloc byte[8]; // on every write: no allocation
        var stored = RandomAccess.Read(_owners!, owner, 0) == 8 ? BinaryPrimitives.ReadInt64BigEndian(owner) : -1;
        if (stored == _owner) return held;
        held.Dispose();
        var message = $"Journal {_name} in {_path}: opened as owner {_owner}, but owner {stored} opened it since (another activation). Nothing was written.";
        LogFenced(_logger, _name, _owner, stored);
        throw new InconsistentStateException(message, stored.ToString(System.Globalization.CultureInfo.InvariantCulture), _owner.ToString(System.Globalization.CultureInfo.InvariantCulture));
    }

    private OwnerLock Hold(int operation)
    {
        var handle = _owners ?? throw new InvalidOperationException("The journal is not open.");
        var added = false;
        handle.DangerousAddRef(ref added);
        var fd = (int)handle.DangerousGetHandle();
        int result;
        while ((result = Flock(fd, operation)) != 0 && Marshal.GetLastPInvokeError() == EINTR) { }
        if (result != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            handle.DangerousRelease();
            throw new IOException($"flock of {_path}.owner failed (errno {errno})");
        }
        return new OwnerLock(handle, fd);
    }

    // The owner file is opened without .NET's own advisory lock, which would be held until close.
    private static SafeFileHandle OpenOwnerFile(string path)
    {
        var fd = OpenFile(path, O_RDWR | O_CREAT | O_CLOEXEC, 0x180 /* 0600 */);
        if (fd < 0) throw new IOException($"cannot open {path} (errno {Marshal.GetLastPInvokeError()})");
        return new SafeFileHandle(fd, ownsHandle: true);
    }

    private readonly struct OwnerLock(SafeFileHandle handle, int fd) : IDisposable
    {
        public void Dispose()
        {
            _ = Flock(fd, LockUnlock);
            handle.DangerousRelease();
        }
    }

    // All or nothing: written and synced under a temporary name, renamed into place, the directory synced.
    private void WriteWhole(JournalContents contents)
    {
        File.Move(WriteTemporary(contents).Path, _path, overwrite: true);
        SyncDirectory(Path.GetDirectoryName(_path)!);
    }

    // The contents as one head frame, and the zeros ahead of it, synced, in a temporary file beside the journal.
    private (string Path, long Head) WriteTemporary(JournalContents contents)
    {
        var head = new JournalRecord
        {
            Kind = JournalRecordKind.Open,
            Owner = _owner,
            View = contents.View,
            FirstIntentCounter = contents.FirstCounter,
            Intents = [.. contents.Entries],
            FirstAfter = contents.FirstCounter,
            NextAfter = contents.NextCounter,
        };
        var frame = Frame(head, 1, new ArrayBufferWriter<byte>());
        var temporary = _path + ".new";
        using var handle = File.OpenHandle(temporary, FileMode.Create, FileAccess.ReadWrite, FileShare.None, FileOptions.None);
        RandomAccess.Write(handle, frame.Span, 0);
        Preallocate(handle, frame.Length, frame.Length);
        RandomAccess.FlushToDisk(handle); // a new file: its size and directory entry too
        return (temporary, frame.Length);
    }

    private (JournalReplay Live, long End, ulong Sequence) Replay(byte[] bytes)
    {
        var offset = 0;
        ulong sequence = 0;
        JournalReplay? replay = null;
        while (TryReadFrame(bytes, offset, sequence + 1, out var payload, out var length))
        {
            var record = _serializer.Deserialize<JournalRecord>(payload)
                ?? throw Corrupt($"frame {sequence + 1} holds no record");
            if (replay is null)
            {
                if (record.Kind != JournalRecordKind.Open) throw Corrupt("does not start with its head");
                replay = new JournalReplay(_name, new JournalHead { FirstCounter = record.FirstAfter, NextCounter = record.FirstIntentCounter, View = record.View });
                record.Kind = JournalRecordKind.Append;
            }
            else if (record.Kind == JournalRecordKind.Open)
            {
                throw Corrupt($"has a second head at frame {sequence + 1}");
            }
            replay.Apply((long)sequence, record);
            offset += length;
            sequence++;
        }
        if (replay is null) throw Corrupt("has no readable head (the file was written whole, so it is damaged)");
        return (replay, offset, sequence);
    }

    private static bool TryReadFrame(byte[] bytes, int offset, ulong sequence, out ReadOnlyMemory<byte> payload, out int length)
    {
        payload = default;
        length = 0;
        var span = bytes.AsSpan(offset);
        if (span.Length < HeaderLength + TrailerLength || BinaryPrimitives.ReadUInt32BigEndian(span) != Magic) return false;
        var size = BinaryPrimitives.ReadInt32BigEndian(span[4..]);
        if (size < 0 || size > MaxPayload || span.Length < HeaderLength + size + TrailerLength) return false;
        if (BinaryPrimitives.ReadUInt64BigEndian(span[8..]) != sequence) return false;
        if (Crc32.HashToUInt32(span[..(HeaderLength + size)]) != BinaryPrimitives.ReadUInt32BigEndian(span[(HeaderLength + size)..])) return false;
        payload = bytes.AsMemory(offset + HeaderLength, size);
        length = HeaderLength + size + TrailerLength;
        return true;
    }

    // One frame in the buffer: header, the record serialized in place, trailer. Writes never
    // overlap, so one reused buffer serves them all (it keeps the capacity of the largest write);
    // a head frame, as large as the live contents, gets a buffer of its own.
    private ReadOnlyMemory<byte> Frame(JournalRecord record, ulong sequence, ArrayBufferWriter<byte> buffer)
    {
        buffer.ResetWrittenCount();
        buffer.GetSpan(HeaderLength);
        buffer.Advance(HeaderLength);
        _serializer.Serialize(record, buffer);
        var payload = buffer.WrittenCount - HeaderLength;
        buffer.GetSpan(TrailerLength);
        buffer.Advance(TrailerLength);
        var frame = MemoryMarshal.AsMemory(buffer.WrittenMemory);
        var span = frame.Span;
        BinaryPrimitives.WriteUInt32BigEndian(span, Magic);
        BinaryPrimitives.WriteInt32BigEndian(span[4..], payload);
        BinaryPrimitives.WriteUInt64BigEndian(span[8..], sequence);
        BinaryPrimitives.WriteUInt32BigEndian(span[(HeaderLength + payload)..], Crc32.HashToUInt32(span[..(HeaderLength + payload)]));
        return frame;
    }

    private static byte[] ReadAll(SafeFileHandle file)
    {
        var bytes = new byte[checked((int)RandomAccess.GetLength(file))];
        var read = 0;
        while (read < bytes.Length)
        {
            var n = RandomAccess.Read(file, bytes.AsSpan(read), read);
            if (n == 0) break;
            read += n;
        }
        return read == bytes.Length ? bytes : bytes[..read];
    }

    // Zeros from `from` to the step past `needed` (not synced: the write's own sync covers them).
    // Returns the file's new length.
    private long Preallocate(SafeFileHandle file, long from, long needed)
    {
        if (_preallocationBytes == 0) return Math.Max(from, needed);
        var to = (needed / _preallocationBytes + 1) * _preallocationBytes;
        for (var at = from; at < to; at += Zeros.Length) RandomAccess.Write(file, Zeros.AsSpan(0, (int)Math.Min(Zeros.Length, to - at)), at);
        return to;
    }

    private static readonly byte[] Zeros = new byte[64 * 1024];

    // fdatasync: the data, and the size when it grew; not the time stamps, which replay never reads.
    private void Sync()
    {
        var file = _file!;
        var added = false;
        file.DangerousAddRef(ref added);
        try
        {
            if (Fdatasync((int)file.DangerousGetHandle()) != 0)
            {
                throw new IOException($"fdatasync of {_path} failed (errno {Marshal.GetLastPInvokeError()})");
            }
        }
        finally
        {
            file.DangerousRelease();
        }
    }

    private void Close()
    {
        _live = null;
        _file?.Dispose();
        _file = null;
        _owners?.Dispose();
        _owners = null;
    }

    private InvalidDataException Corrupt(string reason) => new($"Stored journal {_name} in {_path} {reason}.");

    /// <summary>fsync of a directory: a file created or renamed in it stays after a crash.</summary>
    internal static void SyncDirectory(string directory)
    {
        var fd = OpenDirectory(directory, 0x10000 /* O_RDONLY | O_DIRECTORY */);
        if (fd < 0) throw new IOException($"cannot open {directory} to sync it (errno {Marshal.GetLastPInvokeError()})");
        var synced = Fsync(fd);
        CloseFd(fd);
        if (synced != 0) throw new IOException($"fsync of {directory} failed (errno {Marshal.GetLastPInvokeError()})");
    }

    // DllImport with blittable arguments: no generated (unsafe) marshalling in this assembly.
    [DllImport("libc", EntryPoint = "open", SetLastError = true)]
    private static extern int OpenDirectory([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);

    private const int LockShared = 1, LockExclusive = 2, LockUnlock = 8;
    private const int O_RDWR = 0x2, O_CREAT = 0x40, O_CLOEXEC = 0x80000, EINTR = 4;

    [DllImport("libc", EntryPoint = "open", SetLastError = true)]
    private static extern int OpenFile([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, int mode);

    [DllImport("libc", EntryPoint = "flock", SetLastError = true)]
    private static extern int Flock(int fd, int operation);

    [DllImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static extern int Fsync(int fd);

    [DllImport("libc", EntryPoint = "fdatasync", SetLastError = true)]
    private static extern int Fdatasync(int fd);

    [DllImport("libc", EntryPoint = "close")]
    private static extern int CloseFd(int fd);

    [LoggerMessage(Level = LogLevel.Information, Message = "Journal {Name} opened in {Path} as owner {Owner}: counters [{First}, {Next}), view {View}, {Bytes} bytes.")]
    private static partial void LogOpened(ILogger logger, string name, string path, long owner, ulong first, ulong next, long view, long bytes);

    [LoggerMessage(Level = LogLevel.Information, Message = "Journal {Name}: moved into {Path} from the SQLite journal of an earlier build: counters [{First}, {Next}), view {View}.")]
    private static partial void LogMoved(ILogger logger, string name, string path, ulong first, ulong next, long view);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Journal {Name}: {Path} is missing, and the SQLite journal {Database} says its stream was moved there: starting empty (the replica restarts its stream after the USIG's counter).")]
    private static partial void LogMovedFileMissing(ILogger logger, string name, string path, string database);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Journal {Name}: write of owner {Owner} refused, owner {StoredOwner} opened it since.")]
    private static partial void LogFenced(ILogger logger, string name, long owner, long storedOwner);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Journal {Name} in {Path}: compaction failed; the file stays as it is.")]
    private static partial void LogCompactionFailed(ILogger logger, Exception exception, string name, string path);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Journal {Name} in {Path}: zeroed {Length} bytes of a torn write after byte {End}.")]
    private static partial void LogTornTail(ILogger logger, string name, string path, long end, int length);
}
