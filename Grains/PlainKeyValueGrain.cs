using MinBft.Application;

namespace MinBft;

/// <summary>
/// <see cref="IPlainKeyValueGrain"/>: the state machine MinBFT replicates, run once. Orleans runs
/// one call at a time (the grain is not reentrant), as a replica applies one operation at a time.
/// </summary>
public sealed class PlainKeyValueGrain : Grain, IPlainKeyValueGrain
{
    private readonly KeyValueStateMachine _state = new();

    public Task<byte[]> Execute(byte[] operation)
    {
        ArgumentNullException.ThrowIfNull(operation);
        return Task.FromResult(_state.Apply(operation));
    }
}
