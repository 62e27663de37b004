using System.Buffers.Binary;

namespace MinBft.Usig;

/// <summary>
/// The bytes a USIG certificate covers, in the protocol's canonical encoding: the domain prefix
/// "MINBFT/1" and tag 16 (so a USIG certificate can never pass for another signature of the
/// protocol, nor the reverse), the USIG identity (replica id and epoch), the counter, and the
/// length-prefixed SHA-256 digest of the certified message. One source file, compiled into the
/// USIG library (which certifies) and linked into MinBft.Protocol (which verifies): never two copies.
/// </summary>
internal static class UsigCertificateInput
{
    public const int DigestLength = 32;
    public const int Length = 8 + 1 + 4 + 8 + 8 + 4 + DigestLength;

    public static byte[] Encode(int replicaId, ulong epoch, ulong counter, ReadOnlySpan<byte> digest)
    {
        if (digest.Length != DigestLength)
            throw new ArgumentException($"a USIG certifies a {DigestLength}-byte SHA-256 digest, got {digest.Length} bytes", nameof(digest));
        var bytes = new byte[Length];
        "MINBFT/1"u8.CopyTo(bytes);
        bytes[8] = 16; // MessageTag.UsigCertificate
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(9), replicaId);
        BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(13), epoch);
        BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(21), counter);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(29), DigestLength);
        digest.CopyTo(bytes.AsSpan(33));
        return bytes;
    }
}
