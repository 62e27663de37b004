namespace MinBft.Protocol;

/// <summary>
/// Time-driven behaviour. The network may lose any message, so a replica that knows of
/// unexecuted work and has seen no progress for a retransmit interval asks every peer to
/// resend what follows its last accepted counter, and a backup forwards the requests it holds
/// to the primary (which may never have received them).
/// </summary>
public sealed partial class ReplicaCore
{
    private void HandleTick()
    {
        ViewChangeTimers();
        ViewChangeFetchTimer();
        StateTransferTimers();
        var interval = _tuning.RetransmitInterval;
        if (IsStalled())
        {
            // Stuck with work outstanding: perhaps behind the peers' checkpoints (cheap to ask).
            NoteBehind(ExecutedSequence + 1);
            for (var peer = 0; peer < N; peer++)
                if (peer != Id) AskRetransmission(peer, force: false, relays: true);
        }
        else if (_now - _lastIdleProbe >= _tuning.IdleRetransmitInterval)
        {
            // Anti-entropy: the last messages of a burst may have been lost (or sent while this
            // replica was down), and nothing else would tell it so while the system is quiet.
            // A peer with nothing after our last accepted counter answers nothing.
            _lastIdleProbe = _now;
            for (var peer = 0; peer < N; peer++)
                if (peer != Id) AskRetransmission(peer, force: true);
        }
        else
        {
            for (var peer = 0; peer < N; peer++)
                if (peer != Id && _streams[peer].Buffer.Count > 0) AskRetransmission(peer, force: false);
        }

        if (!IsPrimary)
        {
            // Forwards back off (one interval, then 2, 4, up to MaxForwardBackoff intervals): a
            // primary that is slow, not absent, must not be sent every request it is still
            // ordering again each interval by every backup. 100 requests of 60 KB at 200 ms were
            // 60 MB/s into a primary that was starved already, and nothing got ordered.
            foreach (var known in _known.Values)
            {
                var since = known.ForwardedAt ?? known.FirstSeen;
                if (_now - since < interval * (1 << Math.Min(known.Forwards, MaxForwardBackoffDoublings))) continue;
                known.ForwardedAt = _now;
                known.Forwards++;
                Emit(new ForwardRequest(Primary, known.Request));
            }
        }
    }

    /// <summary>Work is outstanding and nothing executed for a whole retransmit interval.</summary>
    private bool IsStalled()
    {
        if (_busySince is not { } busySince) return false;
        var progress = _lastExecutionAt > busySince ? _lastExecutionAt : busySince;
        return _now - progress >= _tuning.RetransmitInterval;
    }

    /// <summary>A known request is forwarded again at most every 2^this retransmit intervals.</summary>
    private const int MaxForwardBackoffDoublings = 3;

    // Since when work has been outstanding without a pause (null: idle).
    private TimeSpan? _busySince;
    private TimeSpan _lastIdleProbe;

    private bool HasOutstandingWork =>
        _viewChanging || _executionQueue.Count > 0 || _known.Count > 0 || _own.Uncertified > 0 || _pending.Count > 0 || BufferedMessages > 0
        || _transfer is not null || _behindSince is not null;

    private void TrackBusy()
    {
        if (!HasOutstandingWork) _busySince = null;
        else _busySince ??= _now;
    }

    private TimeSpan? NextTick()
    {
        TimeSpan? next = null;
        if (_pending.Count > 0 && CanPropose && !PrepareAwaitingUi)
            next = AwaitingReturns ? _returnsDue : _pending.First!.Value.Arrived + _tuning.MaxBatchWait;
        if (HasOutstandingWork)
        {
            var retransmit = _now + _tuning.RetransmitInterval / 4;
            if (next is null || retransmit < next) next = retransmit;
        }
        if (_own.UisWaitingSince is { } since && !_own.WriteInFlight)
        {
            var flush = since + _tuning.LazyUiWait;
            if (next is null || flush < next) next = flush;
        }
        var probe = _lastIdleProbe + _tuning.IdleRetransmitInterval;
        if (next is null || probe < next) next = probe;
        // Never ask for a tick in the past: the host would spin.
        if (next is { } at && at <= _now) next = _now + TimeSpan.FromMilliseconds(1);
        return next;
    }
}
