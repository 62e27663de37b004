using System.Buffers.Binary;

namespace MinBft.Protocol;

/// <summary>A SHA-256 value usable as a dictionary key (value equality, no allocation).</summary>
public readonly record struct Sha256Digest(ulong A, ulong B, ulong C, ulong D)
{
    public static Sha256Digest From(ReadOnlySpan<byte> digest)
    {
        ProtocolInvariantException.Check(digest.Length == 32, "a SHA-256 digest is 32 bytes");
        return new(
            BinaryPrimitives.ReadUInt64BigEndian(digest),
            BinaryPrimitives.ReadUInt64BigEndian(digest[8..]),
            BinaryPrimitives.ReadUInt64BigEndian(digest[16..]),
            BinaryPrimitives.ReadUInt64BigEndian(digest[24..]));
    }

    public byte[] ToArray()
    {
        var bytes = new byte[32];
        BinaryPrimitives.WriteUInt64BigEndian(bytes, A);
        BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(8), B);
        BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(16), C);
        BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(24), D);
        return bytes;
    }

    public override string ToString() => $"{A:x16}{B:x16}{C:x16}{D:x16}";
}
