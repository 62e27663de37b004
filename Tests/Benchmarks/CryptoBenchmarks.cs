using System.Buffers.Binary;
using System.Security.Cryptography;
using BenchmarkDotNet.Attributes;
using MinBft.Crypto;
using MinBft.Messages;
using MinBft.Tests.Usig;
using MinBft.Usig;
using Org.BouncyCastle.Security;

namespace MinBft.Benchmarks;

/// <summary>
/// Per-operation cost of the authentication the protocol does on every message: USIG CreateUI
/// and VerifyUI in both schemes, and the client request signature. The baseline hashes the
/// bytes a USIG certificate covers, so each ratio says how many SHA-256 computations one
/// operation costs.
/// </summary>
[MemoryDiagnoser]
public class CryptoBenchmarks
{
    private const int ReplicaId = 0;
    private const ulong Epoch = 1;

    private readonly byte[] _digest = new byte[32];
    private readonly byte[] _operation = new byte[64];
    private byte[] _certificateInput = [];
    private ulong _next;

    private UsigCore _ed25519Usig = null!;
    private UsigCore _hmacUsig = null!;
    private UsigVerifier _ed25519Verifier = null!;
    private UniqueIdentifier _ed25519Ui = null!;
    private UniqueIdentifier _hmacUi = null!;
    private ClientSigner _client = null!;
    private RequestVerifier _requestVerifier = null!;
    private ulong _ed25519Counter;
    private ulong _hmacCounter;
    private Request _request = null!;

    [GlobalSetup]
    public void Setup()
    {
        var random = new SecureRandom();
        var usigKeys = Ed25519KeyPair.Generate(random);
        var hmacKey = new byte[32];
        random.NextBytes(hmacKey);
        random.NextBytes(_digest);
        random.NextBytes(_operation);
        _certificateInput = UsigCertificateInput.Encode(ReplicaId, Epoch, 1, _digest);

        _ed25519Usig = new UsigCore(ReplicaId, Epoch, new Ed25519UsigCertifier(usigKeys.PrivateKey), new InMemoryUsigCounterStore(UsigState.Fresh(Epoch)));
        _hmacUsig = new UsigCore(ReplicaId, Epoch, new HmacUsigCertifier(hmacKey), new InMemoryUsigCounterStore(UsigState.Fresh(Epoch)));
        _ed25519Verifier = new UsigVerifier(new Dictionary<int, UsigVerificationKey> { [ReplicaId] = UsigVerificationKey.Ed25519(Epoch, usigKeys.PublicKey) });
        _ed25519Ui = Ui(_ed25519Usig.CreateUisAsync(++_ed25519Counter, [_digest], CancellationToken.None).GetAwaiter().GetResult()[0]);
        _hmacUi = Ui(_hmacUsig.CreateUisAsync(++_hmacCounter, [_digest], CancellationToken.None).GetAwaiter().GetResult()[0]);

        _client = new ClientSigner(Ed25519KeyPair.Generate(random));
        _requestVerifier = new RequestVerifier();
        _request = _client.CreateRequest(1, _operation);
    }

    [Benchmark(Baseline = true, Description = "SHA-256 of USIG certificate input (baseline)")]
    public byte[] Sha256Baseline() => SHA256.HashData(_certificateInput);

    [Benchmark(Description = "USIG CreateUI, Ed25519 (in-memory store)")]
    public Task<IReadOnlyList<UsigUi>> CreateUiEd25519() => _ed25519Usig.CreateUisAsync(++_ed25519Counter, [NextDigest()], CancellationToken.None);

    [Benchmark(Description = "USIG CreateUI, HMAC-SHA256 (in-memory store)")]
    public Task<IReadOnlyList<UsigUi>> CreateUiHmac() => _hmacUsig.CreateUisAsync(++_hmacCounter, [NextDigest()], CancellationToken.None);

    [Benchmark(Description = "USIG VerifyUI, Ed25519")]
    public bool VerifyUiEd25519() => _ed25519Verifier.Verify(ReplicaId, _ed25519Ui, _digest);

    [Benchmark(Description = "USIG VerifyUI, HMAC-SHA256 (inside the USIG)")]
    public bool VerifyUiHmac() => _hmacUsig.VerifyUis([new UsigClaim(ReplicaId, Epoch, _hmacUi.Counter, _digest, _hmacUi.Certificate)])[0];

    [Benchmark(Description = "Client request sign (64-byte op)")]
    public Request CreateRequest() => _client.CreateRequest(_next++, _operation);

    [Benchmark(Description = "Client request verify (64-byte op)")]
    public bool VerifyRequest() => _requestVerifier.Verify(_request);

    private static UniqueIdentifier Ui(UsigUi ui) => new(ui.Epoch, ui.Counter, ui.Certificate);

    // A fresh digest per call: repeating the last digest would hit the idempotent retry path.
    private byte[] NextDigest()
    {
        var digest = new byte[32];
        BinaryPrimitives.WriteUInt64BigEndian(digest, ++_next);
        return digest;
    }
}
