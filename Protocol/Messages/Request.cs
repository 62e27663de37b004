namespace MinBft.Messages;

/// <summary>
/// REQUEST: a client operation, signed by the client (Ed25519). The client id is the
/// hex SHA-256 of the client's public key, so a request is self-certifying: nobody can
/// issue a request in another client's name.
/// </summary>
[GenerateSerializer, Immutable, Alias("minbft.Request")]
public sealed record Request(
    [Id(0)] string ClientId,
    [Id(1)] byte[] ClientPublicKey,
    [Id(2)] ulong Seq,
    [Id(3)] byte[] Operation,
    [Id(4)] byte[] Signature);
