using MinBft.Application;

namespace MinBft.Hosting;

/// <summary>
/// Creates the replicated service for a replica. Register your own implementation as a
/// singleton (after or instead of the default) to replicate something else than the
/// key-value sample. Each replica gets its own instance: state is never shared.
/// </summary>
public interface IStateMachineFactory
{
    IStateMachine Create(int replicaId);
}

/// <summary>The default: the sample <see cref="KeyValueStateMachine"/>.</summary>
public sealed class KeyValueStateMachineFactory : IStateMachineFactory
{
    public IStateMachine Create(int replicaId) => new KeyValueStateMachine();
}

/// <summary>An <see cref="IStateMachineFactory"/> from a delegate.</summary>
public sealed class DelegateStateMachineFactory(Func<int, IStateMachine> create) : IStateMachineFactory
{
    public IStateMachine Create(int replicaId) => create(replicaId);
}
