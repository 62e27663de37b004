using BenchmarkDotNet.Attributes;
using MinBft.Crypto;
using Org.BouncyCastle.Security;

namespace MinBft.Benchmarks;

/// <summary>
/// Ed25519 in BouncyCastle (what the project uses) against libsodium through NSec, on a
/// request-sized message: the project switches only if another implementation is at least twice
/// as fast in the same run. "decoded key" verifies with a public key decoded beforehand (replica
/// keys are; a client's key arrives in its request and is decoded per verification unless cached).
/// </summary>
[MemoryDiagnoser]
public class Ed25519ImplementationBenchmarks
{
    private readonly byte[] _message = new byte[120];
    private Ed25519KeyPair _bouncyKey = null!;
    private Ed25519PublicKey _bouncyPublic = null!;
    private byte[] _publicKey = [];
    private byte[] _signature = [];
    private NSec.Cryptography.Key _sodiumKey = null!;
    private NSec.Cryptography.PublicKey _sodiumPublic = null!;

    [GlobalSetup]
    public void Setup()
    {
        var random = new SecureRandom();
        random.NextBytes(_message);
        _bouncyKey = Ed25519KeyPair.Generate(random);
        _publicKey = _bouncyKey.PublicKey;
        _bouncyPublic = Ed25519PublicKey.Create(_publicKey);
        _signature = _bouncyKey.Sign(_message);
        var algorithm = NSec.Cryptography.SignatureAlgorithm.Ed25519;
        _sodiumKey = NSec.Cryptography.Key.Import(algorithm, _bouncyKey.PrivateKey, NSec.Cryptography.KeyBlobFormat.RawPrivateKey);
        _sodiumPublic = NSec.Cryptography.PublicKey.Import(algorithm, _publicKey, NSec.Cryptography.KeyBlobFormat.RawPublicKey);
        if (!algorithm.Verify(_sodiumPublic, _message, _signature)) throw new InvalidOperationException("libsodium rejects BouncyCastle's signature");
        if (!_bouncyPublic.Verify(_message, algorithm.Sign(_sodiumKey, _message))) throw new InvalidOperationException("BouncyCastle rejects libsodium's signature");
    }

    private const int ConcurrentOperations = 64;

    /// <summary>How the silo uses it: several threads verifying and signing at once (BouncyCastle
    /// takes a process-wide lock on every call to check its precomputed tables).</summary>
    [Benchmark(Description = "BouncyCastle verify+sign, 2 threads", OperationsPerInvoke = ConcurrentOperations)]
    public void BouncyConcurrent() => Parallel.For(0, ConcurrentOperations, new ParallelOptions { MaxDegreeOfParallelism = 2 }, i =>
    {
        if (i % 3 == 0) _bouncyKey.Sign(_message);
        else _bouncyPublic.Verify(_message, _signature);
    });

    [Benchmark(Description = "libsodium (NSec) verify+sign, 2 threads", OperationsPerInvoke = ConcurrentOperations)]
    public void SodiumConcurrent() => Parallel.For(0, ConcurrentOperations, new ParallelOptions { MaxDegreeOfParallelism = 2 }, i =>
    {
        if (i % 3 == 0) NSec.Cryptography.SignatureAlgorithm.Ed25519.Sign(_sodiumKey, _message);
        else NSec.Cryptography.SignatureAlgorithm.Ed25519.Verify(_sodiumPublic, _message, _signature);
    });

    [Benchmark(Baseline = true, Description = "BouncyCastle sign")]
    public byte[] BouncySign() => _bouncyKey.Sign(_message);

    [Benchmark(Description = "libsodium (NSec) sign")]
    public byte[] SodiumSign() => NSec.Cryptography.SignatureAlgorithm.Ed25519.Sign(_sodiumKey, _message);

    [Benchmark(Description = "BouncyCastle verify, decoded key")]
    public bool BouncyVerify() => _bouncyPublic.Verify(_message, _signature);

    [Benchmark(Description = "BouncyCastle verify, key decoded per call")]
    public bool BouncyVerifyDecoding() => Ed25519.Verify(_publicKey, _message, _signature);

    [Benchmark(Description = "libsodium (NSec) verify, imported key")]
    public bool SodiumVerify() => NSec.Cryptography.SignatureAlgorithm.Ed25519.Verify(_sodiumPublic, _message, _signature);

    [Benchmark(Description = "libsodium (NSec) verify, key imported per call")]
    public bool SodiumVerifyImporting() => NSec.Cryptography.SignatureAlgorithm.Ed25519.Verify(
        NSec.Cryptography.PublicKey.Import(NSec.Cryptography.SignatureAlgorithm.Ed25519, _publicKey, NSec.Cryptography.KeyBlobFormat.RawPublicKey), _message, _signature);
}
