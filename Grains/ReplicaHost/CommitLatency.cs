using MinBft.Messages;
using MinBft.Protocol;

namespace MinBft.ReplicaHost;

/// <summary>
/// At the primary: the time from sending a batch's PREPARE to executing the batch, for the
/// meter's commit latency. Entries are bounded by the batches in flight plus those a view change
/// or a snapshot overtook, which <see cref="AfterStep"/> sweeps.
/// </summary>
internal sealed class CommitLatency(int replicaId, TimeProvider clock)
{
    private readonly Dictionary<ulong, long> _prepareSent = []; // sequence -> timestamp
    private long _view;

    /// <summary>Notes a PREPARE this replica sends; for a batch executed, the time since its PREPARE was sent.</summary>
    public TimeSpan? Observe(Effect effect)
    {
        switch (effect)
        {
            case Send { Message: Prepare prepare } when prepare.PrimaryId == replicaId:
                _prepareSent.TryAdd(prepare.Sequence, clock.GetTimestamp());
                return null;
            case Executed executed when _prepareSent.Remove(executed.Sequence, out var sent):
                return clock.GetElapsedTime(sent);
            default:
                return null;
        }
    }

    /// <summary>
    /// A batch executed through a snapshot, or prepared but abandoned by a view change, never
    /// reports its own execution. Only those two events leave such entries, so only they sweep
    /// (not every step: this runs per message).
    /// </summary>
    public void AfterStep(long view, ulong executedSequence, bool stateInstalled)
    {
        if (_prepareSent.Count > 0)
        {
            if (view != _view) _prepareSent.Clear();
            else if (stateInstalled)
                foreach (var sequence in _prepareSent.Keys.Where(s => s <= executedSequence).ToList()) _prepareSent.Remove(sequence);
        }
        _view = view;
    }
}
