namespace MinBft.Messages;

/// <summary>
/// Asks <see cref="TargetId"/> to resend its UI-certified messages from counter
/// <see cref="FromCounter"/> on. Signed so a forged request cannot make replicas flood a peer.
/// </summary>
[GenerateSerializer, Immutable, Alias("minbft.RetransmitRequest")]
public sealed record RetransmitRequest(
    [Id(0)] int ReplicaId,
    [Id(1)] int TargetId,
    [Id(2)] ulong FromCounter,
    [Id(3)] byte[] Signature) : ReplicaMessage
{
    public override int Sender => ReplicaId;
}
