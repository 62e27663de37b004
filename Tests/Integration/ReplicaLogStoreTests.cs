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
        var durable = 0;
        foreach (var burst in new[] { 1, 2, 4, 1, 7, 3 })
        {
            for (var i = 0; i < burst; i++) log.Add(Message(log.Count + 1));
            await store.WriteAsync(3, log, durable);
            durable = log.Count;
        }

        var (view, loaded) = await new ReplicaLogStore(Open(), _grain, segmentSize: 4).LoadAsync();

        Assert.Equal(3, view);
        Assert.Equal(log.Select(m => m.Ui.Counter), loaded.Select(m => m.Ui.Counter));
    }

    [Fact]
    public async Task A_second_writer_with_a_stale_view_of_the_log_fails_instead_of_forking_it()
    {
        var first = new ReplicaLogStore(Open(), _grain, segmentSize: 4);
        var second = new ReplicaLogStore(Open(), _grain, segmentSize: 4);
        await first.LoadAsync();
        await second.LoadAsync();
        await first.WriteAsync(0, [Message(1)], 0);

        await Assert.ThrowsAsync<InconsistentStateException>(() => second.WriteAsync(0, [Message(1, digest: 9)], 0));

        var (_, loaded) = await new ReplicaLogStore(Open(), _grain, segmentSize: 4).LoadAsync();
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
