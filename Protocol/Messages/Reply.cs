namespace MinBft.Messages;

/// <summary>REPLY: a replica's signed result for one client request.</summary>
[GenerateSerializer, Immutable, Alias("minbft.Reply")]
public sealed record Reply(
    [Id(0)] long View,
    [Id(1)] int ReplicaId,
    [Id(2)] string ClientId,
    [Id(3)] ulong Seq,
    [Id(4)] byte[] Result,
    [Id(5)] byte[] Signature);
