using MinBft.Protocol;

namespace MinBft.Application;

/// <summary>
/// The keys of a string-keyed state in snapshot order (ascending by UTF-8 bytes), kept from one
/// snapshot to the next. A checkpoint then sorts only the keys inserted since the previous one
/// and merges them in, O(n + k log k) instead of sorting all n keys again: sorting was most of
/// what a snapshot of a large state cost (CheckpointBenchmarks).
/// </summary>
/// <remarks>
/// Costs a reference per key between snapshots (keys are compared in UTF-8 order without being
/// encoded). Deletions are reported (<see cref="Deleted"/>) so that a merge after none skips
/// looking every kept key up again.
/// Not thread-safe, like the state machines that use it.
/// </remarks>
public sealed class SnapshotKeyOrder
{
    // Insertions beyond this many (and beyond the state's size) drop the kept order instead of
    // growing a list no snapshot has come to merge, e.g. a service used without checkpoints.
    private const int MinInsertionsKept = 1024;

    private List<string>? _order;
    private readonly List<string> _inserted = [];
    private bool _deletedSince;

    /// <summary>A key that was not in the state is now.</summary>
    public void Inserted(string key, int stateSize)
    {
        if (_order is null) return;
        _inserted.Add(key);
        if (_inserted.Count > Math.Max(MinInsertionsKept, stateSize)) Forget();
    }

    /// <summary>A key left the state (it is dropped from the order at the next snapshot).</summary>
    public void Deleted() => _deletedSince = true;

    /// <summary>The state was replaced wholesale by one whose keys are <paramref name="order"/>,
    /// already checked to be strictly ascending.</summary>
    public void Restored(List<string> order)
    {
        _order = order;
        _inserted.Clear();
        _deletedSince = false;
    }

    /// <summary>Nothing kept: the next snapshot sorts every key.</summary>
    public void Forget()
    {
        _order = null;
        _inserted.Clear();
        _deletedSince = false;
    }

    /// <summary>The keys of <paramref name="state"/> in snapshot order, each exactly once.</summary>
    public IReadOnlyList<string> Current<TValue>(Dictionary<string, TValue> state)
    {
        var order = new List<string>(state.Count);
        if (_order is null)
        {
            order.AddRange(state.Keys);
            order.Sort(CompareUtf8);
        }
        else
        {
            var added = new List<string>(_inserted.Count);
            foreach (var key in _inserted)
                if (state.ContainsKey(key)) added.Add(key);
            added.Sort(CompareUtf8);
            var next = 0;
            foreach (var kept in _order)
            {
                if (_deletedSince && !state.ContainsKey(kept)) continue;
                while (next < added.Count && CompareUtf8(added[next], kept) <= 0) Append(order, added[next++]);
                Append(order, kept);
            }
            while (next < added.Count) Append(order, added[next++]);
        }
        // A key in the state but in neither list, or one written twice, would make this snapshot
        // differ from another replica's of the same state: a divergence, so fail loudly here.
        ProtocolInvariantException.Check(order.Count == state.Count,
            $"snapshot order holds {order.Count} keys, the state {state.Count}");
        _order = order;
        _inserted.Clear();
        _deletedSince = false;
        return order;
    }

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

    // A key inserted, deleted and inserted again since the last snapshot is in both lists, and
    // may be in the insertions twice; equal keys meet here one after the other.
    private static void Append(List<string> order, string key)
    {
        if (order.Count > 0 && string.Equals(order[^1], key, StringComparison.Ordinal)) return;
        order.Add(key);
    }
}
