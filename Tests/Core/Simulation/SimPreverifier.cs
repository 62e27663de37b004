using MinBft.Encoding;
using MinBft.Messages;
using MinBft.Protocol;
using MinBft.Usig;

namespace MinBft.Tests.Simulation;

/// <summary>
/// HMAC runs: the host's pre-verification, done the way the replica grain does it. Before a
/// message or a recovered state reaches the core, the claims <see cref="UiClaims"/> lists are
/// verified by the replica's own USIG and recorded in a <see cref="PreverifiedUiVerifier"/>, which
/// is all the core verifies with. On top, the proof that the enumeration is complete: when the core
/// asks about a claim that was not pre-verified, the USIG is asked whether it is valid after all,
/// and if so the run fails (a valid message would have been rejected for a claim UiClaims missed).
/// </summary>
internal sealed class SimPreverifier(Simulation sim, int replica, SimUsig usig, UsigEpochs epochs) : IUiVerifier
{
    // No eviction in a simulated run: a miss is always the enumeration's fault.
    private readonly PreverifiedUiVerifier _verified = new(epochs, int.MaxValue);

    public UsigEpochs Epochs => _verified.Epochs;

    /// <summary>Claims the USIG was asked about.</summary>
    public long Asked { get; private set; }

    public void Prepare(ReplicaMessage message)
    {
        // The core rejects a message over the bounds before verifying anything, as the grain skips it.
        if (MessageLimits.Check(message) is null) Prepare(UiClaims.Of(message));
    }

    public void Prepare(IEnumerable<UiClaim> claims)
    {
        var unknown = claims.Where(_verified.NeedsVerification).ToList();
        if (unknown.Count == 0) return;
        var valid = usig.VerifyUis(unknown);
        for (var i = 0; i < unknown.Count; i++) _verified.Record(unknown[i], valid[i]);
        Asked += unknown.Count;
    }

    public bool Verify(int replicaId, UniqueIdentifier ui, ReadOnlySpan<byte> certifiedDigest)
    {
        if (_verified.Verify(replicaId, ui, certifiedDigest)) return true;
        if (ui is { Counter: > 0, Certificate: not null } && epochs.IsKnown(replicaId, ui.Epoch) && certifiedDigest.Length == 32
            && usig.VerifyUis([new UiClaim(replicaId, ui, certifiedDigest.ToArray())])[0])
            sim.Fail($"ENUMERATION: replica {replica}'s core verified a valid UI of replica {replicaId} (counter {ui.Counter}) that UiClaims did not list: " +
                     "with the HMAC scheme that message would have been rejected");
        return false;
    }
}
