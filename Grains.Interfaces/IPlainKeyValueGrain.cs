namespace MinBft;

/// <summary>
/// The key-value sample in one ordinary grain: no replication, no signatures, state in memory.
/// Only a baseline for <c>bench --baseline</c>, to show what MinBFT costs over plain Orleans.
/// It takes the same operation encoding as the replicated service and returns the same results.
/// </summary>
public interface IPlainKeyValueGrain : IGrainWithStringKey
{
    /// <summary>Applies one key-value operation and returns its encoded result.</summary>
    Task<byte[]> Execute(byte[] operation);
}
