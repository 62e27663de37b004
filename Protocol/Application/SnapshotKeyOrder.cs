using MinBft.Protocol;

namespace MinBft.Application;

/// <summary>
/// The entries of a string-keyed state in snapshot order (ascending by their keys' UTF-8 bytes),
/// kept from one snapshot to the next. A checkpoint then sorts only the entries inserted since the
/// previous one and merges them in, O(n + k log k) instead of sorting all n again: sorting was most
/// of what a snapshot of a large state cost (CheckpointBenchmarks).
/// </summary>
/// <remarks>
/// An entry is whatever the state machine keeps per key: the key itself, or an object holding the
/// key's encoded record (then the merged order hands the records over with no lookup per key).
/// Costs a reference per entry between snapshots. Deletions are reported (<see cref="Deleted"/>) so
/// that a merge after none skips asking whether every kept entry is still live.
/// Not thread-safe, like the state machines that use it.
/// </remarks>
/// <param name="keyOf">The entry's key.</param>
/// <param name="isLive">Whether the entry is still in the state (false once its key was deleted).</param>
public sealed class SnapshotKeyOrder<TEntry>(Func<TEntry, string> keyOf, Func<TEntry, bool> isLive) where TEntry : class
{
    // Insertions beyond this many (and beyond the state's size) drop the kept order instead of
    // growing a list no snapshot has come to merge, e.g. a service used without checkpoints.
    private const int MinInsertionsKept = 1024;

    private List<TEntry>? _order;
    private readonly List<TEntry> _inserted = [];
    private bool _deletedSince;

    /// <summary>An entry whose key was not in the state is now.</summary>
    public void Inserted(TEntry entry, int stateSize)
    {
        if (_order is null) return;
        _inserted.Add(entry);
        if (_inserted.Count > Math.Max(MinInsertionsKept, stateSize)) Forget();
    }

    /// <summary>A key left the state (its entry is dropped from the order at the next snapshot).</summary>
    public void Deleted() => _deletedSince = true;

    /// <summary>The state was replaced wholesale by one whose entries are <paramref name="order"/>,
    /// already checked to be strictly ascending.</summary>
    public void Restored(List<TEntry> order)
    {
        _order = order;
        _inserted.Clear();
        _deletedSince = false;
    }

    /// <summary>Nothing kept: the next snapshot sorts every entry.</summary>
    public void Forget()
    {
        _order = null;
        _inserted.Clear();
        _deletedSince = false;
    }

    /// <summary>The entries of <paramref name="state"/> (every live entry) in snapshot order, each exactly once.</summary>
    public IReadOnlyList<TEntry> Current(IReadOnlyCollection<TEntry> state)
    {
        var order = new List<TEntry>(state.Count);
        if (_order is null)
        {
            order.AddRange(state);
            order.Sort(Compare);
        }
        else
        {
            var added = new List<TEntry>(_inserted.Count);
            foreach (var entry in _inserted)
                if (isLive(entry)) added.Add(entry);
            added.Sort(Compare);
            var next = 0;
            foreach (var kept in _order)
            {
                if (_deletedSince && !isLive(kept)) continue;
                while (next < added.Count && Compare(added[next], kept) <= 0) Append(order, added[next++]);
                Append(order, kept);
            }
            while (next < added.Count) Append(order, added[next++]);
        }
        // An entry in the state but in neither list, or one written twice, would make this snapshot
        // differ from another replica's of the same state: a divergence, so fail loudly here.
        ProtocolInvariantException.Check(order.Count == state.Count,
            $"snapshot order holds {order.Count} entries, the state {state.Count}");
        _order = order;
        _inserted.Clear();
        _deletedSince = false;
        return order;
    }

    private int Compare(TEntry a, TEntry b) => SnapshotKeyOrder.CompareUtf8(keyOf(a), keyOf(b));

    // A key inserted, deleted and inserted again since the last snapshot may be among the
    // insertions twice (when entries are the keys themselves); equal keys meet here one after the other.
    private void Append(List<TEntry> order, TEntry entry)
    {
        if (order.Count > 0 && string.Equals(keyOf(order[^1]), keyOf(entry), StringComparison.Ordinal)) return;
        order.Add(entry);
    }
}

/// <summary>The key order of snapshots: UTF-8 byte order, computed on strings.</summary>
public static class SnapshotKeyOrder
{
    /// <summary>
    /// Orders two strings as their UTF-8 bytes would order, without encoding them. UTF-8 byte
    /// order is code point order, and UTF-16 code unit order agrees with it except that
    /// surrogates (U+D800..U+DFFF, the halves of code points above U+FFFF) sort below
    /// U+E000..U+FFFF; lifting surrogates above those gives code point order. Holds for valid
    /// UTF-16, which keys are (they come from valid UTF-8).
    /// </summary>
    public static int CompareUtf8(string? a, string? b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        var common = a.AsSpan().CommonPrefixLength(b);
        if (common == a.Length || common == b.Length) return a.Length - b.Length;
        return Lift(a[common]) - Lift(b[common]);
    }

    private static int Lift(char c) => c < 0xD800 ? c : c >= 0xE000 ? c - 0x800 : c + 0x2000;
}
