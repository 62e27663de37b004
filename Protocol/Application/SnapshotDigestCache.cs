using System.Security.Cryptography;

namespace MinBft.Application;

/// <summary>
/// The digest of a state machine whose digest is the SHA-256 of its canonical snapshot, kept until
/// the state changes, and the snapshot that digest was computed from, kept for the next
/// <see cref="Snapshot"/> call. A checkpoint asks for the digest and then for the snapshot of the
/// same state (ReplicaCore.SendCheckpoint): without this the whole state was encoded twice per
/// checkpoint, a cost that grows with the state, not with the load.
/// </summary>
/// <remarks>
/// A kept snapshot is handed out once and then forgotten, so no two callers ever share an array
/// (<see cref="IStateMachine.Snapshot"/> promises a self-contained copy). Not thread-safe, like the
/// state machines that use it.
/// </remarks>
public sealed class SnapshotDigestCache
{
    private byte[]? _digest;
    private byte[]? _unclaimedSnapshot;

    /// <summary>Snapshots encoded through this cache since it was made (tests count them).</summary>
    public long Encodings { get; private set; }

    /// <summary>The state changed: what was kept describes a state that is gone.</summary>
    public void Invalidate()
    {
        _digest = null;
        _unclaimedSnapshot = null;
    }

    /// <summary>The state was just restored from <paramref name="canonicalSnapshot"/>, already
    /// validated as canonical, so it is byte for byte what encoding the state would give.</summary>
    public void Restored(ReadOnlySpan<byte> canonicalSnapshot)
    {
        _digest = SHA256.HashData(canonicalSnapshot);
        _unclaimedSnapshot = null;
    }

    /// <summary>A copy of the digest (a caller that changes it cannot corrupt the cache).</summary>
    public byte[] Digest(Func<byte[]> encode)
    {
        if (_digest is null)
        {
            var snapshot = Encode(encode);
            _digest = SHA256.HashData(snapshot);
            _unclaimedSnapshot = snapshot;
        }
        return _digest.ToArray();
    }

    /// <summary>The snapshot the digest was computed from if nobody took it yet, else a fresh one.</summary>
    public byte[] Snapshot(Func<byte[]> encode)
    {
        if (_unclaimedSnapshot is { } kept)
        {
            _unclaimedSnapshot = null;
            return kept;
        }
        return Encode(encode);
    }

    private byte[] Encode(Func<byte[]> encode)
    {
        Encodings++;
        return encode();
    }
}
