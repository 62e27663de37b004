using MinBft.Protocol;

namespace MinBft.Crypto;

/// <summary>
/// The replicas' public signing keys (REPLY, REQ-VIEW-CHANGE, retransmission requests), by
/// replica id. Keys come from the cluster manifest, so an invalid key is a configuration error
/// and throws at construction; verification itself never throws.
/// </summary>
public sealed class ReplicaKeyRing : IReplicaSignatureVerifier
{
    private readonly Dictionary<int, Ed25519PublicKey> _keys;

    /// <param name="publicKeys">Replica id to 32-byte Ed25519 public key.</param>
    public ReplicaKeyRing(IReadOnlyDictionary<int, byte[]> publicKeys)
    {
        ArgumentNullException.ThrowIfNull(publicKeys);
        _keys = new Dictionary<int, Ed25519PublicKey>(publicKeys.Count);
        foreach (var (id, key) in publicKeys)
        {
            if (key is null || !Ed25519PublicKey.TryCreate(key, out var parsed))
                throw new ArgumentException($"replica {id}: not a valid Ed25519 public key", nameof(publicKeys));
            _keys.Add(id, parsed);
        }
    }

    /// <param name="publicKeys">Public key of replica i at index i.</param>
    public ReplicaKeyRing(IReadOnlyList<byte[]> publicKeys)
        : this(ToDictionary(publicKeys))
    {
    }

    public int Count => _keys.Count;

    public bool Contains(int replicaId) => _keys.ContainsKey(replicaId);

    /// <summary>False for an unknown replica id, a malformed signature or a wrong one.</summary>
    public bool Verify(int replicaId, ReadOnlySpan<byte> message, ReadOnlySpan<byte> signature) =>
        _keys.TryGetValue(replicaId, out var key) && key.Verify(message, signature);

    private static Dictionary<int, byte[]> ToDictionary(IReadOnlyList<byte[]> keys)
    {
        ArgumentNullException.ThrowIfNull(keys);
        var map = new Dictionary<int, byte[]>(keys.Count);
        for (var i = 0; i < keys.Count; i++) map[i] = keys[i];
        return map;
    }
}
