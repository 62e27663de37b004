namespace MinBft.Messages;

/// <summary>
/// A client's offer of a MAC session to the replicas: an X25519 public key, signed with the
/// client's request key. <see cref="Epoch"/> orders a client's offers, so a replayed old offer
/// cannot replace a newer session.
/// </summary>
[GenerateSerializer, Immutable, Alias("minbft.ClientSessionOffer")]
public sealed record ClientSessionOffer(
    [Id(0)] string ClientId,
    [Id(1)] byte[] ClientPublicKey,
    [Id(2)] long Epoch,
    [Id(3)] byte[] AgreementKey,
    [Id(4)] byte[] Signature);

/// <summary>
/// A replica's answer to a <see cref="ClientSessionOffer"/>: its own X25519 public key for this
/// session, signed with the replica's key from the manifest, so the proxy in between can neither
/// read nor replace the session key both sides derive.
/// </summary>
[GenerateSerializer, Immutable, Alias("minbft.ClientSessionAccept")]
public sealed record ClientSessionAccept(
    [Id(0)] int ReplicaId,
    [Id(1)] string ClientId,
    [Id(2)] long Epoch,
    [Id(3)] byte[] ClientAgreementKey,
    [Id(4)] byte[] ReplicaAgreementKey,
    [Id(5)] byte[] Signature);
