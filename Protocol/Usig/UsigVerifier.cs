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
/// replica, another epoch (a UI from a USIG identity that is no longer current), counter 0
/// (never issued), a certificate of the wrong length, or a certificate that does not verify
/// for (replica, epoch, counter, digest). Signature scheme: it holds public keys only.
/// </summary>
public sealed class UsigVerifier : IUiVerifier
{
    private readonly Dictionary<int, UsigVerificationKey> _keys;

    public UsigVerifier(IReadOnlyDictionary<int, UsigVerificationKey> keys)
    {
        ArgumentNullException.ThrowIfNull(keys);
        _keys = new Dictionary<int, UsigVerificationKey>(keys.Count);
        foreach (var (id, key) in keys)
            _keys.Add(id, key ?? throw new ArgumentException($"replica {id}: null key", nameof(keys)));
    }

    public bool Verify(int replicaId, UniqueIdentifier ui, ReadOnlySpan<byte> certifiedDigest)
    {
        if (ui is null || ui.Certificate is null || ui.Counter == 0) return false;
        if (certifiedDigest.Length != UsigCertificateInput.DigestLength) return false;
        if (!_keys.TryGetValue(replicaId, out var key) || key.Epoch != ui.Epoch) return false;
        if (ui.Certificate.Length != key.Verifier.CertificateLength) return false;
        var input = UsigCertificateInput.Encode(replicaId, ui.Epoch, ui.Counter, certifiedDigest);
        return key.Verifier.Verify(input, ui.Certificate);
    }
}
