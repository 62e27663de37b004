using MinBft.Messages;

namespace MinBft.Protocol;

/// <summary>
/// The replicated client table (CLIENT-SESSIONS-DESIGN.md): one exactly-once record per client,
/// at most <see cref="Capacity"/> of them. Part of the replicated state, so every change happens
/// at an execution position and is the same at every correct replica.
/// <para>
/// Beyond the cap, the record with the smallest (last active position, client id) is evicted and
/// the expiry horizon rises above its last active position. A client without a record is admitted
/// only with an incarnation at or above the horizon: every request an evicted client signed
/// before its eviction carries a lower incarnation (an incarnation is a position before the
/// record it created, and the record's last activity is below the new horizon), so a replay of
/// one can never execute again. A client that is evicted and comes back gets an Expired reply
/// naming the position it was decided at, and starts its next incarnation there.
/// </para>
/// </summary>
public sealed class ClientTable
{
    // Sorted by client id: the digest and the snapshot encode it in this order, one encoding per state.
    private readonly SortedDictionary<string, ClientRecord> _records = new(StringComparer.Ordinal);
    private readonly SortedSet<(ulong LastActive, string ClientId)> _byActivity = new(ActivityOrder.Instance);

    public ClientTable(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        Capacity = capacity;
    }

    /// <summary>Most records kept after each executed batch.</summary>
    public int Capacity { get; }

    public int Count => _records.Count;

    /// <summary>Every evicted record was last active below this position; a client without a record
    /// needs an incarnation at least this high. Never decreases.</summary>
    public ulong ExpiryHorizon { get; private set; }

    /// <summary>Records this table evicted since it was created (a restore does not count its snapshot's).</summary>
    public long Evictions { get; private set; }

    /// <summary>The records in client id order.</summary>
    public IEnumerable<KeyValuePair<string, ClientRecord>> Records => _records;

    public bool TryGet(string clientId, out ClientRecord record) => _records.TryGetValue(clientId, out record!);

    public ulong LastExecutedSeq(string clientId) => _records.TryGetValue(clientId, out var r) ? r.LastExecutedSeq : 0;

    /// <summary>
    /// Whether a request may execute at <paramref name="position"/> (otherwise it is answered
    /// Expired): its incarnation is not beyond the position (an executed request's incarnation
    /// must stay at or below its position, or a replay after an eviction could pass the horizon),
    /// and a client without a record needs one at or above the horizon (not a replay from before
    /// its eviction).
    /// </summary>
    public bool Admits(Request request, bool hasRecord, ulong position) =>
        request.Incarnation <= position && (hasRecord || request.Incarnation >= ExpiryHorizon);

    /// <summary>The client's executed request at <paramref name="position"/>.</summary>
    public void Record(Reply reply, ulong position)
    {
        if (_records.TryGetValue(reply.ClientId, out var old))
        {
            ProtocolInvariantException.Check(reply.Seq > old.LastExecutedSeq, "a client's executed seqs increase");
            ProtocolInvariantException.Check(position >= old.LastActive, "activity positions never go back");
            _byActivity.Remove((old.LastActive, reply.ClientId));
        }
        ProtocolInvariantException.Check(reply.Status == ReplyStatus.Executed, "only executed requests are recorded");
        ProtocolInvariantException.Check(reply.Position == position, "a record's reply names its position");
        _records[reply.ClientId] = new ClientRecord(reply.Seq, reply, position);
        _byActivity.Add((position, reply.ClientId));
        CheckCounts();
    }

    /// <summary>After the batch at <paramref name="position"/>: evicts the least recently active
    /// records until at most <see cref="Capacity"/> remain.</summary>
    public void EvictBeyondCapacity(ulong position)
    {
        while (_records.Count > Capacity)
        {
            var (lastActive, clientId) = _byActivity.Min;
            ProtocolInvariantException.Check(lastActive <= position, "a record's activity is an executed position");
            _byActivity.Remove((lastActive, clientId));
            _records.Remove(clientId);
            ExpiryHorizon = Math.Max(ExpiryHorizon, lastActive + 1);
            Evictions++;
        }
        ProtocolInvariantException.Check(ExpiryHorizon <= position + 1, "the horizon stays above executed positions only");
        CheckCounts();
    }

    /// <summary>Replaces the table with a snapshot's (already checked against its certified digest).</summary>
    public void Restore(IEnumerable<(string ClientId, ClientRecord Record)> records, ulong expiryHorizon)
    {
        _records.Clear();
        _byActivity.Clear();
        foreach (var (clientId, record) in records)
        {
            _records.Add(clientId, record);
            _byActivity.Add((record.LastActive, clientId));
        }
        ExpiryHorizon = expiryHorizon;
        CheckCounts();
    }

    private void CheckCounts() =>
        ProtocolInvariantException.Check(_byActivity.Count == _records.Count, "the activity index covers exactly the records");

    private sealed class ActivityOrder : IComparer<(ulong LastActive, string ClientId)>
    {
        public static readonly ActivityOrder Instance = new();

        public int Compare((ulong LastActive, string ClientId) x, (ulong LastActive, string ClientId) y)
        {
            var byActivity = x.LastActive.CompareTo(y.LastActive);
            return byActivity != 0 ? byActivity : string.CompareOrdinal(x.ClientId, y.ClientId);
        }
    }
}
