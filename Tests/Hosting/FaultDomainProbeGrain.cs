using System.Collections.Concurrent;
using Microsoft.Extensions.Options;
using MinBft.Hosting;
using Orleans;
using Orleans.Runtime;

namespace MinBft.Tests.Hosting;

/// <summary>A grain that reports the fault domain of the silo it was activated on.</summary>
public interface IFaultDomainProbeGrain : IGrainWithIntegerKey
{
    Task<int> GetFaultDomainAsync();

    /// <summary>Increments a counter kept in the "minbft" storage and returns it.</summary>
    Task<int> RecordVisitAsync();
}

[GenerateSerializer]
public sealed class ProbeState
{
    [Id(0)]
    public int Visits { get; set; }
}

[FaultDomainPlacement]
public sealed class FaultDomainProbeGrain(
    IOptions<FaultDomainOptions> faultDomain,
    [PersistentState("probe", SqliteGrainStorageSiloBuilderExtensions.DefaultProviderName)] IPersistentState<ProbeState> state)
    : Grain, IFaultDomainProbeGrain
{
    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        ProbeActivations.Record(this.GetPrimaryKeyLong(), faultDomain.Value.FaultDomain);
        return Task.CompletedTask;
    }

    public Task<int> GetFaultDomainAsync() => Task.FromResult(faultDomain.Value.FaultDomain);

    public async Task<int> RecordVisitAsync()
    {
        state.State.Visits++;
        await state.WriteStateAsync();
        return state.State.Visits;
    }
}

/// <summary>
/// Every probe activation in this process, as (grain key, fault domain of its silo). The test
/// clusters run in-process, so this sees activations on all silos: it is how the tests check
/// that a grain was never activated outside its fault domain, even for a moment.
/// </summary>
public static class ProbeActivations
{
    private static readonly ConcurrentQueue<(long Key, int FaultDomain)> Log = new();

    public static void Record(long key, int faultDomain) => Log.Enqueue((key, faultDomain));

    public static IReadOnlyList<(long Key, int FaultDomain)> Snapshot() => Log.ToArray();
}
