using System.Diagnostics.CodeAnalysis;
using MinBft.Encoding;

namespace MinBft.Application;

/// <summary>
/// An operation of the sample key-value service, and its compact wire encoding.
/// <para>
/// Layout (big-endian; key = u16 length + UTF-8, value = u32 length + bytes):
/// <code>
/// 0x01 Put            key value
/// 0x02 Get            key
/// 0x03 Delete         key
/// 0x04 CompareAndSet  key (0x00 | 0x01 value) value      expected (absent | present), new value
/// </code>
/// The opcode byte versions the format: a changed layout gets a new opcode, so replicas never
/// have to guess which version some bytes are. The encoding is canonical — an operation has
/// exactly one encoding and <see cref="TryDecode"/> rejects anything else (trailing bytes,
/// invalid UTF-8, out-of-range lengths) — so equal operations are equal bytes.
/// </para>
/// <para>
/// Byte arrays held by these records are never modified by this library; callers should treat
/// them as read-only too. <see cref="TryDecode"/> always allocates fresh arrays.
/// </para>
/// </summary>
public abstract record KeyValueOperation(string Key)
{
    /// <summary>Largest key, in UTF-8 bytes.</summary>
    public const int MaxKeyLength = 1024;

    /// <summary>
    /// Largest value. A CompareAndSet carries two values, and the whole operation must also fit
    /// <see cref="MessageLimits.MaxOperationLength"/>, so its two values share that budget.
    /// </summary>
    public const int MaxValueLength = 60 * 1024;

    internal const byte PutOpcode = 0x01;
    internal const byte GetOpcode = 0x02;
    internal const byte DeleteOpcode = 0x03;
    internal const byte CompareAndSetOpcode = 0x04;

    private const byte Absent = 0x00;
    private const byte Present = 0x01;

    /// <summary>The canonical encoding; throws <see cref="ArgumentException"/> if a field is out of bounds.</summary>
    public abstract byte[] Encode();

    public static byte[] EncodePut(string key, ReadOnlySpan<byte> value)
    {
        var keyBytes = KeyValueWire.KeyBytes(key);
        KeyValueWire.CheckValue(value, nameof(value));
        var buffer = new byte[1 + KeyValueWire.KeyPrefixLength + keyBytes.Length + KeyValueWire.ValuePrefixLength + value.Length];
        var w = new WireWriter(buffer);
        w.U8(PutOpcode);
        w.Key(keyBytes);
        w.Value(value);
        return buffer;
    }

    public static byte[] EncodeGet(string key) => EncodeKeyOnly(GetOpcode, key);

    public static byte[] EncodeDelete(string key) => EncodeKeyOnly(DeleteOpcode, key);

    /// <summary>Sets <paramref name="key"/> to <paramref name="newValue"/> if its current value is <paramref name="expected"/>.</summary>
    public static byte[] EncodeCompareAndSet(string key, ReadOnlySpan<byte> expected, ReadOnlySpan<byte> newValue) =>
        EncodeCompareAndSet(key, expectPresent: true, expected, newValue);

    /// <summary>Sets <paramref name="key"/> to <paramref name="newValue"/> only if the key is absent.</summary>
    public static byte[] EncodeCompareAndSetAbsent(string key, ReadOnlySpan<byte> newValue) =>
        EncodeCompareAndSet(key, expectPresent: false, default, newValue);

    /// <summary>Decodes a canonical encoding; false (never an exception) for anything else.</summary>
    public static bool TryDecode(ReadOnlySpan<byte> operation, [NotNullWhen(true)] out KeyValueOperation? result)
    {
        result = null;
        // Checked first so an oversized input is rejected before any field is copied.
        if (operation.Length > MessageLimits.MaxOperationLength) return false;
        var r = new WireReader(operation);
        if (!r.TryU8(out var opcode) || !r.TryKey(out var keyBytes)) return false;
        switch (opcode)
        {
            case PutOpcode:
                if (!r.TryValue(out var value) || !r.AtEnd) return false;
                result = new PutOperation(KeyValueWire.KeyString(keyBytes), value.ToArray());
                return true;
            case GetOpcode:
                if (!r.AtEnd) return false;
                result = new GetOperation(KeyValueWire.KeyString(keyBytes));
                return true;
            case DeleteOpcode:
                if (!r.AtEnd) return false;
                result = new DeleteOperation(KeyValueWire.KeyString(keyBytes));
                return true;
            case CompareAndSetOpcode:
                if (!r.TryU8(out var presence)) return false;
                byte[]? expected = null;
                if (presence == Present)
                {
                    if (!r.TryValue(out var expectedBytes)) return false;
                    expected = expectedBytes.ToArray();
                }
                else if (presence != Absent)
                {
                    return false;
                }
                if (!r.TryValue(out var newValue) || !r.AtEnd) return false;
                result = new CompareAndSetOperation(KeyValueWire.KeyString(keyBytes), expected, newValue.ToArray());
                return true;
            default:
                return false;
        }
    }

    private static byte[] EncodeKeyOnly(byte opcode, string key)
    {
        var keyBytes = KeyValueWire.KeyBytes(key);
        var buffer = new byte[1 + KeyValueWire.KeyPrefixLength + keyBytes.Length];
        var w = new WireWriter(buffer);
        w.U8(opcode);
        w.Key(keyBytes);
        return buffer;
    }

    private static byte[] EncodeCompareAndSet(string key, bool expectPresent, ReadOnlySpan<byte> expected, ReadOnlySpan<byte> newValue)
    {
        var keyBytes = KeyValueWire.KeyBytes(key);
        KeyValueWire.CheckValue(expected, nameof(expected));
        KeyValueWire.CheckValue(newValue, nameof(newValue));
        var length = 1 + KeyValueWire.KeyPrefixLength + keyBytes.Length
            + 1 + (expectPresent ? KeyValueWire.ValuePrefixLength + expected.Length : 0)
            + KeyValueWire.ValuePrefixLength + newValue.Length;
        if (length > MessageLimits.MaxOperationLength)
            throw new ArgumentException(
                $"CompareAndSet encodes to {length} bytes; the limit is {MessageLimits.MaxOperationLength}.", nameof(newValue));
        var buffer = new byte[length];
        var w = new WireWriter(buffer);
        w.U8(CompareAndSetOpcode);
        w.Key(keyBytes);
        if (expectPresent)
        {
            w.U8(Present);
            w.Value(expected);
        }
        else
        {
            w.U8(Absent);
        }
        w.Value(newValue);
        return buffer;
    }

    internal static int BytesHash(byte[]? bytes)
    {
        if (bytes is null) return 0;
        var hash = new HashCode();
        hash.AddBytes(bytes);
        return hash.ToHashCode();
    }

    internal static bool BytesEqual(byte[]? a, byte[]? b) =>
        a is null ? b is null : b is not null && a.AsSpan().SequenceEqual(b);
}

/// <summary>Sets <see cref="KeyValueOperation.Key"/> to <see cref="Value"/>; result Ok.</summary>
public sealed record PutOperation(string Key, byte[] Value) : KeyValueOperation(Key)
{
    public override byte[] Encode()
    {
        // A null array would otherwise convert silently to an empty span.
        ArgumentNullException.ThrowIfNull(Value);
        return EncodePut(Key, Value);
    }

    // Records compare arrays by reference; operations are values, so compare contents.
    public bool Equals(PutOperation? other) => other is not null && base.Equals(other) && BytesEqual(Value, other.Value);

    public override int GetHashCode() => HashCode.Combine(base.GetHashCode(), BytesHash(Value));
}

/// <summary>Reads a key; result Ok with the value, or NotFound.</summary>
public sealed record GetOperation(string Key) : KeyValueOperation(Key)
{
    public override byte[] Encode() => EncodeGet(Key);
}

/// <summary>Removes a key; result Ok if it existed, else NotFound.</summary>
public sealed record DeleteOperation(string Key) : KeyValueOperation(Key)
{
    public override byte[] Encode() => EncodeDelete(Key);
}

/// <summary>
/// Sets the key to <see cref="NewValue"/> if its current value equals <see cref="Expected"/>
/// (null: the key must be absent). Result Ok, or CasMismatch carrying the current value (none if absent).
/// </summary>
public sealed record CompareAndSetOperation(string Key, byte[]? Expected, byte[] NewValue) : KeyValueOperation(Key)
{
    public bool ExpectsAbsent => Expected is null;

    public override byte[] Encode()
    {
        ArgumentNullException.ThrowIfNull(NewValue);
        return Expected is null ? EncodeCompareAndSetAbsent(Key, NewValue) : EncodeCompareAndSet(Key, Expected, NewValue);
    }

    public bool Equals(CompareAndSetOperation? other) =>
        other is not null && base.Equals(other) && BytesEqual(Expected, other.Expected) && BytesEqual(NewValue, other.NewValue);

    public override int GetHashCode() => HashCode.Combine(base.GetHashCode(), BytesHash(Expected), BytesHash(NewValue));
}
