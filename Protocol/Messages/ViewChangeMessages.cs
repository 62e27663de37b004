namespace MinBft.Messages;

/// <summary>REQ-VIEW-CHANGE: the sender suspects the primary of <see cref="CurrentView"/>.</summary>
[GenerateSerializer, Immutable, Alias("minbft.ReqViewChange")]
public sealed record ReqViewChange(
    [Id(0)] int ReplicaId,
    [Id(1)] long CurrentView,
    [Id(2)] long NewView,
    [Id(3)] byte[] Signature) : ReplicaMessage
{
    public override int Sender => ReplicaId;
}

/// <summary>
/// VIEW-CHANGE: the sender's stable checkpoint, its complete log of UI-certified messages from
/// an anchor (counter 1, or one of its own CHECKPOINTs at least W positions below the stable
/// one), and the view-start certificate of every view its log's PREPAREs and COMMITs belong to.
/// Completeness (no counter gap) is what keeps committed batches across the view change.
/// </summary>
[GenerateSerializer, Immutable, Alias("minbft.ViewChange")]
public sealed record ViewChange(
    [Id(0)] int ReplicaId,
    [Id(1)] long NewView,
    [Id(2)] CheckpointCertificate CheckpointCertificate,
    [Id(3)] CertifiedMessage[] Log,
    [Id(4)] UniqueIdentifier ViewChangeUi,
    [Id(5)] CheckpointCertificate[] ViewStarts) : CertifiedMessage
{
    public override int Sender => ReplicaId;
    public override UniqueIdentifier Ui => ViewChangeUi;
    public override CertifiedMessage WithUi(UniqueIdentifier ui) => this with { ViewChangeUi = ui };
}

/// <summary>NEW-VIEW: the new primary's proof (f+1 VIEW-CHANGEs) that the view may start.</summary>
[GenerateSerializer, Immutable, Alias("minbft.NewView")]
public sealed record NewView(
    [Id(0)] int PrimaryId,
    [Id(1)] long View,
    [Id(2)] ViewChange[] ViewChanges,
    [Id(3)] UniqueIdentifier NewViewUi) : CertifiedMessage
{
    public override int Sender => PrimaryId;
    public override UniqueIdentifier Ui => NewViewUi;
    public override CertifiedMessage WithUi(UniqueIdentifier ui) => this with { NewViewUi = ui };
}
