using MinBft.Messages;
using MinBft.Protocol;

namespace MinBft.Usig;

/// <summary>What a receiver knows about one replica's USIG: its current epoch and how to check its certificates.</summary>
public sealed record UsigVerificationKey(ulong Epoch, IUsigCertificateVerifier Verifier)
{
    /// <summary>Signature scheme: the USIG's Ed25519 public key. (The HMAC scheme has no verification
    /// key outside the USIGs: see <see cref="PreverifiedUiVerifier"/>.)</summary>
    public static UsigVerificationKey Ed25519(ulong epoch, ReadOnlySpan<byte> publicKey) =>
        new(epoch, new Ed25519UsigCertificateVerifier(publicKey));
}

/// <summary>
/// VerifyUI: did replica r's USIG certify <c>digest</c> with this UI's counter? UIs come from
/// the network, so this answers false and never throws for anything malformed: an unknown
/// replica, an epoch that is none of its identities, counter 0 (never issued), a certificate of
/// the wrong length, or a certificate that does not verify for (replica, epoch, counter, digest).
/// Retired identities (a rotated USIG's old epochs) verify too: they certify history, and the core
/// decides with <see cref="Epochs"/> where history is all a message may be. Signature scheme: it
/// holds public keys only.
/// </summary>
public sealed class UsigVerifier : IUiVerifier
{
    private readonly Dictionary<(int Replica, ulong Epoch), UsigVerificationKey> _keys = [];

    /// <summary>One identity per replica, leading from view 0 (no USIG was rotated).</summary>
    public UsigVerifier(IReadOnlyDictionary<int, UsigVerificationKey> keys)
        : this(ToLists(keys), UsigEpochs.Single(keys.ToDictionary(p => p.Key, p => p.Value?.Epoch ?? 0)))
    {
    }

    /// <param name="keys">Per replica, the key of each of its identities, current and retired.</param>
    /// <param name="epochs">Per replica, its identities: exactly the epochs <paramref name="keys"/> has keys for.</param>
    public UsigVerifier(IReadOnlyDictionary<int, IReadOnlyList<UsigVerificationKey>> keys, UsigEpochs epochs)
    {
        ArgumentNullException.ThrowIfNull(keys);
        ArgumentNullException.ThrowIfNull(epochs);
        foreach (var (id, list) in keys)
            foreach (var key in list ?? throw new ArgumentException($"replica {id}: no keys", nameof(keys)))
            {
                if (key is null) throw new ArgumentException($"replica {id}: null key", nameof(keys));
                if (!epochs.IsKnown(id, key.Epoch)) throw new ArgumentException($"replica {id}: a key for epoch {key.Epoch}, which is none of its identities", nameof(keys));
                if (!_keys.TryAdd((id, key.Epoch), key)) throw new ArgumentException($"replica {id}: epoch {key.Epoch} listed twice", nameof(keys));
            }
        foreach (var id in keys.Keys)
            if (!_keys.ContainsKey((id, epochs.Current(id)))) throw new ArgumentException($"replica {id}: no key for its current epoch", nameof(keys));
        Epochs = epochs;
    }

    public UsigEpochs Epochs { get; }

    public bool Verify(int replicaId, UniqueIdentifier ui, ReadOnlySpan<byte> certifiedDigest)
    {
        if (ui is null || ui.Certificate is null || ui.Counter == 0) return false;
        if (certifiedDigest.Length != UsigCertificateInput.DigestLength) return false;
        if (!_keys.TryGetValue((replicaId, ui.Epoch), out var key)) return false;
        if (ui.Certificate.Length != key.Verifier.CertificateLength) return false;
        var input = UsigCertificateInput.Encode(replicaId, ui.Epoch, ui.Counter, certifiedDigest);
        return key.Verifier.Verify(input, ui.Certificate);
    }

    private static Dictionary<int, IReadOnlyList<UsigVerificationKey>> ToLists(IReadOnlyDictionary<int, UsigVerificationKey> keys)
    {
        ArgumentNullException.ThrowIfNull(keys);
        return keys.ToDictionary(p => p.Key, p => (IReadOnlyList<UsigVerificationKey>)[p.Value ?? throw new ArgumentException($"replica {p.Key}: null key", nameof(keys))]);
    }
}
