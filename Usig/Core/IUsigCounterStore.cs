namespace MinBft.Usig;

/// <summary>
/// Durable storage of a USIG's <see cref="UsigState"/>. Part of the trusted computing base: a
/// store that rolls back lets the USIG reissue counters, which nothing outside can detect.
/// <see cref="WriteAsync"/> returns only once the state is durable, and throws when it cannot be
/// sure of that.
/// </summary>
public interface IUsigCounterStore
{
    /// <summary>The stored state, or null if this USIG never stored any.</summary>
    Task<UsigState?> ReadAsync(CancellationToken cancellationToken);

    Task WriteAsync(UsigState state, CancellationToken cancellationToken);
}
