using MinBft.Encoding;

namespace MinBft.Usig;

/// <summary>
/// The bytes a USIG certificate covers: domain prefix and the UsigCertificate tag (so a USIG
/// certificate can never be passed off as any other signature in the protocol, nor the
/// reverse), the USIG identity (replica id and epoch, so a UI cannot be replayed as another
/// replica's or as the same replica's from an earlier life), the counter, and the SHA-256
/// digest of the certified message's canonical bytes.
/// </summary>
public static class UsigCertificateInput
{
    public const int DigestLength = MessageLimits.DigestLength;

    public static byte[] Encode(int replicaId, ulong epoch, ulong counter, ReadOnlySpan<byte> digest)
    {
        if (digest.Length != DigestLength)
            throw new ArgumentException($"a USIG certifies a {DigestLength}-byte SHA-256 digest, got {digest.Length} bytes", nameof(digest));
        return new CanonicalWriter(64)
            .Tag(MessageTag.UsigCertificate).I32(replicaId).U64(epoch).U64(counter).Bytes(digest)
            .ToArray();
    }
}
