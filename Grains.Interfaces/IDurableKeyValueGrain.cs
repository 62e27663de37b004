namespace MinBft;

/// <summary>
/// The durable baseline for <c>bench --baseline</c>: the same key-value operations in one ordinary
/// grain of fault domain 0 that makes every operation durable in that domain's <c>minbft</c>
/// grain storage before it answers, as a replica makes each of its messages durable before it
/// leaves. No replication and no signatures: it shows what the store alone costs.
/// </summary>
public interface IDurableKeyValueGrain : IGrainWithIntegerKey
{
    /// <summary>Applies one key-value operation, writes it durably, and returns its encoded result.</summary>
    Task<byte[]> Execute(byte[] operation);
}
