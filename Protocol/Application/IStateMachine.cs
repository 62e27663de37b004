namespace MinBft.Application;

/// <summary>
/// The replicated service. Every method must be deterministic: the same operations applied in
/// the same order give the same results, snapshot and digest on every replica. It must never
/// throw on a malformed operation (return an error result instead): operations come from
/// clients, and a throwing replica would diverge from the others.
/// </summary>
public interface IStateMachine
{
    /// <summary>Applies one ordered operation and returns its result.</summary>
    byte[] Apply(ReadOnlySpan<byte> operation);

    /// <summary>A self-contained copy of the whole state. The replica keeps this very array (it
    /// stores it and serves it to peers, without copying it) and never writes into it, so never
    /// change it once returned; reading it later is allowed (the key-value service builds its next
    /// snapshot from its last one).</summary>
    byte[] Snapshot();

    /// <summary>Replaces the state with a snapshot; false if the snapshot is malformed.</summary>
    bool TryRestore(ReadOnlySpan<byte> snapshot);

    /// <summary>SHA-256 of the state; equal states give equal digests on every replica.</summary>
    byte[] Digest();
}
