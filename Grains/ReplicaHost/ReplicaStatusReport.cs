using MinBft.Application;
using MinBft.Crypto;
using MinBft.Protocol;

namespace MinBft.ReplicaHost;

/// <summary>A replica's <see cref="ReplicaStatus"/>, read from its core (for operators and tests);
/// without an <see cref="IStateMachine"/> the state digest is left empty (it costs an encoding).</summary>
internal static class ReplicaStatusReport
{
    private static readonly string ProcessName = $"{Environment.MachineName}:{Environment.ProcessId}";

    public static ReplicaStatus Of(
        int id, ReplicaCore core, IStateMachine? app, IReadOnlyDictionary<string, long> grainRejections,
        string? halted, string usigMode, ReplicaClientSessions? sessions, TimeSpan durableFailingFor,
        (string Reason, TimeSpan Ago)? lastHalt = null, (string Process, TimeSpan Cpu)? usigProcess = null)
    {
        var rejections = new Dictionary<string, long>(grainRejections, StringComparer.Ordinal);
        foreach (var (reason, count) in core.Rejections) rejections[reason.ToString()] = count;
        var own = core.OwnLogPositions;
        return new ReplicaStatus(
            id,
            core.View,
            core.Primary,
            core.ExecutedSequence,
            app is null ? "" : Convert.ToHexString(app.Digest()),
            rejections,
            core.BufferedMessages,
            core.SentLogCount,
            core.PendingRequests,
            core.LastAccepted(id),
            core.AwaitingUiCount,
            // Own messages whose UI is durable and still in the sent log.
            (int)Math.Min(int.MaxValue, own.UiDurable + 1 - Math.Min(own.UiDurable + 1, core.SentLogFirstCounter)),
            halted,
            Convert.ToHexString(core.HistoryDigest),
            core.StableCheckpoint.Sequence,
            usigMode)
        {
            Process = ProcessName,
            ProcessCpu = Environment.CpuUsage.TotalTime,
            RequestsAuthenticatedByMac = sessions?.AuthenticatedByMac ?? 0,
            RequestSignaturesChecked = sessions?.SignaturesChecked ?? 0,
            RepliesAuthenticatedByMac = sessions?.RepliesAuthenticated ?? 0,
            ClientSessions = sessions?.Count ?? 0,
            ViewChanging = core.ViewChanging,
            StateTransferInProgress = core.StateTransferInProgress,
            DurableFailingFor = durableFailingFor,
            LastHalt = lastHalt?.Reason,
            SinceLastHalt = lastHalt?.Ago ?? TimeSpan.Zero,
            ClientRecords = core.ClientRecordCount,
            ExpiryHorizon = core.ExpiryHorizon,
            ClientEvictions = core.ClientEvictions,
            ViewChangesWithheldUntil = core.ViewChangesWithheldUntil,
            ViewChangesWithheld = core.ViewChangesWithheld,
            UsigProcess = usigProcess?.Process ?? "",
            UsigProcessCpu = usigProcess?.Cpu ?? TimeSpan.Zero,
        };
    }
}
