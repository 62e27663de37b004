using System.Buffers;
using System.Buffers.Binary;
using System.Security.Cryptography;

namespace MinBft.Encoding;

/// <summary>
/// Writes the canonical bytes a signature or UI covers: big-endian integers, every
/// variable-length field length-prefixed, so no two different field sequences encode alike.
/// Hand-written on purpose: the Orleans wire format is not stable enough to sign.
/// A writer from <see cref="Rent"/> borrows its buffer from the shared pool and returns it on
/// <see cref="Dispose"/>: bytes that are only hashed (digests, MAC inputs) then allocate nothing.
/// </summary>
public sealed class CanonicalWriter : IDisposable
{
    private byte[] _buffer;
    private int _length;
    private readonly bool _pooled;

    public CanonicalWriter(int capacity = 256) => _buffer = new byte[Math.Max(16, capacity)];

    private CanonicalWriter(byte[] rented)
    {
        _buffer = rented;
        _pooled = true;
    }

    /// <summary>A writer on a pooled buffer of at least <paramref name="capacity"/> bytes; dispose it,
    /// and use nothing from <see cref="WrittenSpan"/> after that.</summary>
    public static CanonicalWriter Rent(int capacity) => new(ArrayPool<byte>.Shared.Rent(Math.Max(16, capacity)));

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

    /// <summary>SHA-256 of the bytes written so far.</summary>
    public byte[] Sha256() => SHA256.HashData(WrittenSpan);

    public void Dispose()
    {
        if (!_pooled || _buffer.Length == 0) return;
        ArrayPool<byte>.Shared.Return(_buffer);
        _buffer = [];
        _length = 0;
    }

    private void Ensure(int extra)
    {
        if (_length + extra <= _buffer.Length) return;
        ObjectDisposedException.ThrowIf(_pooled && _buffer.Length == 0, this);
        var size = _buffer.Length;
        while (size < _length + extra) size *= 2;
        if (!_pooled)
        {
            Array.Resize(ref _buffer, size);
            return;
        }
        var larger = ArrayPool<byte>.Shared.Rent(size);
        _buffer.AsSpan(0, _length).CopyTo(larger);
        ArrayPool<byte>.Shared.Return(_buffer);
        _buffer = larger;
    }
}
