namespace MinBft.Messages;

/// <summary>Any message one replica sends another.</summary>
[GenerateSerializer, Immutable, Alias("minbft.ReplicaMessage")]
public abstract record ReplicaMessage
{
    /// <summary>The replica that claims to have sent the message (checked, never trusted).</summary>
    public abstract int Sender { get; }
}

/// <summary>
/// A message certified by its sender's USIG. These form each sender's gap-free counter
/// stream, processed strictly in counter order by every receiver.
/// </summary>
[GenerateSerializer, Immutable, Alias("minbft.CertifiedMessage")]
public abstract record CertifiedMessage : ReplicaMessage
{
    public abstract UniqueIdentifier Ui { get; }

    /// <summary>The same message carrying the UI its sender's USIG issued for it.</summary>
    public abstract CertifiedMessage WithUi(UniqueIdentifier ui);
}
