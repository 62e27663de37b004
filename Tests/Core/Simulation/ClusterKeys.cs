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
    // Per replica, every USIG identity it had (the manifest's), oldest first: key (null for HMAC) and first view.
    private readonly List<(UsigEpoch Identity, byte[]? PublicKey)>[] _identities;
    private IUiVerifier? _usigVerifier;
    private readonly IRequestVerifier _requestVerifier = new MemoizedRequestVerifier(new RequestVerifier());

    // The verifiers are shared by the cluster's replicas and memoized (MemoizedVerifiers.cs): the
    // same checks, by the production verifiers, each made once per run.
    private ClusterKeys(Ed25519KeyPair[] signing, IUsigCertifier[] certifiers, byte[]?[] usigPublicKeys, bool hmac)
    {
        _signing = signing;
        _usigCertifiers = certifiers;
        _identities = usigPublicKeys.Select(k => new List<(UsigEpoch, byte[]?)> { (new UsigEpoch(Epoch, 0), k) }).ToArray();
        Hmac = hmac;
        Epochs = BuildVerifier();
        ReplicaVerifier = new MemoizedReplicaSignatureVerifier(new ReplicaKeyRing(signing.Select(k => k.PublicKey).ToArray()));
    }

    /// <summary>Every USIG's first epoch.</summary>
    public const ulong Epoch = 1;

    /// <summary>The current manifest's USIG identities (what a replica started now trusts).</summary>
    public UsigEpochs Epochs { get; private set; }

    /// <summary>Replica <paramref name="replica"/>'s current USIG epoch.</summary>
    public ulong EpochOf(int replica) => _identities[replica][^1].Identity.Epoch;

    /// <summary>
    /// keygen --rotate-usig: USIG <paramref name="replica"/> gets the next epoch and, for Ed25519, a new
    /// key (the old one is gone: nothing of the old epoch is certified from now on). Replicas built
    /// after this trust the new manifest; those built before keep the old one until they restart.
    /// </summary>
    public void Rotate(int replica, Random rng, long firstView, ulong firstCheckpoint)
    {
        var epoch = EpochOf(replica) + 1;
        byte[]? publicKey = null;
        if (!Hmac)
        {
            var key = Ed25519KeyPair.FromPrivateKey(Bytes(rng, 32));
            _usigCertifiers[replica] = new Ed25519UsigCertifier(key.PrivateKey);
            publicKey = key.PublicKey;
        }
        _identities[replica].Add((new UsigEpoch(epoch, firstView, firstCheckpoint), publicKey));
        Epochs = BuildVerifier();
    }

    private UsigEpochs BuildVerifier()
    {
        var histories = Enumerable.Range(0, _identities.Length).ToDictionary(i => i, i => (IReadOnlyList<UsigEpoch>)_identities[i].Select(e => e.Identity).ToList());
        if (Hmac) return new UsigEpochs(histories);
        var verifier = new UsigVerifier(Enumerable.Range(0, _identities.Length).ToDictionary(i => i,
            i => (IReadOnlyList<UsigVerificationKey>)_identities[i].Select(e => UsigVerificationKey.Ed25519(e.Identity.Epoch, e.PublicKey!)).ToList()),
            new UsigEpochs(histories));
        _usigVerifier = new MemoizedUiVerifier(verifier);
        return verifier.Epochs;
    }

    public IReplicaSignatureVerifier ReplicaVerifier { get; }

    /// <summary>HMAC: no verifier outside the USIGs; replicas pre-verify through their own (<see cref="SimPreverifier"/>).</summary>
    public bool Hmac { get; }

    /// <summary>The length of a well-formed UI certificate in this cluster's scheme (HMAC-SHA256
    /// tag or Ed25519 signature): forgeries of this length fail on the check, not on the size.</summary>
    public int UsigCertificateLength => Hmac ? System.Security.Cryptography.HMACSHA256.HashSizeInBytes : MinBft.Encoding.MessageLimits.SignatureLength;

    public static ClusterKeys Create(int n, Random rng, bool hmac)
    {
        var signing = new Ed25519KeyPair[n];
        var certifiers = new IUsigCertifier[n];
        var publicKeys = new byte[]?[n];
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
                publicKeys[i] = usigKey.PublicKey;
            }
        }
        return new ClusterKeys(signing, certifiers, publicKeys, hmac);
    }

    /// <param name="preverified">HMAC: the verifier the host fills from the replica's own USIG.</param>
    public ProtocolCrypto CryptoFor(int replica, IUiVerifier? preverified = null) =>
        new((Hmac ? null : _usigVerifier) ?? preverified ?? throw new ArgumentNullException(nameof(preverified), "HMAC UIs are verified through the replica's own USIG"),
            new Ed25519ReplicaSigner(_signing[replica]), ReplicaVerifier, _requestVerifier);

    public IReplicaSigner SignerFor(int replica) => new Ed25519ReplicaSigner(_signing[replica]);

    /// <summary>Replica <paramref name="replica"/>'s USIG with a fresh in-memory counter store, initialised for
    /// its current epoch. Called twice for one replica, it makes a cloned USIG (same key, epoch and counter).</summary>
    public SimUsig UsigFor(int replica) =>
        new(new UsigCore(replica, EpochOf(replica), _usigCertifiers[replica], new InMemoryUsigCounterStore(UsigState.Fresh(EpochOf(replica)))));

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
    public const int MaxKeptBytes = UsigCore.MaxKeptBytes;

    public UsigCore Core => usig;

    /// <summary>The last counter issued (durable).</summary>
    public ulong Counter => Sync(usig.LoadAsync(CancellationToken.None)).Counter;

    /// <summary>HMAC: what this USIG says about each claim (the only place the secret verifies).</summary>
    public bool[] VerifyUis(IReadOnlyList<UiClaim> claims) =>
        usig.VerifyUis(claims.Select(c => new UsigClaim(c.ReplicaId, c.Ui.Epoch, c.Ui.Counter, c.Digest, c.Ui.Certificate)).ToList());

    /// <summary>Certifies at the next counter (a caller outside the protocol: a test or a rogue replica).</summary>
    public UniqueIdentifier CreateUi(byte[] certifiedDigest) => CreateUis(Counter + 1, [certifiedDigest])[0];

    /// <param name="kept">The messages to keep with the counters (null: none), as the replica asks.</param>
    public IReadOnlyList<UniqueIdentifier> CreateUis(ulong firstCounter, IReadOnlyList<byte[]> digests, IReadOnlyList<byte[]>? kept = null) =>
        Sync(usig.CreateUisAsync(firstCounter, digests.Select(d => (ReadOnlyMemory<byte>)d).ToList(),
            kept?.Select(m => (ReadOnlyMemory<byte>)m).ToList(), CancellationToken.None)).Select(ToUniqueIdentifier).ToList();

    /// <summary>The messages the USIG kept with its last batch (durable), oldest first.</summary>
    public IReadOnlyList<byte[]> Kept => Sync(usig.LoadAsync(CancellationToken.None)).KeptMessages;

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
