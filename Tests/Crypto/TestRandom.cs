using System.Globalization;
using Org.BouncyCastle.Crypto.Prng;
using Org.BouncyCastle.Security;
using Xunit.Abstractions;

namespace MinBft.Tests.Crypto;

/// <summary>
/// Seeded randomness for property tests: the seed is printed to the test output, and setting
/// MINBFT_SEED replays a failing run exactly.
/// </summary>
internal static class TestRandom
{
    public static Random Create(ITestOutputHelper output)
    {
        var fromEnv = Environment.GetEnvironmentVariable("MINBFT_SEED");
        var seed = fromEnv is { Length: > 0 }
            ? int.Parse(fromEnv, CultureInfo.InvariantCulture)
            : Random.Shared.Next();
        output.WriteLine($"seed {seed} (replay with MINBFT_SEED={seed})");
        return new Random(seed);
    }

    public static byte[] Bytes(this Random random, int length)
    {
        var bytes = new byte[length];
        random.NextBytes(bytes);
        return bytes;
    }

    /// <summary>A deterministic SecureRandom for reproducible key generation in tests (never in production).</summary>
    public static SecureRandom SecureRandom(this Random random)
    {
        var prng = new DigestRandomGenerator(new Org.BouncyCastle.Crypto.Digests.Sha256Digest());
        prng.AddSeedMaterial(random.Bytes(32));
        return new SecureRandom(prng);
    }
}
