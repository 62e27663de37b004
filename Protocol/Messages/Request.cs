namespace MinBft.Messages;

/// <summary>
/// REQUEST: a client operation, signed by the client (Ed25519). The client id is the
/// hex SHA-256 of the client's public key, so a request is self-certifying: nobody can
/// issue a request in another client's name.
/// </summary>
[GenerateSerializer, Immutable, Alias("minbft.Request")]
public sealed record Request(
    [property: Id(0)] string ClientId,
    [property: Id(1)] byte[] ClientPublicKey,
    [property: Id(2)] ulong Seq,
    [property: Id(3)] byte[] Operation,
    [property: Id(4)] byte[] Signature);
