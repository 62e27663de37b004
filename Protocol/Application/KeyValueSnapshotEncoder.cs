using MinBft.Protocol;

namespace MinBft.Application;

/// <summary>
/// Encodes the key-value state's snapshot (header, count, the records of <see cref="KeyValueEntry"/>
/// in key order) and keeps what makes the next encoding cheap.
/// <list type="bullet">
/// <item>While no key was added or removed since the last encoding, the next one is the last one
/// with the replaced records patched in: sequential copies of the unchanged runs, O(state) bytes
/// copied but only O(replaced) entries touched. At 100,000 keys a walk over every entry cost
/// about 20 ms per checkpoint, nearly all of it cache misses on entries scattered in memory.</item>
/// <item>Otherwise the entries are walked in the order <see cref="SnapshotKeyOrder{TEntry}"/> keeps
/// (only new keys are sorted), and each entry's position and record offset are noted for the next patch.</item>
/// </list>
/// Both give the same bytes for the same state (tests compare them against a full sort).
/// </summary>
/// <remarks>Reads, never writes, the last encoding after handing it out: the replica keeps that
/// very array (<see cref="IStateMachine.Snapshot"/>). Not thread-safe, like the state machine.</remarks>
internal sealed class KeyValueSnapshotEncoder
{
    private readonly SnapshotKeyOrder<KeyValueEntry> _order = new(static e => e.Key, static e => !e.Removed);

    // The last encoding, and the offset of each record in it by position in key order. Null when
    // the next encoding must walk every entry (none yet, keys added or removed, a restore).
    private byte[]? _last;
    private int[] _recordOffsets = [];

    // Entries whose value was replaced since the last encoding, each once.
    private readonly List<KeyValueEntry> _replaced = [];

    /// <summary>A key was added.</summary>
    public void Inserted(KeyValueEntry entry, int stateSize)
    {
        _order.Inserted(entry, stateSize);
        KeysChanged();
    }

    /// <summary>A key was removed (its entry is marked removed).</summary>
    public void Deleted()
    {
        _order.Deleted();
        KeysChanged();
    }

    /// <summary>An existing key's value was replaced (its entry holds a new record).</summary>
    public void Replaced(KeyValueEntry entry)
    {
        if (_last is null || entry.ReplacedSinceSnapshot) return;
        entry.ReplacedSinceSnapshot = true;
        _replaced.Add(entry);
    }

    /// <summary>The state was replaced wholesale by <paramref name="order"/>, strictly ascending.</summary>
    public void Restored(List<KeyValueEntry> order)
    {
        _order.Restored(order);
        KeysChanged();
    }

    /// <summary>Nothing kept: the next encoding sorts every key (tests and benchmarks).</summary>
    public void Forget()
    {
        _order.Forget();
        KeysChanged();
    }

    /// <summary>The next encoding walks every entry in the kept order (benchmarks compare the two paths).</summary>
    public void ForgetLast() => KeysChanged();

    private void KeysChanged()
    {
        _last = null;
        _replaced.Clear();
    }

    /// <summary>Encodings made by patching the last one (tests check the cheap path is taken).</summary>
    public long Patched { get; private set; }

    public byte[] Encode(IReadOnlyCollection<KeyValueEntry> state) =>
        _last is { } last ? Patch(last, state.Count) : Walk(state);

    private byte[] Walk(IReadOnlyCollection<KeyValueEntry> state)
    {
        // Keys are ordered by UTF-8 bytes, not by string.CompareOrdinal: UTF-16 order puts
        // surrogate pairs (U+10000 and up) before U+E000..U+FFFF, UTF-8 order after, and the
        // format must not depend on the in-memory string representation.
        var order = _order.Current(state);
        long length = KeyValueStateMachine.SnapshotHeader.Length + 4;
        foreach (var entry in order) length += entry.Record.Length;
        if (length > Array.MaxLength)
            throw new InvalidOperationException($"State of {length} bytes is too large to snapshot.");

        // Not zeroed first: every byte is written below, as the check at the end asserts.
        var buffer = GC.AllocateUninitializedArray<byte>((int)length);
        var offsets = _recordOffsets.Length == order.Count ? _recordOffsets : new int[order.Count];
        var w = new WireWriter(buffer);
        w.Raw(KeyValueStateMachine.SnapshotHeader);
        w.U32((uint)order.Count);
        for (var i = 0; i < order.Count; i++)
        {
            var entry = order[i];
            entry.Position = i;
            entry.ReplacedSinceSnapshot = false;
            offsets[i] = w.Position;
            w.Raw(entry.Record);
        }
        ProtocolInvariantException.Check(w.Position == buffer.Length, "a snapshot fills exactly the size computed for it");
        _replaced.Clear();
        _recordOffsets = offsets;
        _last = buffer;
        return buffer;
    }

    private byte[] Patch(byte[] last, int count)
    {
        ProtocolInvariantException.Check(_recordOffsets.Length == count, "a patched snapshot has the keys of the last one");
        Patched++;
        _replaced.Sort(static (a, b) => a.Position.CompareTo(b.Position));
        var lengthChanges = new int[_replaced.Count];
        long length = last.Length;
        for (var k = 0; k < _replaced.Count; k++)
        {
            lengthChanges[k] = _replaced[k].Record.Length - OldRecordLength(last, _replaced[k].Position);
            length += lengthChanges[k];
        }
        if (length > Array.MaxLength)
            throw new InvalidOperationException($"State of {length} bytes is too large to snapshot.");

        var buffer = GC.AllocateUninitializedArray<byte>((int)length);
        var from = 0; // next unread byte of the last encoding
        var to = 0;   // next unwritten byte of this one
        for (var k = 0; k < _replaced.Count; k++)
        {
            var entry = _replaced[k];
            var start = _recordOffsets[entry.Position];
            // The last encoding holds this very key at the noted offset (a replaced value keeps its
            // key bytes); anything else means a stale position or offset, and a snapshot that
            // would not match the state.
            var keyPart = entry.KeyPart;
            ProtocolInvariantException.Check(start + keyPart.Length <= last.Length && last.AsSpan(start, keyPart.Length).SequenceEqual(keyPart),
                $"the last snapshot holds key '{entry.Key}' at offset {start}");
            last.AsSpan(from, start - from).CopyTo(buffer.AsSpan(to));
            to += start - from;
            from = start + entry.Record.Length - lengthChanges[k]; // past the old record
            entry.Record.CopyTo(buffer.AsSpan(to));
            to += entry.Record.Length;
        }
        last.AsSpan(from).CopyTo(buffer.AsSpan(to));
        to += last.Length - from;
        ProtocolInvariantException.Check(to == buffer.Length, "a patched snapshot fills exactly the size computed for it");

        // A record starts later (or earlier) by the length changes of the replaced records before it.
        var shift = 0;
        var next = 0;
        for (var k = 0; k < _replaced.Count; k++)
        {
            var position = _replaced[k].Position;
            if (shift != 0) for (var i = next; i <= position; i++) _recordOffsets[i] += shift;
            next = position + 1;
            shift += lengthChanges[k];
            _replaced[k].ReplacedSinceSnapshot = false;
        }
        if (shift != 0) for (var i = next; i < count; i++) _recordOffsets[i] += shift;
        _replaced.Clear();
        _last = buffer;
        return buffer;
    }

    private int OldRecordLength(byte[] last, int position) =>
        (position + 1 < _recordOffsets.Length ? _recordOffsets[position + 1] : last.Length) - _recordOffsets[position];
}
