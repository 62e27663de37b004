using System.Security.Cryptography;
using MinBft.Encoding;
using MinBft.Messages;
using NSec.Cryptography;

namespace MinBft.Crypto;

/// <summary>
/// What both ends of a client-replica MAC session compute: X25519 agreement, then HKDF-SHA256
/// salted with the signed accept's bytes (so the key is bound to both public keys, the client,
/// the replica and the epoch), and the truncated HMAC-SHA256 of a request's digest (client to
/// replica) or of a reply's leaf digest (replica to client), each under its own tag.
/// </summary>
internal static class SessionKeys
{
    private static ReadOnlySpan<byte> Info => "MINBFT/1 request mac"u8;

    /// <summary>A fresh X25519 key pair (private key and raw public key).</summary>
    public static (Key Private, byte[] Public) Create()
    {
        var key = Key.Create(KeyAgreementAlgorithm.X25519);
        return (key, key.PublicKey.Export(KeyBlobFormat.RawPublicKey));
    }

    /// <summary>The MAC key for the session an accept describes, or null when the other side's key is unusable.</summary>
    public static byte[]? Derive(Key own, ReadOnlySpan<byte> otherPublic, ClientSessionAccept accept)
    {
        if (!PublicKey.TryImport(KeyAgreementAlgorithm.X25519, otherPublic, KeyBlobFormat.RawPublicKey, out var other) || other is null) return null;
        try
        {
            using var shared = KeyAgreementAlgorithm.X25519.Agree(own, other);
            if (shared is null) return null; // a low-order point: no contributory secret
            var salt = SHA256.HashData(MessageEncoding.ClientSessionAccept(accept.ReplicaId, accept.ClientId, accept.Epoch, accept.ClientAgreementKey, accept.ReplicaAgreementKey));
            return KeyDerivationAlgorithm.HkdfSha256.DeriveBytes(shared, salt, Info, 32);
        }
        catch (CryptographicException)
        {
            return null; // a low-order point: no contributory secret
        }
    }

    /// <summary>The MAC of a REPLY under the session key: what <see cref="Reply.Mac"/> holds.</summary>
    public static byte[] ReplyMac(byte[] key, Reply reply)
    {
        using var input = CanonicalWriter.Rent(64);
        var mac = new byte[MessageLimits.ReplyMacLength];
        TruncatedHmac(key, MessageEncoding.WriteReplyAuthenticator(input, MessageEncoding.ReplyLeafDigest(reply)).WrittenSpan, mac);
        return mac;
    }

    public static void Mac(byte[] key, int replicaId, ReadOnlySpan<byte> requestDigest, Span<byte> destination)
    {
        using var input = CanonicalWriter.Rent(64);
        TruncatedHmac(key, MessageEncoding.WriteRequestAuthenticator(input, replicaId, requestDigest).WrittenSpan, destination[..MessageLimits.RequestMacLength]);
    }

    /// <summary>HMAC-SHA256 of <paramref name="input"/>, cut to <paramref name="destination"/>'s length.</summary>
    private static void TruncatedHmac(byte[] key, ReadOnlySpan<byte> input, Span<byte> destination)
    {
        Span<byte> full = stackalloc byte[32];
        HMACSHA256.HashData(key, input, full);
        full[..destination.Length].CopyTo(destination);
    }
}
