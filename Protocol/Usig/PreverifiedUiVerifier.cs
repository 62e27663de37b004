using MinBft.Encoding;
using MinBft.Messages;
using MinBft.Protocol;

namespace MinBft.Usig;

/// <summary>
/// The HMAC scheme's UI verifier on the replica side: it holds no secret. The host has the
/// replica's own USIG verify the claims a message carries (<see cref="UiClaims"/>) before handing
/// the message to the core, records the valid ones here, and the core's checks are answered from
/// them: a claim never recorded is invalid. Bounded: the oldest claims are forgotten first (a
/// buffered message whose claims were forgotten is rejected, and retransmission brings it again).
/// </summary>
public sealed class PreverifiedUiVerifier : IUiVerifier
{
    private readonly int _capacity;
    private readonly HashSet<Key> _valid = [];
    private readonly Queue<Key> _order = new();

    /// <param name="epochs">Each replica's USIG epoch (one identity each, leading from view 0): a UI of another epoch is never valid.</param>
    /// <param name="capacity">Most valid claims remembered.</param>
    public PreverifiedUiVerifier(IReadOnlyDictionary<int, ulong> epochs, int capacity = 1 << 16)
        : this(UsigEpochs.Single(epochs), capacity)
    {
    }

    /// <param name="epochs">Each replica's USIG identities (the manifest's): a UI of an epoch none of them has is never valid.</param>
    /// <param name="capacity">Most valid claims remembered.</param>
    public PreverifiedUiVerifier(UsigEpochs epochs, int capacity = 1 << 16)
    {
        ArgumentNullException.ThrowIfNull(epochs);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        Epochs = epochs;
        _capacity = capacity;
    }

    public UsigEpochs Epochs { get; }

    public int Count => _valid.Count;

    /// <summary>Whether the USIG needs to be asked: a plausible claim (a known epoch, counter,
    /// lengths) that is not known valid yet. Implausible claims are invalid without asking.</summary>
    public bool NeedsVerification(UiClaim claim) => Plausible(claim) && !_valid.Contains(KeyOf(claim.ReplicaId, claim.Ui, claim.Digest));

    /// <summary>What the USIG answered for <paramref name="claim"/>.</summary>
    public void Record(UiClaim claim, bool valid)
    {
        ArgumentNullException.ThrowIfNull(claim);
        if (!valid || !Plausible(claim)) return;
        var key = KeyOf(claim.ReplicaId, claim.Ui, claim.Digest);
        if (!_valid.Add(key)) return;
        _order.Enqueue(key);
        while (_order.Count > _capacity) _valid.Remove(_order.Dequeue());
    }

    public bool Verify(int replicaId, UniqueIdentifier ui, ReadOnlySpan<byte> certifiedDigest) =>
        ui?.Certificate is not null && Plausible(replicaId, ui, certifiedDigest.Length) && _valid.Contains(KeyOf(replicaId, ui, certifiedDigest));

    private bool Plausible(UiClaim c) => c.Ui?.Certificate is not null && c.Digest is not null && Plausible(c.ReplicaId, c.Ui, c.Digest.Length);

    private bool Plausible(int replicaId, UniqueIdentifier ui, int digestLength) =>
        ui.Counter != 0 && digestLength == UsigCertificateInput.DigestLength && ui.Certificate.Length == 32
        && Epochs.IsKnown(replicaId, ui.Epoch);

    // The certificate is part of the key: a forged certificate for a valid (replica, counter, digest) is another claim.
    private static Key KeyOf(int replicaId, UniqueIdentifier ui, ReadOnlySpan<byte> digest) =>
        new(replicaId, ui.Counter, Sha256Digest.From(digest), Sha256Digest.From(ui.Certificate));

    private readonly record struct Key(int ReplicaId, ulong Counter, Sha256Digest Digest, Sha256Digest Certificate);
}
