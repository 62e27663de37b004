namespace MinBft.Protocol;

/// <summary>
/// Digests of requests whose client signature already verified. A request reaches a backup
/// directly and again inside a PREPARE (and in COMMITs): verifying the signature once saves
/// the dominant per-request cost. Bounded: the oldest entries are forgotten first.
/// </summary>
internal sealed class VerifiedRequestCache(int capacity)
{
    private readonly HashSet<Sha256Digest> _set = [];
    private readonly Queue<Sha256Digest> _order = new();

    public bool Contains(Sha256Digest digest) => _set.Contains(digest);

    public void Add(Sha256Digest digest)
    {
        if (!_set.Add(digest)) return;
        _order.Enqueue(digest);
        while (_order.Count > capacity) _set.Remove(_order.Dequeue());
    }
}
