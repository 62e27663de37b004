using MinBft.Application;

namespace MinBft.Hosting;

/// <summary>Runs the sample bank ledger (<see cref="LedgerStateMachine"/>) instead of the key-value sample.</summary>
public sealed class LedgerStateMachineFactory : IStateMachineFactory
{
    public IStateMachine Create(int replicaId) => new LedgerStateMachine();
}
