using MinBft.Messages;
using MinBft.Protocol;

namespace MinBft.Encoding;

/// <summary>A UI that a message claims replica <see cref="ReplicaId"/>'s USIG issued for <see cref="Digest"/>.</summary>
[GenerateSerializer, Immutable, Alias("minbft.UiClaim")]
public sealed record UiClaim(
    [Id(0)] int ReplicaId,
    [Id(1)] UniqueIdentifier Ui,
    [Id(2)] byte[] Digest);

/// <summary>
/// Every UI claim the core verifies when it handles a message or restores a replica, with the
/// replica id and certified digest the core checks it under. In HMAC mode the host has the
/// replica's own USIG verify these (verifying needs the secret, which the core never holds) and
/// gives the core a verifier that answers from the results (<see cref="Usig.PreverifiedUiVerifier"/>).
/// A claim missing here is a valid message the core then rejects: the simulator runs HMAC seeds
/// through exactly this path and fails a run in which the core asks about a claim not listed.
/// Call only on a message within <see cref="MessageLimits"/> (the core rejects the others unverified).
/// </summary>
public static class UiClaims
{
    public static IEnumerable<UiClaim> Of(ReplicaMessage message) => message switch
    {
        CertifiedMessage certified => Own(certified).Concat(Inside(certified)),
        // A relayed copy is checked as its sender's VIEW-CHANGE, whoever relays it.
        ViewChangeRelay relay => Own(relay.ViewChange).Concat(InViewChange(relay.ViewChange)),
        StateChunk chunk => Of(chunk.Certificate).Concat(chunk.ViewStart is { } start ? Of(start) : []),
        _ => [],
    };

    /// <summary>What <see cref="ReplicaCore.Restore"/> verifies: the stored checkpoint certificate and view starts.</summary>
    public static IEnumerable<UiClaim> Of(RecoveredState state) =>
        (state.Certificate is { } certificate ? Of(certificate) : []).Concat(state.ViewStarts.SelectMany(Of))
            // Restore also reads the view starts its own log's PREPAREs carry.
            .Concat(state.Log.Select(m => Prepare.In(m)?.ViewStart).OfType<CheckpointCertificate>().SelectMany(Of));

    public static IEnumerable<UiClaim> Of(CheckpointCertificate certificate) => certificate.Checkpoints.SelectMany(Own);

    private static IEnumerable<UiClaim> Own(CertifiedMessage m) => [Claim(m.Sender, m)];

    private static UiClaim Claim(int replicaId, CertifiedMessage m) => new(replicaId, m.Ui, MessageEncoding.CertifiedDigest(m));

    private static IEnumerable<UiClaim> Inside(CertifiedMessage message) => message switch
    {
        Prepare p => p.ViewStart is { } start ? Of(start) : [],
        Commit c => Of(c.Prepare),
        ViewChange vc => InViewChange(vc),
        // By reference, a VIEW-CHANGE's inside was checked when it arrived in its own right.
        NewView nv => nv.ViewChanges.SelectMany(vc => Own(vc).Concat(vc is ViewChange whole ? InViewChange(whole) : [])),
        _ => [],
    };

    private static IEnumerable<UiClaim> InViewChange(ViewChange vc) =>
        Of(vc.CheckpointCertificate)
            .Concat(vc.ViewStarts.SelectMany(Of))
            // Log entries are checked as the VIEW-CHANGE's sender's, whatever they claim.
            .Concat(vc.Log.SelectMany(entry => Prepare.In(entry) is { } prepare
                ? [Claim(vc.ReplicaId, entry), Claim(prepare.PrimaryId, prepare)]
                : new[] { Claim(vc.ReplicaId, entry) }));
}
