using System.Diagnostics.CodeAnalysis;
using System.Runtime.InteropServices;
using MinBft.Protocol;

namespace MinBft.Application;

/// <summary>
/// The sample replicated service: a map from UTF-8 string keys to byte values, driven by
/// <see cref="KeyValueOperation"/> encodings. Deterministic by construction: no clocks, no
/// randomness, no dependence on hash or enumeration order (the snapshot sorts its keys).
/// Not thread-safe; the replica that owns it applies operations one at a time.
/// <para>
/// Snapshot layout (big-endian): <c>"MINBFT-KV" 0x01</c>, u32 entry count, then each entry as
/// key (u16 length + UTF-8) and value (u32 length + bytes), keys strictly ascending by their
/// UTF-8 bytes. Strictly ascending means one state has exactly one snapshot, which is what
/// lets replicas compare states by digest.
/// </para>
/// </summary>
public sealed class KeyValueStateMachine : IStateMachine
{
    // Names the format inside the digested bytes, so a digest of this service's state can't
    // coincide with a digest of some other byte string that happens to parse differently.
    internal static ReadOnlySpan<byte> SnapshotHeader => "MINBFT-KV\x01"u8;

    // Every entry costs at least its two length prefixes; bounds the count a snapshot may claim.
    private const int MinEntryLength = KeyValueWire.KeyPrefixLength + KeyValueWire.ValuePrefixLength;

    // Each key's record in the snapshot layout (KeyValueEntry); records are never written into
    // once made, and readers get copies of values.
    private Dictionary<string, KeyValueEntry> _entries = new(StringComparer.Ordinal);

    // SHA-256 of the current snapshot, and the snapshot it was computed from (encoded once per
    // checkpoint, not twice); both dropped once a mutation makes them stale.
    private readonly SnapshotDigestCache _cache = new();

    // The keys in snapshot order and the last snapshot, so the next one sorts only new keys, or
    // only patches replaced values into the last one.
    private readonly KeyValueSnapshotEncoder _encoder = new();

    public int Count => _entries.Count;

    /// <summary>Reads a key without going through <see cref="Apply"/>; the value is a copy.</summary>
    public bool TryGetValue(string key, [NotNullWhen(true)] out byte[]? value)
    {
        ArgumentNullException.ThrowIfNull(key);
        if (_entries.TryGetValue(key, out var stored))
        {
            value = stored.Value.ToArray();
            return true;
        }
        value = null;
        return false;
    }

    public byte[] Apply(ReadOnlySpan<byte> operation)
    {
        if (!KeyValueOperation.TryDecode(operation, out var decoded))
            return KeyValueResult.Encode(KeyValueStatus.BadOperation, false, default);

        switch (decoded)
        {
            case PutOperation put:
                Store(put.Key, put.Value);
                return KeyValueResult.Encode(KeyValueStatus.Ok, false, default);

            case GetOperation get:
                return _entries.TryGetValue(get.Key, out var value)
                    ? KeyValueResult.Encode(KeyValueStatus.Ok, true, value.Value)
                    : KeyValueResult.Encode(KeyValueStatus.NotFound, false, default);

            case DeleteOperation delete:
                if (!_entries.Remove(delete.Key, out var deleted))
                    return KeyValueResult.Encode(KeyValueStatus.NotFound, false, default);
                deleted.Remove();
                _encoder.Deleted();
                _cache.Invalidate();
                return KeyValueResult.Encode(KeyValueStatus.Ok, false, default);

            case CompareAndSetOperation cas:
                var present = _entries.TryGetValue(cas.Key, out var current);
                var matches = cas.Expected is null
                    ? !present
                    : present && current!.Value.SequenceEqual(cas.Expected);
                if (!matches)
                    return KeyValueResult.Encode(KeyValueStatus.CasMismatch, present, present ? current!.Value : default);
                Store(cas.Key, cas.NewValue);
                return KeyValueResult.Encode(KeyValueStatus.Ok, false, default);

            default:
                // Unreachable while TryDecode knows only the cases above; kept total so a new
                // operation type added there without a case here is still not a throw.
                return KeyValueResult.Encode(KeyValueStatus.BadOperation, false, default);
        }
    }

    private void Store(string key, byte[] value)
    {
        ref var slot = ref CollectionsMarshal.GetValueRefOrAddDefault(_entries, key, out var existed);
        if (existed)
        {
            slot!.Replace(value);
            _encoder.Replaced(slot);
        }
        else
        {
            slot = KeyValueEntry.Create(key, value);
            _encoder.Inserted(slot, _entries.Count);
        }
        _cache.Invalidate();
    }

    /// <summary>Drops the kept key order, so the next snapshot sorts every key (benchmarks compare
    /// against this, tests check both ways give the same bytes).</summary>
    internal void ForgetSnapshotOrder() => _encoder.Forget();

    /// <summary>Drops the last snapshot but keeps the key order, so the next snapshot walks every
    /// key instead of patching the last one (benchmarks compare the two).</summary>
    internal void ForgetLastSnapshot() => _encoder.ForgetLast();

    /// <summary>Snapshots encoded by patching replaced values into the previous one (tests count them).</summary>
    internal long SnapshotsPatched => _encoder.Patched;

    /// <summary>Snapshots encoded since this state machine was made (tests count them).</summary>
    public long SnapshotEncodings => _cache.Encodings;

    public byte[] Snapshot() => _cache.Snapshot(EncodeSnapshot);

    private byte[] EncodeSnapshot() => _encoder.Encode(_entries.Values);

    public bool TryRestore(ReadOnlySpan<byte> snapshot)
    {
        // Parse into a new map and swap only at the end, so a malformed snapshot (possibly
        // from a Byzantine replica) leaves the current state exactly as it was.
        var r = new WireReader(snapshot);
        if (!r.TryRaw(SnapshotHeader.Length, out var header) || !header.SequenceEqual(SnapshotHeader)) return false;
        if (!r.TryU32(out var count) || count > (uint)(r.Remaining / MinEntryLength)) return false;

        var entries = new Dictionary<string, KeyValueEntry>((int)count, StringComparer.Ordinal);
        var order = new List<KeyValueEntry>((int)count);
        ReadOnlySpan<byte> previous = default;
        for (var i = 0u; i < count; i++)
        {
            var recordStart = r.Remaining;
            if (!r.TryKey(out var key) || !r.TryValue(out var value)) return false;
            // Strictly ascending: rejects duplicates and any non-canonical order.
            if (i > 0 && previous.SequenceCompareTo(key) >= 0) return false;
            previous = key;
            var offset = snapshot.Length - recordStart;
            var entry = KeyValueEntry.FromRecord(KeyValueWire.KeyString(key), snapshot.Slice(offset, recordStart - r.Remaining));
            entries.Add(entry.Key, entry);
            order.Add(entry);
        }
        if (!r.AtEnd) return false;

        _entries = entries;
        _encoder.Restored(order);
        // The snapshot was fully validated as canonical, so it is byte-for-byte what
        // Snapshot() would now return: its hash is the new digest, no re-encoding needed.
        _cache.Restored(snapshot);
        return true;
    }

    public byte[] Digest() => _cache.Digest(EncodeSnapshot);
}
