namespace MinBft.Messages;

/// <summary>
/// A USIG unique identifier: the counter value the trusted USIG of the sender bound to one
/// message, and the certificate over (replica, epoch, counter, digest of the message).
/// Counter 0 never certifies anything; it marks a message whose UI is not issued yet.
/// </summary>
[GenerateSerializer, Immutable, Alias("minbft.UniqueIdentifier")]
public sealed record UniqueIdentifier(
    [Id(0)] ulong Epoch,
    [Id(1)] ulong Counter,
    [Id(2)] byte[] Certificate)
{
    /// <summary>Placeholder carried by a message before its USIG has certified it.</summary>
    public static UniqueIdentifier None { get; } = new(0, 0, []);

    public bool IsNone => Counter == 0;
}
