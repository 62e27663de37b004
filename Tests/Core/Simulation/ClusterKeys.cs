using MinBft.Crypto;
using MinBft.Encoding;
using MinBft.Messages;
using MinBft.Protocol;
using MinBft.Tests.Usig;
using MinBft.Usig;

namespace MinBft.Tests.Simulation;

/// <summary>
/// Real keys for a simulated cluster, drawn from the run's seed so a run replays exactly:
/// each replica's Ed25519 signing key and USIG (Ed25519 or HMAC), clients' keys.
/// </summary>
public sealed class ClusterKeys
{
    private readonly Ed25519KeyPair[] _signing;
    private readonly IUsigCertifier[] _usigCertifiers;
    private readonly IUiVerifier? _usigVerifier;
    private readonly IRequestVerifier _requestVerifier = new MemoizedRequestVerifier(new RequestVerifier());

    // The verifiers are shared by the cluster's replicas and memoized (MemoizedVerifiers.cs): the
    // same checks, by the production verifiers, each made once per run.
    private ClusterKeys(Ed25519KeyPair[] signing, IUsigCertifier[] certifiers, UsigVerifier? verifier)
    {
        _signing = signing;
        _usigCertifiers = certifiers;
        _usigVerifier = verifier is null ? null : new MemoizedUiVerifier(verifier);
        ReplicaVerifier = new MemoizedReplicaSignatureVerifier(new ReplicaKeyRing(signing.Select(k => k.PublicKey).ToArray()));
    }

    public const ulong Epoch = 1;

    public IReplicaSignatureVerifier ReplicaVerifier { get; }

    /// <summary>HMAC: no verifier outside the USIGs; replicas pre-verify through their own (<see cref="SimPreverifier"/>).</summary>
    public bool Hmac => _usigVerifier is null;

    /// <summary>The length of a well-formed UI certificate in this cluster's scheme (HMAC-SHA256
    /// tag or Ed25519 signature): forgeries of this length fail on the check, not on the size.</summary>
    public int UsigCertificateLength => Hmac ? System.Security.Cryptography.HMACSHA256.HashSizeInBytes : MinBft.Encoding.MessageLimits.SignatureLength;

    public static ClusterKeys Create(int n, Random rng, bool hmac)
    {
        var signing = new Ed25519KeyPair[n];
        var certifiers = new IUsigCertifier[n];
        var verification = new Dictionary<int, UsigVerificationKey>();
        // HMAC mode: every USIG shares one secret; it never leaves the USIGs, which alone verify.
        var sharedSecret = Bytes(rng, 32);
        for (var i = 0; i < n; i++)
        {
            signing[i] = Ed25519KeyPair.FromPrivateKey(Bytes(rng, 32));
            if (hmac)
            {
                certifiers[i] = new HmacUsigCertifier(sharedSecret);
            }
            else
            {
                var usigKey = Ed25519KeyPair.FromPrivateKey(Bytes(rng, 32));
                certifiers[i] = new Ed25519UsigCertifier(usigKey.PrivateKey);
                verification[i] = UsigVerificationKey.Ed25519(Epoch, usigKey.PublicKey);
            }
        }
        return new ClusterKeys(signing, certifiers, hmac ? null : new UsigVerifier(verification));
    }

    /// <param name="preverified">HMAC: the verifier the host fills from the replica's own USIG.</param>
    public ProtocolCrypto CryptoFor(int replica, IUiVerifier? preverified = null) =>
        new(_usigVerifier ?? preverified ?? throw new ArgumentNullException(nameof(preverified), "HMAC UIs are verified through the replica's own USIG"),
            new Ed25519ReplicaSigner(_signing[replica]), ReplicaVerifier, _requestVerifier);

    public IReplicaSigner SignerFor(int replica) => new Ed25519ReplicaSigner(_signing[replica]);

    /// <summary>Replica <paramref name="replica"/>'s USIG with a fresh in-memory counter store, initialised for
    /// <see cref="Epoch"/>. Called twice for one replica, it makes a cloned USIG (same key, epoch and counter).</summary>
    public SimUsig UsigFor(int replica) =>
        new(new UsigCore(replica, Epoch, _usigCertifiers[replica], new InMemoryUsigCounterStore(UsigState.Fresh(Epoch))));

    internal SimClientSigner NewClient(Random rng) => new(new ClientSigner(Ed25519KeyPair.FromPrivateKey(Bytes(rng, 32))));

    private static byte[] Bytes(Random rng, int length)
    {
        var bytes = new byte[length];
        rng.NextBytes(bytes);
        return bytes;
    }
}

/// <summary>The real USIG over an in-memory store, whose writes complete at once.</summary>
public sealed class SimUsig(UsigCore usig)
{
    /// <summary>The USIG's own limits, as a replica reads them.</summary>
    public const int ReissueWindow = UsigCore.RecentWindow;
    public const int MaxBatch = UsigCore.MaxBatch;

    public UsigCore Core => usig;

    /// <summary>The last counter issued (durable).</summary>
    public ulong Counter => Sync(usig.LoadAsync(CancellationToken.None)).Counter;

    /// <summary>HMAC: what this USIG says about each claim (the only place the secret verifies).</summary>
    public bool[] VerifyUis(IReadOnlyList<UiClaim> claims) =>
        usig.VerifyUis(claims.Select(c => new UsigClaim(c.ReplicaId, c.Ui.Epoch, c.Ui.Counter, c.Digest, c.Ui.Certificate)).ToList());

    /// <summary>Certifies at the next counter (a caller outside the protocol: a test or a rogue replica).</summary>
    public UniqueIdentifier CreateUi(byte[] certifiedDigest) => CreateUis(Counter + 1, [certifiedDigest])[0];

    public IReadOnlyList<UniqueIdentifier> CreateUis(ulong firstCounter, IReadOnlyList<byte[]> digests) =>
        Sync(usig.CreateUisAsync(firstCounter, digests.Select(d => (ReadOnlyMemory<byte>)d).ToList(), CancellationToken.None)).Select(ToUniqueIdentifier).ToList();

    public UniqueIdentifier? ReissueUi(ulong counter, byte[] digest) => Sync(usig.ReissueUiAsync(counter, digest, CancellationToken.None)) is { } ui ? ToUniqueIdentifier(ui) : null;

    // The USIG core's UI as the protocol carries it (the grain's adapter does the same; the
    // simulator has no grain).
    private static UniqueIdentifier ToUniqueIdentifier(UsigUi ui) => new(ui.Epoch, ui.Counter, ui.Certificate);

    private static T Sync<T>(Task<T> task)
    {
        if (!task.IsCompleted) throw new InvalidOperationException("the in-memory USIG store completes synchronously");
        return task.GetAwaiter().GetResult();
    }
}

/// <summary>A simulated client's key and request signing.</summary>
internal sealed class SimClientSigner(ClientSigner signer)
{
    public string ClientId => signer.ClientId;
    public Request CreateRequest(ulong seq, byte[] operation, ulong incarnation = 0) => signer.CreateRequest(seq, operation, incarnation);
}
