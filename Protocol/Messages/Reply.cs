namespace MinBft.Messages;

/// <summary>REPLY: a replica's signed result for one client request.</summary>
[GenerateSerializer, Immutable, Alias("minbft.Reply")]
public sealed record Reply(
    [property: Id(0)] long View,
    [property: Id(1)] int ReplicaId,
    [property: Id(2)] string ClientId,
    [property: Id(3)] ulong Seq,
    [property: Id(4)] byte[] Result,
    [property: Id(5)] byte[] Signature);
