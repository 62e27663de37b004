using Utf8 = System.Text.Encoding;
using MinBft.Protocol;

namespace MinBft.Application;

/// <summary>
/// The keys of a string-keyed state in snapshot order (ascending by UTF-8 bytes), kept from one
/// snapshot to the next. A checkpoint then sorts only the keys inserted since the previous one
/// and merges them in, O(n + k log k) instead of sorting all n keys again: sorting was most of
/// what a snapshot of a large state cost (CheckpointBenchmarks).
/// </summary>
/// <remarks>
/// Costs the UTF-8 bytes of every key between snapshots. Deletions need no call: keys that left
/// the state are dropped at the next merge. Not thread-safe, like the state machines that use it.
/// </remarks>
public sealed class SnapshotKeyOrder
{
    /// <summary>A key and its UTF-8 bytes, the bytes snapshots are ordered and written by.</summary>
    public readonly record struct OrderedKey(byte[] Utf8, string Key);

    // Insertions beyond this many (and beyond the state's size) drop the kept order instead of
    // growing a list no snapshot has come to merge, e.g. a service used without checkpoints.
    private const int MinInsertionsKept = 1024;

    private List<OrderedKey>? _order;
    private readonly List<string> _inserted = [];

    /// <summary>A key that was not in the state is now.</summary>
    public void Inserted(string key, int stateSize)
    {
        if (_order is null) return;
        _inserted.Add(key);
        if (_inserted.Count > Math.Max(MinInsertionsKept, stateSize)) Forget();
    }

    /// <summary>The state was replaced wholesale by one whose keys are <paramref name="order"/>,
    /// already checked to be strictly ascending.</summary>
    public void Restored(List<OrderedKey> order)
    {
        _order = order;
        _inserted.Clear();
    }

    /// <summary>Nothing kept: the next snapshot sorts every key.</summary>
    public void Forget()
    {
        _order = null;
        _inserted.Clear();
    }

    /// <summary>The keys of <paramref name="state"/> in snapshot order, each exactly once.</summary>
    public IReadOnlyList<OrderedKey> Current<TValue>(Dictionary<string, TValue> state)
    {
        var order = new List<OrderedKey>(state.Count);
        if (_order is null)
        {
            foreach (var key in state.Keys) order.Add(new OrderedKey(Utf8.UTF8.GetBytes(key), key));
            order.Sort(Compare);
        }
        else
        {
            var added = new List<OrderedKey>(_inserted.Count);
            foreach (var key in _inserted)
                if (state.ContainsKey(key)) added.Add(new OrderedKey(Utf8.UTF8.GetBytes(key), key));
            added.Sort(Compare);
            var next = 0;
            foreach (var kept in _order)
            {
                if (!state.ContainsKey(kept.Key)) continue; // deleted since
                while (next < added.Count && Compare(added[next], kept) <= 0) Append(order, added[next++]);
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
        return order;
    }

    private static int Compare(OrderedKey a, OrderedKey b) => a.Utf8.AsSpan().SequenceCompareTo(b.Utf8);

    // A key inserted, deleted and inserted again since the last snapshot is in both lists, and
    // may be in the insertions twice; equal keys meet here one after the other.
    private static void Append(List<OrderedKey> order, OrderedKey key)
    {
        if (order.Count > 0 && string.Equals(order[^1].Key, key.Key, StringComparison.Ordinal)) return;
        order.Add(key);
    }
}
