namespace MinBft.Messages;

/// <summary>PREPARE: the primary of <see cref="View"/> proposes a batch; its UI orders it.</summary>
[GenerateSerializer, Immutable, Alias("minbft.Prepare")]
public sealed record Prepare(
    [property: Id(0)] long View,
    [property: Id(1)] int PrimaryId,
    [property: Id(2)] Request[] Batch,
    [property: Id(3)] UniqueIdentifier PrepareUi) : CertifiedMessage
{
    public override int Sender => PrimaryId;
    public override UniqueIdentifier Ui => PrepareUi;
    public override CertifiedMessage WithUi(UniqueIdentifier ui) => this with { PrepareUi = ui };
}
