using MinBft.Application;
using MinBft.Hosting;
using Orleans.Runtime;

namespace MinBft;

/// <summary>
/// <see cref="IDurableKeyValueGrain"/>. Its key is the fault domain it runs in (placement), so it
/// writes through exactly the store the replica of that domain uses. The durable record is the
/// last operation and a count, not the whole map: a write costs what one operation appends, as
/// the replica's journal does, so the baseline is not slowed by its own state's growth.
/// </summary>
[FaultDomainPlacement]
public sealed class DurableKeyValueGrain(
    [PersistentState("bench-baseline", SqliteGrainStorageSiloBuilderExtensions.DefaultProviderName)] IPersistentState<DurableOperationRecord> record)
    : Grain, IDurableKeyValueGrain
{
    private readonly KeyValueStateMachine _state = new();

    public async Task<byte[]> Execute(byte[] operation)
    {
        ArgumentNullException.ThrowIfNull(operation);
        var result = _state.Apply(operation);
        record.State = new DurableOperationRecord { Count = record.State.Count + 1, Operation = operation };
        await record.WriteStateAsync();
        return result;
    }
}

/// <summary>The durable baseline's stored record: how many operations, and the last one.</summary>
[GenerateSerializer, Alias("minbft.DurableOperationRecord")]
public sealed record DurableOperationRecord
{
    [Id(0)] public long Count { get; init; }
    [Id(1)] public byte[] Operation { get; init; } = [];
}
