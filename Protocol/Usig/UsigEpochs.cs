namespace MinBft.Usig;

/// <summary>One USIG identity a replica has had.</summary>
/// <param name="Epoch">The USIG epoch: part of every UI it certifies.</param>
/// <param name="FirstView">The first view the replica may lead (PREPAREs, NEW-VIEW) under it.</param>
/// <param name="FirstCheckpoint">The lowest stable checkpoint a VIEW-CHANGE under it must carry to
/// count towards a NEW-VIEW. A rotated USIG's replica restarts empty: it remembers nothing its old
/// identity committed, and below this position its VIEW-CHANGE could hide such a batch.</param>
public sealed record UsigEpoch(ulong Epoch, long FirstView, ulong FirstCheckpoint = 0);

/// <summary>
/// Each replica's USIG identities, oldest first, the last one current (USIG-ROTATION-DESIGN.md).
/// A rotated USIG (its state was lost) gets a new epoch; its old identity stays valid for history
/// only, and leadership is split by view so that no view has PREPAREs of two epochs of its primary:
/// per-view counter order, which ordering and the NEW-VIEW carry-over rely on, stays meaningful.
/// </summary>
public sealed class UsigEpochs
{
    private readonly Dictionary<int, UsigEpoch[]> _identities;

    /// <param name="identities">Per replica, its identities in the order they were issued: epochs and
    /// first views strictly increasing. A replica that was never rotated has one, usually from view 0.</param>
    public UsigEpochs(IReadOnlyDictionary<int, IReadOnlyList<UsigEpoch>> identities)
    {
        ArgumentNullException.ThrowIfNull(identities);
        _identities = new Dictionary<int, UsigEpoch[]>(identities.Count);
        foreach (var (replica, list) in identities)
        {
            if (Problem(list) is { } problem) throw new ArgumentException($"replica {replica}: {problem}", nameof(identities));
            _identities.Add(replica, [.. list]);
        }
    }

    /// <summary>One identity per replica, leading from view 0: a cluster whose USIGs were never rotated.</summary>
    public static UsigEpochs Single(IReadOnlyDictionary<int, ulong> epochs)
    {
        ArgumentNullException.ThrowIfNull(epochs);
        return new(epochs.ToDictionary(p => p.Key, p => (IReadOnlyList<UsigEpoch>)[new UsigEpoch(p.Value, 0)]));
    }

    /// <summary>Why <paramref name="identities"/> is not a valid history of one replica (null: it is).</summary>
    public static string? Problem(IReadOnlyList<UsigEpoch>? identities)
    {
        if (identities is null || identities.Count == 0) return "no USIG identity";
        for (var i = 0; i < identities.Count; i++)
        {
            if (identities[i] is null) return "a null USIG identity";
            if (identities[i].Epoch == 0) return "USIG epoch 0 is never issued";
            if (identities[i].FirstView < 0) return $"USIG epoch {identities[i].Epoch}: negative first view";
            if (i > 0 && identities[i].Epoch <= identities[i - 1].Epoch) return $"USIG epochs are not increasing ({identities[i - 1].Epoch}, {identities[i].Epoch})";
            // Equal first views would give one view two leader identities.
            if (i > 0 && identities[i].FirstView <= identities[i - 1].FirstView)
                return $"USIG epoch {identities[i].Epoch}: first view {identities[i].FirstView} is not above the previous identity's {identities[i - 1].FirstView}";
        }
        return null;
    }

    /// <summary>Whether <paramref name="epoch"/> is an identity of <paramref name="replicaId"/>, current or retired:
    /// what a message carried inside another one (history) may be certified under.</summary>
    public bool IsKnown(int replicaId, ulong epoch) =>
        _identities.TryGetValue(replicaId, out var list) && Array.Exists(list, e => e.Epoch == epoch);

    /// <summary>The replica's current epoch (0: not a replica).</summary>
    public ulong Current(int replicaId) => _identities.TryGetValue(replicaId, out var list) ? list[^1].Epoch : 0;

    /// <summary>The first view the current identity may lead.</summary>
    public long CurrentFirstView(int replicaId) => _identities.TryGetValue(replicaId, out var list) ? list[^1].FirstView : long.MaxValue;

    /// <summary>The epoch under which <paramref name="replicaId"/> may lead <paramref name="view"/>: the
    /// newest identity whose first view is at or below it (0: none, the view is older than every
    /// identity listed, and no PREPARE of it is valid).</summary>
    public ulong LeaderEpoch(int replicaId, long view)
    {
        if (!_identities.TryGetValue(replicaId, out var list)) return 0;
        for (var i = list.Length - 1; i >= 0; i--)
            if (list[i].FirstView <= view) return list[i].Epoch;
        return 0;
    }

    /// <summary>Whether a VIEW-CHANGE of <paramref name="replicaId"/> under <paramref name="epoch"/> with a
    /// stable checkpoint at <paramref name="checkpoint"/> counts towards a NEW-VIEW's f+1: its sender's
    /// memory covers every batch an older identity of the replica can have committed.</summary>
    public bool Vouches(int replicaId, ulong epoch, ulong checkpoint) =>
        _identities.TryGetValue(replicaId, out var list) && Array.Find(list, e => e.Epoch == epoch) is { } identity && identity.FirstCheckpoint <= checkpoint;

    /// <summary>Whether any replica has a retired identity (a rotation happened).</summary>
    public bool AnyRotated => _identities.Values.Any(l => l.Length > 1);
}
