using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using MinBft.Hosting;
using MinBft.Messages;
using Orleans;
using Orleans.Runtime;
using Orleans.Serialization;
using Orleans.Serialization.Serializers;
using Orleans.Storage;

namespace MinBft.Tests.Integration;

/// <summary>The replica's segmented sent log over the SQLite grain storage.</summary>
public sealed class ReplicaLogStoreTests : IDisposable
{
    private static readonly ServiceProvider SerializerServices = new ServiceCollection().AddSerializer().BuildServiceProvider();

    private readonly string _directory = Path.Combine(Path.GetTempPath(), "minbft-log-" + Guid.NewGuid().ToString("N"));
    private readonly List<SqliteGrainStorage> _storages = [];
    private readonly GrainId _grain = GrainId.Create("replica", "1");

    public void Dispose()
    {
        foreach (var storage in _storages) storage.Dispose();
        if (Directory.Exists(_directory)) Directory.Delete(_directory, recursive: true);
    }

    [Fact]
    public async Task Appends_across_segment_boundaries_read_back_in_order()
    {
        var storage = Open();
        var store = new ReplicaLogStore(storage, _grain, segmentSize: 4);
        Assert.Empty((await store.LoadAsync()).Log);
        var log = new List<CertifiedMessage>();
        ulong durable = 0;
        foreach (var burst in new[] { 1, 2, 4, 1, 7, 3 })
        {
            for (var i = 0; i < burst; i++) log.Add(Message(log.Count + 1));
            await store.WriteAsync(3, log, 1, durable);
            durable = (ulong)log.Count;
        }

        var (view, first, loaded) = await new ReplicaLogStore(Open(), _grain, segmentSize: 4).LoadAsync();

        Assert.Equal(3, view);
        Assert.Equal(1UL, first);
        Assert.Equal(log.Select(m => m.Ui.Counter), loaded.Select(m => m.Ui.Counter));
    }

    [Fact]
    public async Task Trimming_drops_whole_old_segments_and_keeps_appending_after_them()
    {
        var store = new ReplicaLogStore(Open(), _grain, segmentSize: 4);
        await store.LoadAsync();
        var log = Enumerable.Range(1, 10).Select(c => (CertifiedMessage)Message(c)).ToList();
        await store.WriteAsync(0, log, 1, 0);

        // Keep from counter 7: segment 0 (1-4) goes, segment 1 (5-8) holds 7 and stays.
        Assert.Equal(5UL, await store.TrimAsync(7));
        // The open segment is never dropped, however far the caller asks.
        Assert.Equal(9UL, await store.TrimAsync(100));
        var kept = log.GetRange(8, 2);
        kept.AddRange(Enumerable.Range(11, 3).Select(c => (CertifiedMessage)Message(c)));
        await store.WriteAsync(0, kept, 9, 10);

        var (_, first, loaded) = await new ReplicaLogStore(Open(), _grain, segmentSize: 4).LoadAsync();
        Assert.Equal(9UL, first);
        Assert.Equal(Enumerable.Range(9, 5).Select(c => (ulong)c), loaded.Select(m => m.Ui.Counter));
    }

    [Fact]
    public async Task A_second_writer_with_a_stale_view_of_the_log_fails_instead_of_forking_it()
    {
        var first = new ReplicaLogStore(Open(), _grain, segmentSize: 4);
        var second = new ReplicaLogStore(Open(), _grain, segmentSize: 4);
        await first.LoadAsync();
        await second.LoadAsync();
        await first.WriteAsync(0, [Message(1)], 1, 0);

        await Assert.ThrowsAsync<InconsistentStateException>(() => second.WriteAsync(0, [Message(1, digest: 9)], 1, 0));

        var (_, _, loaded) = await new ReplicaLogStore(Open(), _grain, segmentSize: 4).LoadAsync();
        Assert.Equal(1UL, Assert.Single(loaded).Ui.Counter);
        Assert.Equal(1L, ((Commit)loaded[0]).Prepare.View);
    }

    private static Commit Message(int counter, int digest = 1) =>
        new(0, 1, new Prepare(digest, 0, 1, [], UniqueIdentifier.None), new UniqueIdentifier(1, (ulong)counter, new byte[64]));

    private SqliteGrainStorage Open()
    {
        var storage = new SqliteGrainStorage(
            "minbft",
            new SqliteGrainStorageOptions { DataDirectory = _directory, FaultDomain = 1 },
            new OrleansGrainStorageSerializer(SerializerServices.GetRequiredService<Serializer>()),
            SerializerServices.GetRequiredService<IActivatorProvider>(),
            NullLogger<SqliteGrainStorage>.Instance);
        _storages.Add(storage);
        return storage;
    }
}
