namespace MinBft.Tests.Simulation;

/// <summary>A deterministic discrete-event queue: ordered by time, then by insertion.</summary>
public sealed class EventQueue
{
    private readonly PriorityQueue<Action, (TimeSpan Time, long Order)> _queue = new();
    private long _order;

    public TimeSpan Now { get; private set; }
    public int Count => _queue.Count;
    public long Processed { get; private set; }

    public void At(TimeSpan time, Action action) =>
        _queue.Enqueue(action, (time < Now ? Now : time, _order++));

    public void After(TimeSpan delay, Action action) => At(Now + delay, action);

    public bool RunNext()
    {
        if (!_queue.TryDequeue(out var action, out var key)) return false;
        Now = key.Time;
        Processed++;
        action();
        return true;
    }

    public TimeSpan? NextTime => _queue.TryPeek(out _, out var key) ? key.Time : null;
}
