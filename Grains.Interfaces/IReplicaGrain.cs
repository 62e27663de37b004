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

    /// <summary>Client requests a proxy gathered while its previous call was being sent (at most
    /// <see cref="MinBft.Encoding.MessageLimits.MaxBatchSize"/>): one call and one core step for all.</summary>
    [OneWay]
    Task SubmitBatch(Request[] requests);

    /// <summary>
    /// Opens a MAC session for a client (relayed by its proxy): this replica's signed accept, or
    /// null for an offer that is malformed, not signed by its client, or older than the
    /// client's current session. Sessions make request checks cheap; they never decide one.
    /// </summary>
    Task<ClientSessionAccept?> OpenClientSession(ClientSessionOffer offer);

    /// <summary>View, progress and state digest, for operators and tests.</summary>
    Task<ReplicaStatus> GetStatus();

    /// <summary>As <see cref="GetStatus"/>, but <see cref="ReplicaStatus.StateDigest"/> is empty: after
    /// any change that digest costs an encoding of the whole service state in the replica's turn
    /// (tens of milliseconds at a few hundred thousand keys), too much for health checks and
    /// samplers that poll. <see cref="ReplicaStatus.HistoryDigest"/> still tells replicas apart.</summary>
    Task<ReplicaStatus> GetStatusWithoutStateDigest();
}

/// <summary>A replica's progress as it reports it (a Byzantine replica may lie: for operators and tests).</summary>
/// <param name="ReplicaId">The replica (grain key).</param>
/// <param name="View">Current view; its primary is <c>View mod n</c>.</param>
/// <param name="Primary">Primary of the current view.</param>
/// <param name="ExecutedSequence">Batches executed so far.</param>
/// <param name="StateDigest">Hex SHA-256 of the replicated service's state; empty from <see cref="IReplicaGrain.GetStatusWithoutStateDigest"/>.</param>
/// <param name="Rejections">Rejected inputs by reason (RejectReason names), since activation.</param>
/// <param name="BufferedMessages">Out-of-order messages held in reorder buffers.</param>
/// <param name="SentLogCount">UI-certified messages kept for retransmission.</param>
/// <param name="PendingRequests">Requests waiting at the primary for a batch.</param>
/// <param name="LastUiCounter">Counter of this replica's last certified message.</param>
/// <param name="AwaitingUi">Messages waiting for this replica's USIG.</param>
/// <param name="DurableSentCount">Sent-log messages known durable (persist before send).</param>
/// <param name="Halted">Null while running; otherwise why the replica stopped taking input.</param>
/// <param name="HistoryDigest">Hex hash chain over the executed batches (sequence and batch digest):
/// replicas with equal executed sequences and equal history digests executed the same batches in the same order.</param>
/// <param name="StableCheckpoint">Position of the latest stable checkpoint (0: none yet).</param>
/// <param name="UsigMode">Where this replica's USIG runs: "isolated" (the USIG program) or "in-process (not isolated)".</param>
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
    [property: Id(8)] int PendingRequests,
    [property: Id(9)] ulong LastUiCounter,
    [property: Id(10)] int AwaitingUi,
    [property: Id(11)] int DurableSentCount,
    [property: Id(12)] string? Halted,
    [property: Id(13)] string HistoryDigest,
    [property: Id(14)] ulong StableCheckpoint,
    [property: Id(15)] string? UsigMode = null)
{
    /// <summary>The silo process that hosts this replica (machine and process id): replicas of one
    /// process report the same <see cref="ProcessCpu"/>, which a reader counts once.</summary>
    [Id(16)] public string Process { get; init; } = "";

    /// <summary>CPU time the hosting process has used since it started (all threads).</summary>
    [Id(17)] public TimeSpan ProcessCpu { get; init; }

    /// <summary>Client requests this replica accepted on their session MAC, without checking the signature.</summary>
    [Id(18)] public long RequestsAuthenticatedByMac { get; init; }

    /// <summary>Client request signatures this replica checked (requests without a valid MAC for it).</summary>
    [Id(19)] public long RequestSignaturesChecked { get; init; }

    /// <summary>Client MAC sessions this replica holds (in memory; bounded).</summary>
    [Id(20)] public int ClientSessions { get; init; }

    /// <summary>The replica is between views (sent VIEW-CHANGE, waiting for the NEW-VIEW).</summary>
    [Id(21)] public bool ViewChanging { get; init; }

    /// <summary>The replica is fetching a snapshot from its peers (state transfer).</summary>
    [Id(22)] public bool StateTransferInProgress { get; init; }

    /// <summary>How long the oldest of its durable operations (log write, USIG batch, checkpoint
    /// store) has been failing and retrying; zero when none is failing.</summary>
    [Id(23)] public TimeSpan DurableFailingFor { get; init; }

    /// <summary>Why this replica last halted on its silo (null: never since the silo started). A
    /// halted replica deactivates and the next message brings it back from its durable state, so
    /// <see cref="Halted"/> of the running activation is usually null again by the time anyone asks.</summary>
    [Id(24)] public string? LastHalt { get; init; }

    /// <summary>How long ago <see cref="LastHalt"/> happened (on the replica's clock).</summary>
    [Id(25)] public TimeSpan SinceLastHalt { get; init; }

    /// <summary>Client records in the replicated client table (at most the manifest's <c>maxClientRecords</c>).</summary>
    [Id(26)] public int ClientRecords { get; init; }

    /// <summary>The client table's expiry horizon: requests of clients without a record need an
    /// incarnation at least this high (0: no record was ever evicted).</summary>
    [Id(27)] public ulong ExpiryHorizon { get; init; }

    /// <summary>Client records this replica evicted since it activated (not counting those an installed snapshot had evicted).</summary>
    [Id(28)] public long ClientEvictions { get; init; }

    /// <summary>After a restart that found a counter gap: the position up to which this replica
    /// withholds its VIEW-CHANGEs (its log no longer shows what it committed to before the gap);
    /// 0 when it withholds none. It takes part in view changes again once its stable checkpoint
    /// reaches this.</summary>
    [Id(29)] public ulong ViewChangesWithheldUntil { get; init; }

    /// <summary>VIEW-CHANGEs this replica withheld since it activated (see <see cref="ViewChangesWithheldUntil"/>).</summary>
    [Id(30)] public long ViewChangesWithheld { get; init; }

    /// <summary>Replies sent with a MAC under their client's session, which the client takes without a signature check.</summary>
    [Id(31)] public long RepliesAuthenticatedByMac { get; init; }

    /// <summary>With an isolated USIG on the silo's machine: the USIG program's process (machine and
    /// process id, as <see cref="Process"/>), so that a reader counts its CPU with the silo's once;
    /// empty for an in-process USIG, or when the silo cannot see the program's process.</summary>
    [Id(32)] public string UsigProcess { get; init; } = "";

    /// <summary>CPU time <see cref="UsigProcess"/> has used since it started (10 ms resolution).</summary>
    [Id(33)] public TimeSpan UsigProcessCpu { get; init; }
}
