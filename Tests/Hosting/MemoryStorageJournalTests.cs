using Microsoft.Extensions.DependencyInjection;
using MinBft.Hosting.Journal;
using Orleans.Hosting;
using Orleans.Storage;
using Orleans.TestingHost;
using static MinBft.Tests.Hosting.JournalKit;

namespace MinBft.Tests.Hosting;

/// <summary>
/// The grain-storage journal over Orleans' memory storage, as a silo whose host registers
/// grain storage "minbft" itself gets it (the in-process integration clusters do): its ETag
/// rules are enough for appends, trims and fencing.
/// </summary>
public sealed class MemoryStorageJournalTests
{
    [Fact]
    public async Task Over_orleans_memory_storage_the_journal_round_trips_trims_and_fences()
    {
        var builder = new InProcessTestClusterBuilder(1);
        builder.ConfigureSilo((_, silo) =>
        {
            silo.AddMemoryGrainStorage("minbft");
            silo.AddMinBftGrainStorageJournal();
        });
        await using var cluster = builder.Build();
        await cluster.DeployAsync();
        var factory = cluster.Silos[0].ServiceProvider.GetRequiredService<IReplicaJournalFactory>();

        var stale = factory.Create(Replica);
        await stale.OpenAsync();
        var model = new JournalModel();
        for (var i = 0; i < GrainStorageReplicaJournalFactory.DefaultTrimRecords + 8; i++)
        {
            var append = Append(0, model.Next, Intents(model.Next, 1), model.Next > 1 ? [Ui(model.Next - 1)] : [], keepFrom: model.Next);
            await stale.AppendAsync(append);
            model.Append(append);
        }
        var trimmed = Assert.IsType<GrainStorageReplicaJournal>(stale).FirstRecord;
        Assert.True(trimmed > 0, "the journal should have moved its head past the first records");

        var current = factory.Create(Replica);
        model.AssertMatches(await current.OpenAsync());
        await Assert.ThrowsAsync<InconsistentStateException>(() => stale.AppendAsync(Append(0, model.Next, Intents(model.Next, 1, tag: 3))));

        var next = Append(0, model.Next, Intents(model.Next, 2));
        await current.AppendAsync(next);
        model.Append(next);
        model.AssertMatches(await factory.Create(Replica).OpenAsync());
    }
}
