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
/// <item>idempotence: CreateUI for the digest of the last issued UI returns that same UI, so a
/// retried call (after a timeout or a crash) does not burn a counter value and leave a
/// permanent gap that peers would stall on;</item>
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

    /// <summary>How many of the last issues can be re-issued (their digests are kept durably).</summary>
    public const int RecentWindow = 32;

    public int ReplicaId { get; }

    public ulong Epoch { get; }

    /// <summary>
    /// Loads the state from the store if it is not loaded yet. Optional (CreateUiAsync loads
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
    /// The UI for a message whose canonical bytes hash to <paramref name="digest"/> (32 bytes,
    /// SHA-256). Returns only after the new counter is durable. If the store write fails, the
    /// exception propagates, no UI exists for the caller, and the next call reloads from the
    /// store first; the caller must then retry with the same digest, which returns the stored UI
    /// if the failed write had in fact landed (a different digest would get the next counter and
    /// leave the landed one as a gap).
    /// </summary>
    /// <exception cref="ArgumentException">The digest is not 32 bytes.</exception>
    public async Task<UniqueIdentifier> CreateUiAsync(ReadOnlyMemory<byte> digest, CancellationToken cancellationToken)
    {
        if (digest.Length != UsigCertificateInput.DigestLength)
            throw new ArgumentException($"digest must be {UsigCertificateInput.DigestLength} bytes, got {digest.Length}", nameof(digest));
        // Copied before waiting: the caller's buffer may change while this call is queued.
        var d = digest.ToArray();

        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var state = await EnsureLoadedAsync(cancellationToken).ConfigureAwait(false);

            // Retried call: same digest as the last issue, so same UI, no new counter value.
            if (state.LastUi is { } last && d.AsSpan().SequenceEqual(state.LastDigest)) return last;

            if (state.Counter == ulong.MaxValue) throw new InvalidOperationException("USIG counter exhausted; a new epoch is needed");
            var counter = state.Counter + 1;
            var certificate = _certifier.Certify(UsigCertificateInput.Encode(ReplicaId, Epoch, counter, d));
            var ui = new UniqueIdentifier(Epoch, counter, certificate);
            var next = new UsigState(Epoch, counter, d, ui, Remember(state));

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
            return ui;
        }
        finally
        {
            _gate.Release();
        }
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

    /// <summary>The digests to keep after one more issue: the last one joins, the oldest may leave.</summary>
    private static byte[]? Remember(UsigState state)
    {
        if (state.Counter == 0) return null;
        var recent = state.Recent ?? [];
        var keep = Math.Min(recent.Length, (RecentWindow - 2) * UsigCertificateInput.DigestLength);
        var next = new byte[keep + UsigCertificateInput.DigestLength];
        recent.AsSpan(recent.Length - keep).CopyTo(next);
        state.LastDigest.CopyTo(next, keep);
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
