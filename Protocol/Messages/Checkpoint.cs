namespace MinBft.Messages;

/// <summary>
/// CHECKPOINT: after executing <see cref="Sequence"/> batches, in <see cref="View"/>, the
/// sender's state (application plus reply cache) has digest <see cref="StateDigest"/>. It also
/// anchors the sender's counter stream for replicas that recover from a checkpoint. A correct
/// replica never labels a position below its view's start with that view, which is what makes
/// f+1 of them a proof of where a view starts.
/// </summary>
[GenerateSerializer, Immutable, Alias("minbft.Checkpoint")]
public sealed record Checkpoint(
    [Id(0)] int ReplicaId,
    [Id(4)] long View,
    [Id(1)] ulong Sequence,
    [Id(2)] byte[] StateDigest,
    [Id(3)] UniqueIdentifier CheckpointUi,
    [Id(5)] bool IsViewStart = false) : CertifiedMessage
{
    // IsViewStart: the one checkpoint a replica sends on entering View, at the view's base
    // position. f+1 of them (VS) prove where the view's PREPAREs start.
    public override int Sender => ReplicaId;
    public override UniqueIdentifier Ui => CheckpointUi;
    public override CertifiedMessage WithUi(UniqueIdentifier ui) => this with { CheckpointUi = ui };
}

/// <summary>f+1 matching CHECKPOINTs from distinct replicas: a stable checkpoint.</summary>
[GenerateSerializer, Immutable, Alias("minbft.CheckpointCertificate")]
public sealed record CheckpointCertificate(
    [Id(0)] ulong Sequence,
    [Id(1)] byte[] StateDigest,
    [Id(2)] Checkpoint[] Checkpoints)
{
    /// <summary>The certificate of the initial state: nothing executed yet.</summary>
    public static CheckpointCertificate Genesis { get; } = new(0, [], []);
}
