namespace MinBft.Usig;

/// <summary>A UI: the counter value the USIG bound to one digest, and its certificate.</summary>
public sealed record UsigUi(ulong Epoch, ulong Counter, byte[] Certificate);

/// <summary>A UI some replica claims its USIG issued for <see cref="Digest"/> (HMAC verification).</summary>
public sealed record UsigClaim(int ReplicaId, ulong Epoch, ulong Counter, byte[] Digest, byte[] Certificate);

/// <summary>
/// The durable state of one USIG: its epoch, the last counter issued (0: none yet), and the
/// digests of its last issues (at most <see cref="UsigCore.RecentWindow"/>, 32 bytes each, oldest
/// first, the last one certified at <see cref="Counter"/>), so that a retried batch and a
/// re-issue get the very UIs issued before (both certificate schemes are deterministic).
/// <see cref="Kept"/>: the messages the caller asked the last batch to keep, one per counter of
/// that batch, oldest first (the last one certified at <see cref="Counter"/>); empty if it kept
/// none. Opaque bytes, at most <see cref="UsigCore.MaxKeptBytes"/> in all: a replica certifies a
/// message before its own log holds it only if the USIG keeps it, so no counter is ever issued for
/// a message that a crash could lose (Protocol/Core/USIG-KEPT-MESSAGES-DESIGN.md).
/// </summary>
public sealed record UsigState(ulong Epoch, ulong Counter, byte[] Recent, byte[][]? Kept = null)
{
    /// <summary>A USIG of <paramref name="epoch"/> that has issued nothing.</summary>
    public static UsigState Fresh(ulong epoch) => new(epoch, 0, []);

    /// <summary>The kept messages (none: empty).</summary>
    public byte[][] KeptMessages => Kept ?? [];

    private ulong Held => (ulong)(Recent.Length / UsigCertificateInput.DigestLength);

    /// <summary>The digest certified at <paramref name="counter"/>, if still remembered.</summary>
    public ReadOnlySpan<byte> DigestAt(ulong counter) =>
        counter == 0 || counter > Counter || Counter - counter >= Held
            ? default
            : Recent.AsSpan((int)(Held - 1 - (Counter - counter)) * UsigCertificateInput.DigestLength, UsigCertificateInput.DigestLength);

    /// <summary>Null if the fields are mutually consistent, else what is wrong (a corrupted store).</summary>
    public string? Inconsistency() =>
        Recent is null || Recent.Length % UsigCertificateInput.DigestLength != 0 ? "recent digests length"
        : Held > (ulong)UsigCore.RecentWindow || Held > Counter || (Counter > 0 && Held == 0) ? "recent digests do not match the counter"
        : KeptMessages.Length > UsigCore.MaxBatch || (ulong)KeptMessages.Length > Held || KeptMessages.Any(m => m is null)
            || KeptMessages.Sum(m => (long)m.Length) > UsigCore.MaxKeptBytes ? "kept messages do not fit the last batch"
        : null;
}

/// <summary>The USIG has no state: it was never initialised, or its state was lost (which needs a new epoch).</summary>
public sealed class UsigNotInitializedException(int replicaId, string store)
    : Exception($"USIG {replicaId} has no stored state ({store}). On a first start initialise it for the manifest's epoch; " +
                "if its state was lost, never start it over at counter 1: give it a new epoch (keygen --rotate-usig).");

/// <summary>The store holds another epoch than the USIG was configured with; an operator must resolve it.</summary>
public sealed class UsigEpochMismatchException(int replicaId, ulong configuredEpoch, ulong storedEpoch)
    : Exception($"USIG {replicaId} is configured for epoch {configuredEpoch} but its store holds epoch {storedEpoch}; refusing to start. " +
                "A USIG that lost its state must be given a new epoch (and peers its new identity), never reuse counters.")
{
    public ulong StoredEpoch { get; } = storedEpoch;
}
