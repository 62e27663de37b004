namespace MinBft.Messages;

/// <summary>
/// COMMIT: a backup commits to the PREPARE it carries. Carrying the whole PREPARE lets a
/// replica that missed the PREPARE accept it from the COMMIT (embedded first).
/// </summary>
[GenerateSerializer, Immutable, Alias("minbft.Commit")]
public sealed record Commit(
    [Id(0)] long View,
    [Id(1)] int ReplicaId,
    [Id(2)] Prepare Prepare,
    [Id(3)] UniqueIdentifier CommitUi) : CertifiedMessage
{
    public override int Sender => ReplicaId;
    public override UniqueIdentifier Ui => CommitUi;
    public override CertifiedMessage WithUi(UniqueIdentifier ui) => this with { CommitUi = ui };
}
