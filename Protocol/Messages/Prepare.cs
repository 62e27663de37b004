namespace MinBft.Messages;

/// <summary>
/// PREPARE: the primary of <see cref="View"/> proposes a batch for position
/// <see cref="Sequence"/> of the replicated history; its UI orders it in the primary's stream.
/// Positions are view-independent (counters restart with each view's primary), which is what
/// lets a view change line up batches prepared in different views.
/// </summary>
[GenerateSerializer, Immutable, Alias("minbft.Prepare")]
public sealed record Prepare(
    [Id(0)] long View,
    [Id(1)] int PrimaryId,
    [Id(4)] ulong Sequence,
    [Id(2)] Request[] Batch,
    [Id(3)] UniqueIdentifier PrepareUi,
    [Id(5)] CheckpointCertificate? ViewStart = null) : CertifiedMessage
{
    public override int Sender => PrimaryId;
    public override UniqueIdentifier Ui => PrepareUi;
    public override CertifiedMessage WithUi(UniqueIdentifier ui) => this with { PrepareUi = ui };

    /// <summary>The PREPARE a message is or carries (a COMMIT's), or null.</summary>
    public static Prepare? In(CertifiedMessage message) => message switch { Prepare p => p, Commit c => c.Prepare, _ => null };
}
