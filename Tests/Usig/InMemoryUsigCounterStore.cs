namespace MinBft.Tests.Usig;

using MinBft.Usig;

/// <summary>How <see cref="InMemoryUsigCounterStore"/> fails its writes (for tests).</summary>
public enum UsigStoreFault
{
    None,

    /// <summary>The write throws and is lost.</summary>
    FailWithoutWriting,

    /// <summary>The write lands, then throws: the caller cannot tell whether it is durable.</summary>
    FailAfterWriting,
}

/// <summary>A store in memory: for tests only (nothing survives the process). Thread-safe.</summary>
public sealed class InMemoryUsigCounterStore : IUsigCounterStore
{
    private readonly Lock _lock = new();
    private UsigState? _state;
    private int _reads;
    private int _writes;

    public InMemoryUsigCounterStore(UsigState? initial = null) => _state = initial;

    /// <summary>What is durable now.</summary>
    public UsigState? State
    {
        get { lock (_lock) return _state; }
    }

    public int Reads
    {
        get { lock (_lock) return _reads; }
    }

    /// <summary>Writes that landed.</summary>
    public int Writes
    {
        get { lock (_lock) return _writes; }
    }

    /// <summary>How the next writes fail.</summary>
    public UsigStoreFault Fault { get; set; }

    /// <summary>When set, reads throw (a store that is down).</summary>
    public bool FailReads { get; set; }

    /// <summary>
    /// Awaited at the start of every write, before it lands; tests use it to hold a write open
    /// (and to observe that the USIG returns nothing meanwhile) or to throw.
    /// </summary>
    public Func<UsigState, CancellationToken, Task>? BeforeWrite { get; set; }

    public Task<UsigState?> ReadAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (FailReads) throw new IOException("injected read failure");
        lock (_lock)
        {
            _reads++;
            return Task.FromResult(_state);
        }
    }

    public async Task WriteAsync(UsigState state, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (BeforeWrite is { } hook) await hook(state, cancellationToken).ConfigureAwait(false);
        var fault = Fault;
        if (fault == UsigStoreFault.FailWithoutWriting) throw new IOException("injected write failure (not written)");
        lock (_lock)
        {
            _state = state;
            _writes++;
        }
        if (fault == UsigStoreFault.FailAfterWriting) throw new IOException("injected write failure (written)");
    }
}
