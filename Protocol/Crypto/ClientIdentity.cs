using System.Security.Cryptography;
using MinBft.Encoding;

namespace MinBft.Crypto;

/// <summary>
/// A client's id is derived from its public key, so a REQUEST is self-certifying: nobody can
/// issue a request under another client's id without that client's private key, and replicas
/// need no client registry.
/// The id is the lowercase hex SHA-256 of the domain-separated canonical bytes
/// (MINBFT/1, tag ClientId, length-prefixed public key), 64 characters
/// (<see cref="MessageLimits.ClientIdLength"/>). The tag keeps a client-id hash from ever
/// equalling a digest computed over some other protocol bytes.
/// </summary>
public static class ClientIdentity
{
    /// <summary>The client id of <paramref name="publicKey"/>.</summary>
    public static string FromPublicKey(ReadOnlySpan<byte> publicKey)
    {
        Span<byte> hash = stackalloc byte[32];
        Hash(publicKey, hash);
        return Convert.ToHexStringLower(hash);
    }

    /// <summary>True iff <paramref name="clientId"/> is exactly the id of <paramref name="publicKey"/> (lowercase only: one id per key).</summary>
    public static bool Matches(string? clientId, ReadOnlySpan<byte> publicKey)
    {
        if (clientId is null || clientId.Length != MessageLimits.ClientIdLength) return false;
        Span<byte> hash = stackalloc byte[32];
        Hash(publicKey, hash);
        Span<char> hex = stackalloc char[MessageLimits.ClientIdLength];
        Convert.TryToHexStringLower(hash, hex, out _);
        return hex.SequenceEqual(clientId);
    }

    private static void Hash(ReadOnlySpan<byte> publicKey, Span<byte> hash)
    {
        var w = new CanonicalWriter(16 + publicKey.Length).Tag(MessageTag.ClientId).Bytes(publicKey);
        SHA256.HashData(w.WrittenSpan, hash);
    }
}
