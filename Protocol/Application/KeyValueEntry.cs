using System.Buffers.Binary;

namespace MinBft.Application;

/// <summary>
/// One key of the key-value state, held as its record in the snapshot layout: u16 key length, the
/// key's UTF-8 bytes, u32 value length, the value. A snapshot is then the header and these records
/// copied one after another: no per-key lookup or UTF-8 conversion at checkpoint time, which at
/// 100,000 keys was most of what a checkpoint cost (CheckpointBenchmarks).
/// </summary>
/// <remarks>A record array is never written into once made: a new value gets a new record, so a
/// value handed out as a slice can never change under its reader.</remarks>
internal sealed class KeyValueEntry
{
    private const int LengthsBytes = KeyValueWire.KeyPrefixLength + KeyValueWire.ValuePrefixLength;

    private KeyValueEntry(string key, byte[] record)
    {
        Key = key;
        Record = record;
    }

    public string Key { get; }

    /// <summary>This key's bytes in the snapshot layout.</summary>
    public byte[] Record { get; private set; }

    /// <summary>The key left the state; a snapshot order still holding this entry drops it.</summary>
    public bool Removed { get; private set; }

    public ReadOnlySpan<byte> Value => Record.AsSpan(ValueOffset);

    /// <summary>Index in snapshot order as of the last snapshot encoded with this entry in it
    /// (KeyValueSnapshotEncoder); meaningful only while no key was added or removed since.</summary>
    public int Position { get; set; } = -1;

    /// <summary>The value was replaced since the last snapshot encoded (the encoder's list holds it once).</summary>
    public bool ReplacedSinceSnapshot { get; set; }

    private int KeyLength => BinaryPrimitives.ReadUInt16BigEndian(Record);

    /// <summary>The record's key length and key bytes, which a replaced value keeps.</summary>
    public ReadOnlySpan<byte> KeyPart => Record.AsSpan(0, KeyValueWire.KeyPrefixLength + KeyLength);

    private int ValueOffset => LengthsBytes + KeyLength;

    /// <summary>A new key. It came from a decoded operation, so it is valid and within bounds.</summary>
    public static KeyValueEntry Create(string key, ReadOnlySpan<byte> value)
    {
        var keyLength = System.Text.Encoding.UTF8.GetByteCount(key);
        var record = new byte[LengthsBytes + keyLength + value.Length];
        var w = new WireWriter(record);
        w.U16((ushort)keyLength);
        w.Utf8(key);
        w.Value(value);
        return new KeyValueEntry(key, record);
    }

    /// <summary>An entry from a record of a snapshot that was checked to be well formed; the record
    /// is copied, so the snapshot's bytes are not kept.</summary>
    public static KeyValueEntry FromRecord(string key, ReadOnlySpan<byte> record) => new(key, record.ToArray());

    /// <summary>The key now holds <paramref name="value"/> (its UTF-8 bytes are kept from the old record).</summary>
    public void Replace(ReadOnlySpan<byte> value)
    {
        var keyEnd = KeyValueWire.KeyPrefixLength + KeyLength;
        var record = new byte[LengthsBytes + KeyLength + value.Length];
        Record.AsSpan(0, keyEnd).CopyTo(record);
        BinaryPrimitives.WriteUInt32BigEndian(record.AsSpan(keyEnd), (uint)value.Length);
        value.CopyTo(record.AsSpan(keyEnd + KeyValueWire.ValuePrefixLength));
        Record = record;
    }

    public void Remove() => Removed = true;
}
