using Microsoft.Extensions.Logging;
using MinBft.Protocol;
using Orleans;

namespace MinBft;

/// <summary>The replica grain's log messages (source-generated).</summary>
public sealed partial class ReplicaGrain
{
    [LoggerMessage(Level = LogLevel.Information, Message = "Replica {ReplicaId} of {N} activated: {Logged} messages in its durable log ({Reissued} UIs re-issued), stored checkpoint {Checkpoint}, view {View}")]
    private static partial void LogActivated(ILogger logger, int replicaId, int n, int logged, int reissued, ulong checkpoint, long view);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Replica {ReplicaId}: the USIG (at {Usig}) issued counters whose messages are not in the log; its stream resumes after them")]
    private static partial void LogCounterGap(ILogger logger, int replicaId, ulong usig);

    [LoggerMessage(Level = LogLevel.Error, Message = "Replica {ReplicaId}: the {Count} messages its USIG kept do not decode; the counters they cover are treated as a gap")]
    private static partial void LogKeptUndecodable(ILogger logger, Exception exception, int replicaId, int count);

    [LoggerMessage(Level = LogLevel.Information, Message = "Replica {ReplicaId} installed the snapshot at {Sequence} from replica {From}")]
    private static partial void LogStateInstalled(ILogger logger, int replicaId, ulong sequence, int from);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Replica {ReplicaId} rejected input from {From}: {Reason} ({Detail})")]
    private static partial void LogRejected(ILogger logger, int replicaId, int? from, RejectReason reason, string detail);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Replica {ReplicaId} executed batch {Sequence} (view {View}, primary counter {Counter}, {Requests} requests)")]
    private static partial void LogExecuted(ILogger logger, int replicaId, ulong sequence, long view, ulong counter, int requests);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Replica {ReplicaId}: its USIG could not verify a message's UIs; the message is dropped")]
    private static partial void LogVerifyFailed(ILogger logger, Exception exception, int replicaId);

    [LoggerMessage(Level = LogLevel.Information, Message = "Replica {ReplicaId} deactivating: {Code} ({Description})")]
    private static partial void LogDeactivating(ILogger logger, int replicaId, DeactivationReasonCode code, string description);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Replica {ReplicaId}: no VIEW-CHANGE for view {View}: after a counter gap its log cannot show what it committed to up to position {Horizon}, and its stable checkpoint is {Stable}")]
    private static partial void LogViewChangeWithheld(ILogger logger, int replicaId, long view, ulong stable, ulong horizon);

    [LoggerMessage(Level = LogLevel.Critical, Message = "Replica {ReplicaId} halted: {Reason}")]
    private static partial void LogHalted(ILogger logger, Exception? exception, int replicaId, string reason);
}
