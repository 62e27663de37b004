using MinBft.Messages;
using Orleans.Concurrency;

namespace MinBft;

/// <summary>
/// Replica i (key = i), placed only in fault domain i. Every input is untrusted: the core
/// authenticates it. Protocol messages are one-way: a replica never waits on a peer (a slow or
/// faulty peer must not stall it), and loss is repaired by the protocol's retransmission.
/// </summary>
public interface IReplicaGrain : IGrainWithIntegerKey
{
    /// <summary>A message from another replica.</summary>
    [OneWay]
    Task Deliver(ReplicaMessage message);

    /// <summary>A client request (from the client's proxy, or forwarded by a replica).</summary>
    [OneWay]
    Task Submit(Request request);

    /// <summary>View, progress and state digest, for operators and tests.</summary>
    Task<ReplicaStatus> GetStatus();
}

[GenerateSerializer, Immutable, Alias("minbft.ReplicaStatus")]
public sealed record ReplicaStatus(
    [property: Id(0)] int ReplicaId,
    [property: Id(1)] long View,
    [property: Id(2)] int Primary,
    [property: Id(3)] ulong ExecutedSequence,
    [property: Id(4)] string StateDigest,
    [property: Id(5)] Dictionary<string, long> Rejections,
    [property: Id(6)] int BufferedMessages,
    [property: Id(7)] int SentLogCount,
    [property: Id(8)] int PendingRequests);
