using System.Buffers.Binary;
using System.Text.Unicode;

namespace MinBft.Application;

/// <summary>
/// The field encodings shared by operations, results and snapshots of the key-value service:
/// big-endian, keys as u16-length-prefixed UTF-8, values as u32-length-prefixed bytes. Every
/// decoder is total (returns false, never throws) because its input comes from clients or
/// from other, possibly Byzantine, replicas.
/// </summary>
internal static class KeyValueWire
{
    public const int KeyPrefixLength = 2;
    public const int ValuePrefixLength = 4;

    // Strict: a lone surrogate in a key is a caller error, not something to replace silently
    // with U+FFFD (two different keys would then collide on the wire).
    private static readonly System.Text.UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>UTF-8 bytes of a key; throws if it is null, not valid UTF-16 or too long.</summary>
    public static byte[] KeyBytes(string key, string paramName = "key")
    {
        ArgumentNullException.ThrowIfNull(key, paramName);
        byte[] bytes;
        try
        {
            bytes = StrictUtf8.GetBytes(key);
        }
        catch (System.Text.EncoderFallbackException e)
        {
            throw new ArgumentException("Key is not valid UTF-16 (lone surrogate).", paramName, e);
        }
        if (bytes.Length > KeyValueOperation.MaxKeyLength)
            throw new ArgumentException($"Key is {bytes.Length} UTF-8 bytes; the limit is {KeyValueOperation.MaxKeyLength}.", paramName);
        return bytes;
    }

    public static void CheckValue(ReadOnlySpan<byte> value, string paramName)
    {
        if (value.Length > KeyValueOperation.MaxValueLength)
            throw new ArgumentException($"Value is {value.Length} bytes; the limit is {KeyValueOperation.MaxValueLength}.", paramName);
    }

    /// <summary>Decodes UTF-8 that has already been checked with <see cref="Utf8.IsValid(ReadOnlySpan{byte})"/>.</summary>
    public static string KeyString(ReadOnlySpan<byte> utf8) => System.Text.Encoding.UTF8.GetString(utf8);
}

/// <summary>Writes into an exactly pre-sized buffer; the encoders compute sizes first so they allocate once.</summary>
internal ref struct WireWriter
{
    private readonly Span<byte> _buffer;
    private int _position;

    public WireWriter(Span<byte> buffer)
    {
        _buffer = buffer;
        _position = 0;
    }

    public readonly int Position => _position;

    public void U8(byte value) => _buffer[_position++] = value;

    public void U16(ushort value)
    {
        BinaryPrimitives.WriteUInt16BigEndian(_buffer[_position..], value);
        _position += 2;
    }

    public void U32(uint value)
    {
        BinaryPrimitives.WriteUInt32BigEndian(_buffer[_position..], value);
        _position += 4;
    }

    public void I64(long value)
    {
        BinaryPrimitives.WriteInt64BigEndian(_buffer[_position..], value);
        _position += 8;
    }

    public void Raw(ReadOnlySpan<byte> value)
    {
        value.CopyTo(_buffer[_position..]);
        _position += value.Length;
    }

    /// <summary>A key already checked by <see cref="KeyValueWire.KeyBytes"/>.</summary>
    public void Key(ReadOnlySpan<byte> utf8)
    {
        U16((ushort)utf8.Length);
        Raw(utf8);
    }

    /// <summary>The UTF-8 bytes of <paramref name="text"/>, whose byte count the caller wrote
    /// before (the encoders size their buffers up front, so they know it).</summary>
    public void Utf8(string text) => _position += System.Text.Encoding.UTF8.GetBytes(text, _buffer[_position..]);

    public void Value(ReadOnlySpan<byte> value)
    {
        U32((uint)value.Length);
        Raw(value);
    }
}

/// <summary>Bounds-checked reader: every Try method returns false instead of reading past the end.</summary>
internal ref struct WireReader
{
    private ReadOnlySpan<byte> _rest;

    public WireReader(ReadOnlySpan<byte> source) => _rest = source;

    public readonly bool AtEnd => _rest.IsEmpty;

    public readonly int Remaining => _rest.Length;

    public bool TryU8(out byte value)
    {
        value = 0;
        if (_rest.IsEmpty) return false;
        value = _rest[0];
        _rest = _rest[1..];
        return true;
    }

    public bool TryU16(out ushort value)
    {
        if (!BinaryPrimitives.TryReadUInt16BigEndian(_rest, out value)) return false;
        _rest = _rest[2..];
        return true;
    }

    public bool TryU32(out uint value)
    {
        if (!BinaryPrimitives.TryReadUInt32BigEndian(_rest, out value)) return false;
        _rest = _rest[4..];
        return true;
    }

    public bool TryI64(out long value)
    {
        if (!BinaryPrimitives.TryReadInt64BigEndian(_rest, out value)) return false;
        _rest = _rest[8..];
        return true;
    }

    public bool TryRaw(int count, out ReadOnlySpan<byte> value)
    {
        value = default;
        if ((uint)count > (uint)_rest.Length) return false;
        value = _rest[..count];
        _rest = _rest[count..];
        return true;
    }

    /// <summary>A key: within the length limit and valid UTF-8 (so it round-trips exactly through string).</summary>
    public bool TryKey(out ReadOnlySpan<byte> utf8)
    {
        utf8 = default;
        return TryU16(out var length)
            && length <= KeyValueOperation.MaxKeyLength
            && TryRaw(length, out utf8)
            && Utf8.IsValid(utf8);
    }

    public bool TryValue(out ReadOnlySpan<byte> value)
    {
        value = default;
        return TryU32(out var length)
            && length <= KeyValueOperation.MaxValueLength
            && TryRaw((int)length, out value);
    }
}
