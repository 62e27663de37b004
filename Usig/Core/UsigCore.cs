namespace MinBft.Usig;

/// <summary>
/// The USIG (Unique Sequential Identifier Generator) of one replica: it binds each message digest
/// to one counter value under a certificate over (replica id, epoch, counter, digest), and
/// guarantees uniqueness (never one counter for two digests), sequentiality (1, 2, 3, ... with
/// none skipped), durability (a UI leaves only once its counter is durable), batching (one durable
/// write certifies consecutive counters), idempotence (the caller names the counters it means; a
/// retried batch gets the same UIs, new messages that repeat a digest get new counters) and
/// re-issue (the UI of one of the last <see cref="RecentWindow"/> counters again, only for its own
/// digest, so a replica that logged a message before asking for its UI recovers the UI).
/// Trust assumption: the store does not roll back, and a USIG whose state was lost gets a new
/// epoch (a new identity) instead of starting its counter over: without state it refuses to run.
/// </summary>
public sealed class UsigCore(int replicaId, ulong epoch, IUsigCertifier certifier, IUsigCounterStore store)
{
    /// <summary>How many of the last issues can be re-issued (their digests are kept durably).</summary>
    public const int RecentWindow = 64;

    /// <summary>Most digests one CreateUisAsync certifies (one durable write).</summary>
    public const int MaxBatch = 32;

    /// <summary>Most bytes of messages one batch may ask the USIG to keep (their lengths summed):
    /// what fits beside the counter and the recent digests in one 4 KiB slot of the counter file.</summary>
    public const int MaxKeptBytes = 1536;

    // One operation at a time, in call order: read, certify and write form one critical section.
    private readonly SemaphoreSlim _gate = new(1, 1);

    // Null means "not known": before the first load, and after a write whose outcome is unknown.
    private UsigState? _state;

    public int ReplicaId => replicaId;

    public ulong Epoch => epoch;

    public IUsigCertifier Certifier => certifier;

    /// <summary>Writes a fresh state for <paramref name="epoch"/> (counter 0) if the store holds
    /// nothing or an older epoch; false if it is already at that epoch. The one way a USIG starts.</summary>
    public static async Task<bool> InitializeAsync(IUsigCounterStore store, ulong epoch, CancellationToken cancellationToken)
    {
        var stored = await store.ReadAsync(cancellationToken).ConfigureAwait(false);
        if (stored?.Epoch == epoch) return false;
        if (stored?.Epoch > epoch) throw new InvalidOperationException($"the USIG store holds epoch {stored.Epoch}, newer than {epoch}");
        await store.WriteAsync(UsigState.Fresh(epoch), cancellationToken).ConfigureAwait(false);
        return true;
    }

    /// <summary>The state, loaded from the store if not loaded yet (fails fast on a missing,
    /// foreign-epoch or corrupted state).</summary>
    public Task<UsigState> LoadAsync(CancellationToken cancellationToken) => Locked(cancellationToken, Load);

    /// <summary>
    /// UIs for a batch of 32-byte digests, in order, at consecutive counters from
    /// <paramref name="firstCounter"/>, with one durable write: the next counter certifies the
    /// batch; counters already issued for exactly these digests give the same UIs again; anything
    /// else is refused (ArgumentException), nothing issued. If the write fails, the exception
    /// propagates and the next call reloads from the store first (the write may have landed).
    /// </summary>
    public Task<IReadOnlyList<UsigUi>> CreateUisAsync(ulong firstCounter, IReadOnlyList<ReadOnlyMemory<byte>> digests, CancellationToken cancellationToken) =>
        CreateUisAsync(firstCounter, digests, kept: null, cancellationToken);

    /// <summary>
    /// As <see cref="CreateUisAsync(ulong, IReadOnlyList{ReadOnlyMemory{byte}}, CancellationToken)"/>,
    /// and the same durable write keeps <paramref name="kept"/> (one message per digest, at most
    /// <see cref="MaxKeptBytes"/> in all; null: none) in place of what the last batch kept. The
    /// USIG never reads them; it hands them back with its state. A retried batch gets the same
    /// UIs and changes nothing kept.
    /// </summary>
    public async Task<IReadOnlyList<UsigUi>> CreateUisAsync(ulong firstCounter, IReadOnlyList<ReadOnlyMemory<byte>> digests,
        IReadOnlyList<ReadOnlyMemory<byte>>? kept, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(digests);
        if (digests.Count < 1 || digests.Count > MaxBatch) throw new ArgumentException($"a batch holds 1..{MaxBatch} digests, got {digests.Count}", nameof(digests));
        if (digests.Any(d => d.Length != UsigCertificateInput.DigestLength)) throw new ArgumentException("every digest must be 32 bytes", nameof(digests));
        if (firstCounter == 0) throw new ArgumentException("counters start at 1", nameof(firstCounter));
        if (kept is not null && kept.Count != digests.Count) throw new ArgumentException($"one kept message per digest ({digests.Count}), got {kept.Count}", nameof(kept));
        if (kept is not null && kept.Sum(m => (long)m.Length) > MaxKeptBytes) throw new ArgumentException($"kept messages hold at most {MaxKeptBytes} bytes in all", nameof(kept));
        // Copied before waiting: the caller's buffers may change while this call is queued.
        var batch = digests.Select(d => d.ToArray()).ToArray();
        var keep = kept?.Select(m => m.ToArray()).ToArray();
        var last = firstCounter + (ulong)batch.Length - 1;
        return await Locked(cancellationToken, async ct =>
        {
            var state = await Load(ct).ConfigureAwait(false);
            if (firstCounter <= state.Counter)
            {
                // A retried call: the same UIs, if those counters went to exactly these digests.
                if (last <= state.Counter && batch.Select((d, i) => state.DigestAt(firstCounter + (ulong)i).SequenceEqual(d)).All(x => x))
                    return Certify(firstCounter, batch);
                throw new ArgumentException($"counters {firstCounter}..{last} were not issued for these digests (the USIG is at {state.Counter}); nothing issued");
            }
            if (firstCounter != state.Counter + 1) throw new ArgumentException($"the next counter is {state.Counter + 1}, not {firstCounter}: a USIG never skips one");
            if (last < firstCounter) throw new InvalidOperationException("USIG counter exhausted; a new epoch is needed");
            var uis = Certify(firstCounter, batch);
            var recent = Recent(state.Recent, batch);
            var next = new UsigState(epoch, last, recent, keep);
            try
            {
                await store.WriteAsync(next, ct).ConfigureAwait(false);
            }
            catch
            {
                // Whether the write landed is unknown: issue nothing before the store is read again.
                _state = null;
                throw;
            }
            _state = next;
            return uis;
        }).ConfigureAwait(false);
    }

    // The last RecentWindow digests after this batch, oldest first (plain copies: this runs on every batch).
    private static byte[] Recent(byte[] held, byte[][] batch)
    {
        const int size = UsigCertificateInput.DigestLength;
        var count = Math.Min(RecentWindow, held.Length / size + batch.Length);
        var recent = new byte[count * size];
        var fromBatch = Math.Min(count, batch.Length);
        var fromHeld = count - fromBatch;
        held.AsSpan(held.Length - fromHeld * size).CopyTo(recent);
        for (var i = 0; i < fromBatch; i++) batch[batch.Length - fromBatch + i].CopyTo(recent.AsSpan((fromHeld + i) * size));
        return recent;
    }

    /// <summary>The UI of <paramref name="counter"/> again, if it is one of the last
    /// <see cref="RecentWindow"/> issued and was issued for <paramref name="digest"/>; null otherwise.</summary>
    public Task<UsigUi?> ReissueUiAsync(ulong counter, ReadOnlyMemory<byte> digest, CancellationToken cancellationToken)
    {
        if (digest.Length != UsigCertificateInput.DigestLength) throw new ArgumentException("a digest is 32 bytes", nameof(digest));
        var d = digest.ToArray();
        return Locked<UsigUi?>(cancellationToken, async ct =>
        {
            var state = await Load(ct).ConfigureAwait(false);
            return state.DigestAt(counter).SequenceEqual(d) ? Certify(counter, [d])[0] : null;
        });
    }

    /// <summary>
    /// HMAC only: whether each claimed UI is valid for its replica, epoch, counter and digest.
    /// Verifying needs the shared secret, which is why it happens here and never in a replica.
    /// Stateless: it does not wait for issues in progress.
    /// </summary>
    public bool[] VerifyUis(IReadOnlyList<UsigClaim> claims) =>
        certifier is HmacUsigCertifier hmac
            ? claims.Select(c => c.Counter > 0 && c.Digest.Length == UsigCertificateInput.DigestLength
                && hmac.Verify(UsigCertificateInput.Encode(c.ReplicaId, c.Epoch, c.Counter, c.Digest), c.Certificate)).ToArray()
            : throw new NotSupportedException("only an HMAC USIG verifies UIs; Ed25519 UIs are verified with the public keys");

    private UsigUi[] Certify(ulong first, byte[][] batch) =>
        batch.Select((d, i) => new UsigUi(epoch, first + (ulong)i, certifier.Certify(UsigCertificateInput.Encode(replicaId, epoch, first + (ulong)i, d)))).ToArray();

    private async Task<T> Locked<T>(CancellationToken cancellationToken, Func<CancellationToken, Task<T>> body)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return await body(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
        }
    }

    private async Task<UsigState> Load(CancellationToken cancellationToken)
    {
        if (_state is { } known) return known;
        // No fallback to a fresh state: a lost store would make the USIG re-issue used counters.
        var stored = await store.ReadAsync(cancellationToken).ConfigureAwait(false) ?? throw new UsigNotInitializedException(replicaId, "empty store");
        if (stored.Epoch != epoch) throw new UsigEpochMismatchException(replicaId, epoch, stored.Epoch);
        if (stored.Inconsistency() is { } why) throw new InvalidDataException($"USIG {replicaId}: stored state is inconsistent: {why}");
        return _state = stored;
    }
}
