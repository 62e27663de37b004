using MinBft.Messages;

namespace MinBft.Usig;

/// <summary>
/// The USIG (Unique Sequential Identifier Generator) of one replica: the trusted computing
/// base of MinBFT, kept small enough to check by reading. It binds each message digest to one
/// counter value under a certificate over (replica id, epoch, counter, digest), and guarantees
/// <list type="bullet">
/// <item>uniqueness: no counter value is ever certified for two different digests;</item>
/// <item>monotonicity and sequentiality: counters are 1, 2, 3, ... with no value skipped by a
/// successful issue, so a receiver that sees a gap knows it missed a message;</item>
/// <item>durability: a UI is returned only after its counter is durable in the store, so a
/// crash can never make the USIG issue that counter value again;</item>
/// <item>batching: CreateUIs certifies several digests at consecutive counters with one durable
/// write;</item>
/// <item>idempotence: the caller names the counters it means, and a call for counters already
/// issued for exactly those digests returns the same UIs, so a retried call (after a timeout or a
/// crash) does not burn counter values and leave a permanent gap that peers would stall on, while
/// a new message that repeats an old one's digest gets a new counter, never the old UI;</item>
/// <item>re-issue: for one of its last <see cref="RecentWindow"/> counters, ReissueUI returns a
/// UI only for the very digest that counter was certified for. It certifies nothing new, so it
/// cannot break uniqueness; it lets a replica that logged a message before asking for its UI,
/// and crashed before logging the UI, recover the UI instead of leaving a gap.</item>
/// </list>
/// Named UsigCore rather than Usig so it does not share its name with its namespace; the
/// UsigGrain is a thin adapter around it.
/// Trust assumption: the store does not roll back. A USIG whose state was lost must be given a
/// new epoch (a new identity peers must learn) instead of restarting its counter under the old one.
/// </summary>
public sealed class UsigCore
{
    private readonly IUsigCertifier _certifier;
    private readonly IUsigCounterStore _store;

    // One issue at a time, in call order (SemaphoreSlim queues async waiters FIFO): the counter
    // read, the certificate and the durable write form one critical section.
    private readonly SemaphoreSlim _gate = new(1, 1);

    // Null means "not known": before the first load, and after any write that failed, because a
    // failed write may still have landed and the store is the only truth.
    private UsigState? _state;

    public UsigCore(int replicaId, ulong epoch, IUsigCertifier certifier, IUsigCounterStore store)
    {
        ReplicaId = replicaId;
        Epoch = epoch;
        _certifier = certifier ?? throw new ArgumentNullException(nameof(certifier));
        _store = store ?? throw new ArgumentNullException(nameof(store));
    }

    /// <summary>How many of the last issues can be re-issued (their digests are kept durably). The
    /// replica reads it (it never lets more UIs than this wait to become durable in its log).</summary>
    public const int RecentWindow = 64;

    /// <summary>Most digests one <see cref="CreateUisAsync"/> certifies (one durable write).</summary>
    public const int MaxBatch = 32;

    public int ReplicaId { get; }

    public ulong Epoch { get; }

    /// <summary>
    /// Loads the state from the store if it is not loaded yet. Optional (CreateUisAsync loads
    /// lazily); call it on activation to fail fast on a wrong epoch or a corrupted store.
    /// </summary>
    /// <exception cref="UsigEpochMismatchException">The store belongs to another epoch.</exception>
    /// <exception cref="InvalidDataException">The stored state is inconsistent.</exception>
    public async Task<UsigState> LoadAsync(CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return await EnsureLoadedAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// UIs for a batch of message digests (32 bytes each, SHA-256 of the messages' canonical bytes),
    /// in order, at consecutive counters from <paramref name="firstCounter"/>, with one durable
    /// write: all of them are durable when this returns, or none is issued.
    /// <paramref name="firstCounter"/> says which counters the caller means, so a retry is never
    /// mistaken for new messages that happen to repeat the last digests:
    /// <list type="bullet">
    /// <item>the next counter: the batch is certified;</item>
    /// <item>counters already issued for exactly these digests: the same UIs again (a retried call,
    /// after a timeout or a crash, burns no counter);</item>
    /// <item>anything else: refused, nothing issued.</item>
    /// </list>
    /// If the store write fails, the exception propagates, no UI exists for the caller, and the next
    /// call reloads from the store first; the caller must then retry the same batch, which returns
    /// the stored UIs if the failed write had in fact landed.
    /// </summary>
    /// <exception cref="ArgumentException">No digest, more than <see cref="MaxBatch"/>, one not 32 bytes,
    /// or counters that are neither the next ones nor issued for exactly these digests.</exception>
    public async Task<IReadOnlyList<UniqueIdentifier>> CreateUisAsync(ulong firstCounter, IReadOnlyList<ReadOnlyMemory<byte>> digests, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(digests);
        if (digests.Count < 1 || digests.Count > MaxBatch)
            throw new ArgumentException($"a batch holds 1..{MaxBatch} digests, got {digests.Count}", nameof(digests));
        // Copied before waiting: the caller's buffers may change while this call is queued.
        var batch = new byte[digests.Count][];
        for (var i = 0; i < batch.Length; i++)
        {
            if (digests[i].Length != UsigCertificateInput.DigestLength)
                throw new ArgumentException($"digest {i} must be {UsigCertificateInput.DigestLength} bytes, got {digests[i].Length}", nameof(digests));
            batch[i] = digests[i].ToArray();
        }
        if (firstCounter == 0) throw new ArgumentException("counters start at 1", nameof(firstCounter));

        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var state = await EnsureLoadedAsync(cancellationToken).ConfigureAwait(false);

            if (firstCounter <= state.Counter)
            {
                // A retried call: the same UIs, if those counters went to exactly these digests.
                if (IssuedAt(state, firstCounter, batch)) return Recertify(firstCounter, batch, state);
                throw new ArgumentException($"counters {firstCounter}..{firstCounter + (ulong)batch.Length - 1} were not issued for these digests " +
                                            $"(the USIG is at {state.Counter}); nothing issued", nameof(firstCounter));
            }
            if (firstCounter != state.Counter + 1)
                throw new ArgumentException($"the next counter is {state.Counter + 1}, not {firstCounter}: a USIG never skips one", nameof(firstCounter));
            if (state.Counter > ulong.MaxValue - (ulong)batch.Length) throw new InvalidOperationException("USIG counter exhausted; a new epoch is needed");
            var uis = new UniqueIdentifier[batch.Length];
            for (var i = 0; i < batch.Length; i++)
            {
                var counter = firstCounter + (ulong)i;
                uis[i] = new UniqueIdentifier(Epoch, counter, _certifier.Certify(UsigCertificateInput.Encode(ReplicaId, Epoch, counter, batch[i])));
            }
            var next = new UsigState(Epoch, state.Counter + (ulong)batch.Length, batch[^1], uis[^1], Remember(state, batch));

            try
            {
                await _store.WriteAsync(next, cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                // Whether the write landed is unknown: forget the in-memory state so nothing is
                // issued before the store is read again (never two UIs for one counter).
                _state = null;
                throw;
            }

            _state = next;
            return uis;
        }
        finally
        {
            _gate.Release();
        }
    }

    private static bool IssuedAt(UsigState state, ulong first, byte[][] batch)
    {
        if (first + (ulong)batch.Length - 1 > state.Counter) return false;
        for (var i = 0; i < batch.Length; i++)
        {
            var issued = state.DigestAt(first + (ulong)i);
            if (issued.IsEmpty || !issued.SequenceEqual(batch[i])) return false;
        }
        return true;
    }

    /// <summary>The UIs of counters already issued for exactly these digests (certifies nothing new).</summary>
    private IReadOnlyList<UniqueIdentifier> Recertify(ulong first, byte[][] batch, UsigState state)
    {
        var uis = new UniqueIdentifier[batch.Length];
        for (var i = 0; i < batch.Length; i++)
        {
            var counter = first + (ulong)i;
            uis[i] = counter == state.Counter && state.LastUi is { } last
                ? last
                : new UniqueIdentifier(Epoch, counter, _certifier.Certify(UsigCertificateInput.Encode(ReplicaId, Epoch, counter, batch[i])));
        }
        return uis;
    }

    /// <summary>
    /// The UI of counter <paramref name="counter"/> again, if it is one of the last
    /// <see cref="RecentWindow"/> issued and was issued for <paramref name="digest"/>; null
    /// otherwise (never a UI for a digest that counter was not certified for). Writes nothing.
    /// </summary>
    public async Task<UniqueIdentifier?> ReissueUiAsync(ulong counter, ReadOnlyMemory<byte> digest, CancellationToken cancellationToken)
    {
        if (digest.Length != UsigCertificateInput.DigestLength)
            throw new ArgumentException($"digest must be {UsigCertificateInput.DigestLength} bytes, got {digest.Length}", nameof(digest));
        var d = digest.ToArray();
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var state = await EnsureLoadedAsync(cancellationToken).ConfigureAwait(false);
            var issued = state.DigestAt(counter);
            if (issued.IsEmpty || !issued.SequenceEqual(d)) return null;
            if (counter == state.Counter) return state.LastUi;
            return new UniqueIdentifier(Epoch, counter, _certifier.Certify(UsigCertificateInput.Encode(ReplicaId, Epoch, counter, d)));
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>The digests to keep before the new last one after a batch: the previous last and all
    /// but the last of the batch join, the oldest leave (at most <see cref="RecentWindow"/> - 1).</summary>
    private static byte[]? Remember(UsigState state, byte[][] batch)
    {
        const int size = UsigCertificateInput.DigestLength;
        var joining = new List<byte[]>(batch.Length);
        if (state.Counter > 0) joining.Add(state.LastDigest);
        joining.AddRange(batch.Take(batch.Length - 1));
        var recent = state.Recent ?? [];
        var total = Math.Min(RecentWindow - 1, recent.Length / size + joining.Count);
        if (total == 0) return null;
        var next = new byte[total * size];
        var fromJoining = Math.Min(joining.Count, total);
        var fromRecent = total - fromJoining;
        recent.AsSpan(recent.Length - fromRecent * size).CopyTo(next);
        for (var i = 0; i < fromJoining; i++) joining[joining.Count - fromJoining + i].CopyTo(next, (fromRecent + i) * size);
        return next;
    }

    private async Task<UsigState> EnsureLoadedAsync(CancellationToken cancellationToken)
    {
        if (_state is { } known) return known;
        var stored = await _store.ReadAsync(cancellationToken).ConfigureAwait(false) ?? UsigState.Fresh(Epoch);
        if (stored.Epoch != Epoch) throw new UsigEpochMismatchException(ReplicaId, Epoch, stored.Epoch);
        if (stored.Inconsistency() is { } why) throw new InvalidDataException($"USIG {ReplicaId}: stored state is inconsistent: {why}");
        _state = stored;
        return stored;
    }
}

/// <summary>
/// The store holds the state of another epoch than the USIG was configured with. Starting
/// anyway would either reuse the old epoch's counter values under a new identity's name or
/// the reverse; an operator must resolve it (a USIG that lost its state gets a new epoch).
/// </summary>
public sealed class UsigEpochMismatchException(int replicaId, ulong configuredEpoch, ulong storedEpoch)
    : Exception($"USIG {replicaId} is configured for epoch {configuredEpoch} but its store holds epoch {storedEpoch}; " +
                "refusing to start. A USIG that lost its state must be given a new epoch (and peers its new identity), never reuse counters.")
{
    public int ReplicaId { get; } = replicaId;

    public ulong ConfiguredEpoch { get; } = configuredEpoch;

    public ulong StoredEpoch { get; } = storedEpoch;
}
