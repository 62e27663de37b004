using System.Diagnostics.CodeAnalysis;

namespace MinBft.Application;

/// <summary>Outcome of a key-value operation. Values start at 1 so a zeroed byte is never a valid status.</summary>
public enum KeyValueStatus : byte
{
    Ok = 1,
    NotFound = 2,
    CasMismatch = 3,
    BadOperation = 4,
}

/// <summary>
/// The result of a key-value operation, and its wire encoding:
/// <code>status (0x00 | 0x01 value)</code> with value = u32 big-endian length + bytes.
/// Only these shapes exist (the factories are the only way to build one, and
/// <see cref="TryDecode"/> rejects every other shape, so the encoding is canonical):
/// Ok without a value (Put, Delete, CompareAndSet) or with one (Get); NotFound without;
/// CasMismatch with the current value, or without if the key is absent; BadOperation without.
/// </summary>
public sealed record KeyValueResult
{
    private const byte NoValue = 0x00;
    private const byte HasValue = 0x01;

    private KeyValueResult(KeyValueStatus status, byte[]? value)
    {
        Status = status;
        Value = value;
    }

    public KeyValueStatus Status { get; }

    /// <summary>Get: the value read. CasMismatch: the current value, null if the key is absent. Otherwise null.</summary>
    public byte[]? Value { get; }

    public static KeyValueResult Ok { get; } = new(KeyValueStatus.Ok, null);

    public static KeyValueResult NotFound { get; } = new(KeyValueStatus.NotFound, null);

    public static KeyValueResult BadOperation { get; } = new(KeyValueStatus.BadOperation, null);

    public static KeyValueResult OkWithValue(byte[] value)
    {
        ArgumentNullException.ThrowIfNull(value);
        KeyValueWire.CheckValue(value, nameof(value));
        return new(KeyValueStatus.Ok, value);
    }

    /// <param name="current">The key's current value; null if it is absent.</param>
    public static KeyValueResult CasMismatch(byte[]? current)
    {
        if (current is not null) KeyValueWire.CheckValue(current, nameof(current));
        return new(KeyValueStatus.CasMismatch, current);
    }

    public byte[] Encode() => Encode(Status, Value is not null, Value);

    /// <summary>Decodes a canonical encoding; false (never an exception) for anything else.</summary>
    public static bool TryDecode(ReadOnlySpan<byte> encoded, [NotNullWhen(true)] out KeyValueResult? result)
    {
        result = null;
        var r = new WireReader(encoded);
        if (!r.TryU8(out var statusByte) || !r.TryU8(out var presence)) return false;
        var status = (KeyValueStatus)statusByte;
        bool valueAllowed;
        switch (status)
        {
            case KeyValueStatus.Ok:
            case KeyValueStatus.CasMismatch:
                valueAllowed = true;
                break;
            case KeyValueStatus.NotFound:
            case KeyValueStatus.BadOperation:
                valueAllowed = false;
                break;
            default:
                return false;
        }
        byte[]? value = null;
        if (presence == HasValue && valueAllowed)
        {
            if (!r.TryValue(out var bytes)) return false;
            value = bytes.ToArray();
        }
        else if (presence != NoValue)
        {
            return false;
        }
        if (!r.AtEnd) return false;
        result = value is null ? status switch
        {
            KeyValueStatus.Ok => Ok,
            KeyValueStatus.NotFound => NotFound,
            KeyValueStatus.BadOperation => BadOperation,
            _ => new(status, null),
        } : new(status, value);
        return true;
    }

    /// <summary>Encodes without building a record; the state machine's hot path.</summary>
    internal static byte[] Encode(KeyValueStatus status, bool hasValue, ReadOnlySpan<byte> value)
    {
        var buffer = new byte[2 + (hasValue ? KeyValueWire.ValuePrefixLength + value.Length : 0)];
        var w = new WireWriter(buffer);
        w.U8((byte)status);
        if (hasValue)
        {
            w.U8(HasValue);
            w.Value(value);
        }
        else
        {
            w.U8(NoValue);
        }
        return buffer;
    }

    public bool Equals(KeyValueResult? other) =>
        other is not null && Status == other.Status && KeyValueOperation.BytesEqual(Value, other.Value);

    public override int GetHashCode() => HashCode.Combine(Status, KeyValueOperation.BytesHash(Value));
}
