using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using MinBft.Hosting;
using MinBft.Messages;
using MinBft.Tests.Integration;
using Orleans;
using Orleans.Configuration;
using Orleans.Persistence;
using Orleans.Runtime;
using Orleans.Serialization;
using Orleans.Serialization.Serializers;
using Orleans.Storage;
using StackExchange.Redis;

namespace MinBft.Tests.Hosting;

/// <summary>One Redis server for the storage tests: MINBFT_REDIS, or one started for them.</summary>
public sealed class RedisStorageFixture : IDisposable
{
    private readonly RedisTestServer? _owned;

    public RedisStorageFixture()
    {
        if (RedisTestEnvironment.MissingAnyServer is not null) return; // the tests skip, or fail under CI
        ConnectionString = RedisTestEnvironment.SharedServer(out _owned);
    }

    public string? ConnectionString { get; }

    public void Dispose() => _owned?.Dispose();
}

/// <summary>
/// The Orleans Redis grain storage as MinBFT configures it (<see cref="MinBftRedisExtensions.ConfigureStorage"/>):
/// the ETag rules the USIG and the replica's sent log rely on hold as on the SQLite store:
/// a stale ETag throws <see cref="InconsistentStateException"/> and changes nothing.
/// </summary>
public sealed class RedisGrainStorageTests(RedisStorageFixture fixture) : IClassFixture<RedisStorageFixture>, IAsyncLifetime
{
    private const string StateName = "usig";

    private static readonly ServiceProvider SerializerServices = new ServiceCollection().AddSerializer().BuildServiceProvider();

    // Every test its own key space on a possibly shared server.
    private readonly string _serviceId = "minbft-storage-test-" + Guid.NewGuid().ToString("N");
    private readonly List<ILifecycleObserver> _opened = [];
    private readonly GrainId _grain = GrainId.Create("usig", "1");

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var observer in _opened) await observer.OnStop(CancellationToken.None);
        if (fixture.ConnectionString is { } connection)
        {
            // Leave nothing behind on a shared server.
            using var redis = await ConnectionMultiplexer.ConnectAsync(connection);
            var server = redis.GetServer(redis.GetEndPoints()[0]);
            var database = redis.GetDatabase();
            await foreach (var key in server.KeysAsync(pattern: _serviceId + "/*")) await database.KeyDeleteAsync(key);
        }
    }

    [RedisFact]
    public async Task Write_then_read_round_trips_state_and_etag()
    {
        var storage = await OpenAsync();
        var written = new GrainState<ProbeState>(new ProbeState { Visits = 7 });

        await storage.WriteStateAsync(StateName, _grain, written);

        Assert.True(written.RecordExists);
        Assert.False(string.IsNullOrEmpty(written.ETag));
        var read = await ReadAsync(storage);
        Assert.True(read.RecordExists);
        Assert.Equal(7, read.State!.Visits);
        Assert.Equal(written.ETag, read.ETag);
    }

    [RedisFact]
    public async Task Reading_a_missing_state_gives_an_empty_state_without_record_or_etag()
    {
        var read = await ReadAsync(await OpenAsync());

        Assert.False(read.RecordExists);
        Assert.True(string.IsNullOrEmpty(read.ETag));
        Assert.Equal(0, read.State!.Visits);
    }

    [RedisFact]
    public async Task Write_with_a_stale_etag_throws_inconsistent_state_and_leaves_the_stored_state_unchanged()
    {
        var storage = await OpenAsync();
        var first = new GrainState<ProbeState>(new ProbeState { Visits = 1 });
        await storage.WriteStateAsync(StateName, _grain, first);
        var staleETag = first.ETag;
        first.State!.Visits = 2;
        await storage.WriteStateAsync(StateName, _grain, first);
        Assert.NotEqual(staleETag, first.ETag);

        var stale = new GrainState<ProbeState>(new ProbeState { Visits = 99 }) { ETag = staleETag, RecordExists = true };
        await Assert.ThrowsAsync<InconsistentStateException>(() => storage.WriteStateAsync(StateName, _grain, stale));

        var read = await ReadAsync(storage);
        Assert.Equal(2, read.State!.Visits);
        Assert.Equal(first.ETag, read.ETag);
    }

    [RedisFact]
    public async Task Write_without_etag_over_an_existing_record_throws()
    {
        var storage = await OpenAsync();
        await storage.WriteStateAsync(StateName, _grain, new GrainState<ProbeState>(new ProbeState { Visits = 1 }));

        var blind = new GrainState<ProbeState>(new ProbeState { Visits = 99 });
        await Assert.ThrowsAsync<InconsistentStateException>(() => storage.WriteStateAsync(StateName, _grain, blind));

        Assert.Equal(1, (await ReadAsync(storage)).State!.Visits);
    }

    [RedisFact]
    public async Task Write_with_an_etag_when_no_record_exists_throws()
    {
        var storage = await OpenAsync();

        var state = new GrainState<ProbeState>(new ProbeState { Visits = 1 }) { ETag = "1" };
        await Assert.ThrowsAsync<InconsistentStateException>(() => storage.WriteStateAsync(StateName, _grain, state));

        Assert.False((await ReadAsync(storage)).RecordExists);
    }

    [RedisFact]
    public async Task Two_providers_on_one_server_let_only_one_write_from_the_same_etag_win()
    {
        // Two provider instances stand for two activations of one USIG on two silos of the same
        // fault domain (Orleans may briefly run both).
        var storageA = await OpenAsync();
        var storageB = await OpenAsync();
        await storageA.WriteStateAsync(StateName, _grain, new GrainState<ProbeState>(new ProbeState { Visits = 10 }));

        for (var round = 0; round < 20; round++)
        {
            var baseState = await ReadAsync(storageA);
            var a = new GrainState<ProbeState>(new ProbeState { Visits = 1000 + round }) { ETag = baseState.ETag, RecordExists = true };
            var b = new GrainState<ProbeState>(new ProbeState { Visits = 2000 + round }) { ETag = baseState.ETag, RecordExists = true };

            var writes = new[]
            {
                Task.Run(() => storageA.WriteStateAsync(StateName, _grain, a)),
                Task.Run(() => storageB.WriteStateAsync(StateName, _grain, b)),
            };
            await Task.WhenAll(writes.Select(w => w.ContinueWith(_ => { }, TaskScheduler.Default)));

            Assert.Equal(1, writes.Count(w => w.IsCompletedSuccessfully));
            var failure = writes.Single(w => !w.IsCompletedSuccessfully);
            Assert.IsType<InconsistentStateException>(failure.Exception?.InnerException);

            var winner = writes[0].IsCompletedSuccessfully ? a : b;
            var stored = await ReadAsync(storageB);
            Assert.Equal(winner.State!.Visits, stored.State!.Visits);
            Assert.Equal(winner.ETag, stored.ETag);
        }
    }

    [RedisFact]
    public async Task Clear_honours_the_etag_and_leaves_a_tombstone_that_a_stale_or_blind_writer_cannot_overwrite()
    {
        var storage = await OpenAsync();
        var state = new GrainState<ProbeState>(new ProbeState { Visits = 1 });
        await storage.WriteStateAsync(StateName, _grain, state);
        var beforeClear = state.ETag;
        state.State!.Visits = 2;
        await storage.WriteStateAsync(StateName, _grain, state);

        var stale = new GrainState<ProbeState>(new ProbeState()) { ETag = beforeClear, RecordExists = true };
        await Assert.ThrowsAsync<InconsistentStateException>(() => storage.ClearStateAsync(StateName, _grain, stale));
        var blind = new GrainState<ProbeState>(new ProbeState());
        await Assert.ThrowsAsync<InconsistentStateException>(() => storage.ClearStateAsync(StateName, _grain, blind));
        Assert.Equal(2, (await ReadAsync(storage)).State!.Visits);

        await storage.ClearStateAsync(StateName, _grain, state);
        Assert.False(state.RecordExists);

        // Neither an activation that read before the clear nor one that read before the record
        // existed (no ETag) can write over the cleared record.
        var old = new GrainState<ProbeState>(new ProbeState { Visits = 99 }) { ETag = beforeClear, RecordExists = true };
        await Assert.ThrowsAsync<InconsistentStateException>(() => storage.WriteStateAsync(StateName, _grain, old));
        var fromNothing = new GrainState<ProbeState>(new ProbeState { Visits = 98 });
        await Assert.ThrowsAsync<InconsistentStateException>(() => storage.WriteStateAsync(StateName, _grain, fromNothing));

        // The writer that cleared goes on from its ETag.
        state.State = new ProbeState { Visits = 5 };
        await storage.WriteStateAsync(StateName, _grain, state);
        Assert.Equal(5, (await ReadAsync(storage)).State!.Visits);
    }

    [RedisFact]
    public async Task State_names_and_grain_ids_are_separate_records()
    {
        var storage = await OpenAsync();
        var keys = new (GrainId Grain, string StateName)[]
        {
            (GrainId.Create("usig", "1"), "a"),
            (GrainId.Create("usig", "1"), "b"),
            (GrainId.Create("usig", "2"), "a"),
            (GrainId.Create("replica", "1"), "a"),
        };
        for (var i = 0; i < keys.Length; i++)
            await storage.WriteStateAsync(keys[i].StateName, keys[i].Grain, new GrainState<ProbeState>(new ProbeState { Visits = i + 1 }));

        for (var i = 0; i < keys.Length; i++)
        {
            var read = new GrainState<ProbeState>(new ProbeState());
            await storage.ReadStateAsync(keys[i].StateName, keys[i].Grain, read);
            Assert.Equal(i + 1, read.State!.Visits);
        }
    }

    private async Task<GrainState<ProbeState>> ReadAsync(IGrainStorage storage)
    {
        var state = new GrainState<ProbeState>(new ProbeState());
        await storage.ReadStateAsync(StateName, _grain, state);
        return state;
    }

    /// <summary>A provider configured as the silo configures it, started through its lifecycle participation.</summary>
    private async Task<IGrainStorage> OpenAsync()
    {
        RedisTestEnvironment.Require(RedisTestEnvironment.MissingAnyServer);
        var options = new RedisStorageOptions();
        MinBftRedisExtensions.ConfigureStorage(
            options,
            RedisConnection.Parse(fixture.ConnectionString, RedisTestEnvironment.EndpointVariable),
            SerializerServices.GetRequiredService<Serializer>());
        var storage = new RedisGrainStorage(
            "minbft",
            options,
            options.GrainStorageSerializer,
            Options.Create(new ClusterOptions { ServiceId = _serviceId, ClusterId = "test" }),
            SerializerServices.GetRequiredService<IActivatorProvider>(),
            NullLogger<RedisGrainStorage>.Instance);
        var lifecycle = new StartOnlyLifecycle();
        ((ILifecycleParticipant<ISiloLifecycle>)storage).Participate(lifecycle);
        foreach (var observer in lifecycle.Observers)
        {
            await observer.OnStart(CancellationToken.None);
            _opened.Add(observer);
        }
        return storage;
    }

    /// <summary>Collects the observers a provider subscribes, for the test to start and stop.</summary>
    private sealed class StartOnlyLifecycle : ISiloLifecycle
    {
        public List<ILifecycleObserver> Observers { get; } = [];

        public int HighestCompletedStage => ServiceLifecycleStage.Active;

        public int LowestStoppedStage => ServiceLifecycleStage.Active;

        public IDisposable Subscribe(string observerName, int stage, ILifecycleObserver observer)
        {
            Observers.Add(observer);
            return new Unsubscriber();
        }

        private sealed class Unsubscriber : IDisposable
        {
            public void Dispose()
            {
            }
        }
    }
}
