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

/// <summary>
/// NEW-VIEW: the new primary's proof (f+1 VIEW-CHANGEs) that the view may start. Each entry is a
/// <see cref="ViewChange"/> or a <see cref="CertifiedStub"/> referring to one (sender, digest,
/// UI): the certified bytes are the same either way, since they cover each VIEW-CHANGE by digest
/// and UI. A replica keeps and journals its NEW-VIEW whole but sends it by reference
/// (<see cref="ByReference"/>): every replica already received the VIEW-CHANGEs in their
/// senders' streams and fetches only a missing one (<see cref="ViewChangeFetch"/>). So no message
/// carries more than one VIEW-CHANGE's log, however large f+1 logs grow together.
/// </summary>
[GenerateSerializer, Immutable, Alias("minbft.NewView")]
public sealed record NewView(
    [Id(0)] int PrimaryId,
    [Id(1)] long View,
    [Id(2)] CertifiedMessage[] ViewChanges,
    [Id(3)] UniqueIdentifier NewViewUi) : CertifiedMessage
{
    public override int Sender => PrimaryId;
    public override UniqueIdentifier Ui => NewViewUi;
    public override CertifiedMessage WithUi(UniqueIdentifier ui) => this with { NewViewUi = ui };

    /// <summary>True when every VIEW-CHANGE is here whole (the form a replica can validate).</summary>
    public bool IsWhole => Array.TrueForAll(ViewChanges, vc => vc is ViewChange);

    /// <summary>The VIEW-CHANGEs, once <see cref="IsWhole"/>.</summary>
    public ViewChange[] Proof() => IsWhole
        ? Array.ConvertAll(ViewChanges, vc => (ViewChange)vc)
        : throw new InvalidOperationException("a NEW-VIEW by reference has no VIEW-CHANGEs to read");

    /// <summary>The form sent: every VIEW-CHANGE as a stub (same certified bytes, same UI).</summary>
    public NewView ByReference() =>
        Array.TrueForAll(ViewChanges, vc => vc is CertifiedStub) ? this : this with { ViewChanges = Array.ConvertAll(ViewChanges, MinBft.Encoding.MessageEncoding.ForLog) };
}

/// <summary>
/// Asks for VIEW-CHANGEs that a NEW-VIEW refers to and this replica does not hold (a sender that
/// sent its VIEW-CHANGE to the new primary only, or one still on its way). Each is named by its
/// stub: sender, digest and UI. Signed, as a retransmission request, so that a forged request
/// cannot make replicas send large messages to a peer.
/// </summary>
[GenerateSerializer, Immutable, Alias("minbft.ViewChangeFetch")]
public sealed record ViewChangeFetch(
    [Id(0)] int ReplicaId,
    [Id(1)] CertifiedStub[] Wanted,
    [Id(2)] byte[] Signature) : ReplicaMessage
{
    public override int Sender => ReplicaId;
}

/// <summary>
/// A copy of a VIEW-CHANGE sent outside its sender's stream, in answer to a
/// <see cref="ViewChangeFetch"/>. Its own UI authenticates it, whoever relays it.
/// </summary>
[GenerateSerializer, Immutable, Alias("minbft.ViewChangeRelay")]
public sealed record ViewChangeRelay(
    [Id(0)] int RelayerId,
    [Id(1)] ViewChange ViewChange) : ReplicaMessage
{
    public override int Sender => RelayerId;
}
