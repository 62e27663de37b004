namespace MinBft.Messages;

/// <summary>
/// A certified message represented by its digest only, inside a VIEW-CHANGE log. A replica's
/// earlier VIEW-CHANGE and NEW-VIEW messages must be in its log (the log has to be contiguous)
/// but carrying them whole would nest logs inside logs. A USIG certificate covers the SHA-256
/// of the message's canonical bytes, so the stub's UI still verifies against its digest.
/// </summary>
[GenerateSerializer, Immutable, Alias("minbft.CertifiedStub")]
public sealed record CertifiedStub(
    [Id(0)] int ReplicaId,
    [Id(1)] byte[] CertifiedDigest,
    [Id(2)] UniqueIdentifier StubUi) : CertifiedMessage
{
    public override int Sender => ReplicaId;
    public override UniqueIdentifier Ui => StubUi;
    public override CertifiedMessage WithUi(UniqueIdentifier ui) => this with { StubUi = ui };
}
