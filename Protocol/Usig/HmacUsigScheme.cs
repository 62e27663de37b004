using System.Security.Cryptography;

namespace MinBft.Usig;

/// <summary>
/// HMAC-SHA256 scheme (the option; tens of times cheaper than Ed25519, see Tests/Benchmarks/RESULTS.md). The key is a secret shared
/// by the USIGs that must verify each other, so certifying and verifying are the same
/// computation: whoever can verify can also forge. Therefore in HMAC mode the verifier object
/// (<see cref="HmacUsigCertificateVerifier"/>, and a <see cref="UsigVerifier"/> built from it)
/// is part of the trusted computing base: it must run inside the receiver's own trusted USIG
/// component and the key must never be reachable by the untrusted replica code. Replica code
/// asks the USIG "is this UI valid?" and gets only the boolean. The certifying half is in the USIG
/// library (Usig/Core).
/// </summary>
public sealed class HmacUsigCertificateVerifier : IUsigCertificateVerifier
{
    private readonly byte[] _key;

    public HmacUsigCertificateVerifier(ReadOnlySpan<byte> key) => _key = HmacUsig.CheckKey(key);

    public int CertificateLength => HmacUsig.TagLength;

    public bool Verify(ReadOnlySpan<byte> input, ReadOnlySpan<byte> certificate)
    {
        if (certificate.Length != HmacUsig.TagLength) return false;
        Span<byte> expected = stackalloc byte[HmacUsig.TagLength];
        HMACSHA256.HashData(_key, input, expected);
        // Constant time: a timing side channel would let a forger learn a valid tag byte by byte.
        return CryptographicOperations.FixedTimeEquals(expected, certificate);
    }
}

internal static class HmacUsig
{
    public const int TagLength = 32;
    public const int MinKeyLength = 32;

    public static byte[] CheckKey(ReadOnlySpan<byte> key) =>
        key.Length >= MinKeyLength
            ? key.ToArray()
            : throw new ArgumentException($"an HMAC USIG key needs at least {MinKeyLength} bytes, got {key.Length}", nameof(key));
}
