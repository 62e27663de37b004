using System.Buffers.Binary;
using System.Text;

namespace MinBft.Encoding;

/// <summary>
/// Writes the canonical bytes a signature or UI covers: big-endian integers, every
/// variable-length field length-prefixed, so no two different field sequences encode alike.
/// Hand-written on purpose: the Orleans wire format is not stable enough to sign.
/// </summary>
public sealed class CanonicalWriter
{
    private byte[] _buffer;
    private int _length;

    public CanonicalWriter(int capacity = 256) => _buffer = new byte[Math.Max(16, capacity)];

    public int Length => _length;

    public CanonicalWriter Tag(MessageTag tag)
    {
        // Domain separation: a fixed protocol prefix plus a per-message tag, so bytes signed
        // as one message type can never be replayed as another.
        Raw(MessageTags.Domain);
        return U8((byte)tag);
    }

    public CanonicalWriter U8(byte value)
    {
        Ensure(1);
        _buffer[_length++] = value;
        return this;
    }

    public CanonicalWriter I32(int value)
    {
        Ensure(4);
        BinaryPrimitives.WriteInt32BigEndian(_buffer.AsSpan(_length), value);
        _length += 4;
        return this;
    }

    public CanonicalWriter I64(long value)
    {
        Ensure(8);
        BinaryPrimitives.WriteInt64BigEndian(_buffer.AsSpan(_length), value);
        _length += 8;
        return this;
    }

    public CanonicalWriter U64(ulong value)
    {
        Ensure(8);
        BinaryPrimitives.WriteUInt64BigEndian(_buffer.AsSpan(_length), value);
        _length += 8;
        return this;
    }

    public CanonicalWriter Bytes(ReadOnlySpan<byte> value)
    {
        I32(value.Length);
        return Raw(value);
    }

    public CanonicalWriter Text(string value)
    {
        var count = System.Text.Encoding.UTF8.GetByteCount(value);
        I32(count);
        Ensure(count);
        _length += System.Text.Encoding.UTF8.GetBytes(value, _buffer.AsSpan(_length));
        return this;
    }

    public CanonicalWriter Raw(ReadOnlySpan<byte> value)
    {
        Ensure(value.Length);
        value.CopyTo(_buffer.AsSpan(_length));
        _length += value.Length;
        return this;
    }

    public ReadOnlySpan<byte> WrittenSpan => _buffer.AsSpan(0, _length);

    public byte[] ToArray() => _buffer.AsSpan(0, _length).ToArray();

    private void Ensure(int extra)
    {
        if (_length + extra <= _buffer.Length) return;
        var size = _buffer.Length;
        while (size < _length + extra) size *= 2;
        Array.Resize(ref _buffer, size);
    }
}
