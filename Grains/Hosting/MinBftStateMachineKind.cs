namespace MinBft.Hosting;

/// <summary>The sample services a silo can run without code (<see cref="MinBftOptions.StateMachine"/>).</summary>
public enum MinBftStateMachineKind
{
    /// <summary><see cref="Application.KeyValueStateMachine"/> (the default).</summary>
    KeyValue,

    /// <summary><see cref="Application.LedgerStateMachine"/>.</summary>
    Ledger,
}

internal static class MinBftStateMachines
{
    /// <summary>The factory of a sample; throws <see cref="ArgumentException"/> for a value that names none.</summary>
    public static IStateMachineFactory CreateFactory(MinBftStateMachineKind kind) => kind switch
    {
        MinBftStateMachineKind.KeyValue => new KeyValueStateMachineFactory(),
        MinBftStateMachineKind.Ledger => new LedgerStateMachineFactory(),
        // Configuration binds any integer to an enum: say which values exist.
        _ => throw new ArgumentException(
            $"{MinBftOptions.SectionName}:{nameof(MinBftOptions.StateMachine)} must be {nameof(MinBftStateMachineKind.KeyValue)} or {nameof(MinBftStateMachineKind.Ledger)}, got {kind}"),
    };
}
