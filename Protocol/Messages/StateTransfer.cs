namespace MinBft.Messages;

/// <summary>
/// STATE-REQUEST (PROTOCOL.md section 8): replica <see cref="ReplicaId"/> is behind and asks for
/// the snapshot at a stable checkpoint beyond <see cref="MinSequence"/>: chunk
/// <see cref="Chunk"/> of the snapshot at <see cref="Sequence"/> (0: the server's latest).
/// Signed, so that only replicas can make a peer ship its state.
/// </summary>
[GenerateSerializer, Immutable, Alias("minbft.StateRequest")]
public sealed record StateRequest(
    [Id(0)] int ReplicaId,
    [Id(1)] ulong MinSequence,
    [Id(2)] ulong Sequence,
    [Id(3)] int Chunk,
    [Id(4)] byte[] Signature) : ReplicaMessage
{
    public override int Sender => ReplicaId;
}

/// <summary>
/// STATE-CHUNK: one bounded piece of <see cref="ReplicaId"/>'s snapshot at the stable checkpoint
/// <see cref="Certificate"/>. Nothing in it is trusted: the receiver reassembles the chunks and
/// installs the snapshot only if its digest is the one f+1 replicas certified. The server's
/// latest proven view travels with it (<see cref="ViewStart"/> proves where
/// <see cref="View"/> starts; null for view 0).
/// </summary>
[GenerateSerializer, Immutable, Alias("minbft.StateChunk")]
public sealed record StateChunk(
    [Id(0)] int ReplicaId,
    [Id(1)] CheckpointCertificate Certificate,
    [Id(2)] long View,
    [Id(3)] CheckpointCertificate? ViewStart,
    [Id(4)] int Index,
    [Id(5)] int Count,
    [Id(6)] byte[] Data) : ReplicaMessage
{
    public override int Sender => ReplicaId;
}
