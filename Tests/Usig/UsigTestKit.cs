using MinBft.Crypto;
using MinBft.Messages;
using MinBft.Tests.Crypto;
using MinBft.Usig;

namespace MinBft.Tests.Usig;

/// <summary>Builds USIGs of either certificate scheme for the property tests.</summary>
internal static class UsigTestKit
{
    public const string Ed25519Scheme = "ed25519";
    public const string HmacScheme = "hmac";

    // Generous: only reached when something is broken; waits end as soon as their condition holds.
    public static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    public static TheoryData<string> Schemes => new() { Ed25519Scheme, HmacScheme };

    public sealed record Setup(IUsigCertifier Certifier, UsigVerificationKey Key, Func<ulong, UsigVerificationKey> KeyForEpoch);

    public static Setup Scheme(string scheme, Random random, ulong epoch) => scheme switch
    {
        Ed25519Scheme => Ed25519Setup(Ed25519KeyPair.Generate(random.SecureRandom()), epoch),
        HmacScheme => HmacSetup(random.Bytes(32), epoch),
        _ => throw new ArgumentOutOfRangeException(nameof(scheme)),
    };

    private static Setup Ed25519Setup(Ed25519KeyPair keys, ulong epoch) =>
        new(new Ed25519UsigCertifier(keys.PrivateKey), UsigVerificationKey.Ed25519(epoch, keys.PublicKey), e => UsigVerificationKey.Ed25519(e, keys.PublicKey));

    private static Setup HmacSetup(byte[] secret, ulong epoch) =>
        new(new HmacUsigCertifier(secret), new(epoch, new HmacCheckInsideTheUsig(secret)), e => new(e, new HmacCheckInsideTheUsig(secret)));

    /// <summary>For these tests only: the USIG library's HMAC check behind the verifier interface.
    /// In a deployment an HMAC check runs inside a USIG only (VerifyUis).</summary>
    private sealed class HmacCheckInsideTheUsig(byte[] secret) : IUsigCertificateVerifier
    {
        private readonly HmacUsigCertifier _usig = new(secret);

        public int CertificateLength => 32;

        public bool Verify(ReadOnlySpan<byte> input, ReadOnlySpan<byte> certificate) => _usig.Verify(input, certificate);
    }

    public static UsigVerifier VerifierFor(int replicaId, UsigVerificationKey key) =>
        new(new Dictionary<int, UsigVerificationKey> { [replicaId] = key });

    /// <summary>Certifies <paramref name="digest"/> at the USIG's next counter.</summary>
    public static async Task<UniqueIdentifier> Create(this UsigCore usig, byte[] digest)
    {
        var next = (await usig.LoadAsync(CancellationToken.None).WaitAsync(Deadline)).Counter + 1;
        return await usig.CreateAt(next, digest);
    }

    /// <summary>Certifies <paramref name="digest"/> at <paramref name="counter"/> (or gets the UI again
    /// if that counter went to that digest).</summary>
    public static async Task<UniqueIdentifier> CreateAt(this UsigCore usig, ulong counter, byte[] digest, CancellationToken cancellationToken = default) =>
        (await usig.CreateUisAsync(counter, [digest], cancellationToken))[0].ToUniqueIdentifier();

    /// <summary>Both certificate schemes are deterministic: a UI issued again is equal byte for byte.</summary>
    public static void AssertSameUi(UniqueIdentifier expected, UniqueIdentifier? actual)
    {
        Assert.NotNull(actual);
        Assert.Equal((expected.Epoch, expected.Counter), (actual.Epoch, actual.Counter));
        Assert.Equal(expected.Certificate, actual.Certificate);
    }
}
