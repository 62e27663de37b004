using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using MinBft.Hosting;
using Orleans;
using Orleans.Runtime;
using Orleans.Serialization;
using Orleans.Serialization.Serializers;
using Orleans.Storage;

namespace MinBft.Tests.Hosting;

public sealed class SqliteGrainStorageTests : IDisposable
{
    private const string StateName = "usig";

    private static readonly ServiceProvider SerializerServices = new ServiceCollection().AddSerializer().BuildServiceProvider();

    private readonly string _directory = Path.Combine(Path.GetTempPath(), "minbft-storage-" + Guid.NewGuid().ToString("N"));
    private readonly List<SqliteGrainStorage> _storages = [];
    private readonly GrainId _grain = GrainId.Create("usig", "1");

    public void Dispose()
    {
        foreach (var storage in _storages)
        {
            storage.Dispose();
        }

        if (Directory.Exists(_directory))
        {
            Directory.Delete(_directory, recursive: true);
        }
    }

    [Fact]
    public async Task Write_then_read_round_trips_state_and_etag()
    {
        var storage = Open(faultDomain: 0);
        var written = new GrainState<ProbeState>(new ProbeState { Visits = 7 });

        await storage.WriteStateAsync(StateName, _grain, written);

        Assert.True(written.RecordExists);
        Assert.NotNull(written.ETag);
        var read = await ReadAsync(storage);
        Assert.True(read.RecordExists);
        Assert.Equal(7, read.State!.Visits);
        Assert.Equal(written.ETag, read.ETag);
    }

    [Fact]
    public async Task Reading_a_missing_state_gives_an_empty_state_without_record_or_etag()
    {
        var storage = Open(faultDomain: 0);

        var read = await ReadAsync(storage);

        Assert.False(read.RecordExists);
        Assert.Null(read.ETag);
        Assert.Equal(0, read.State!.Visits);
    }

    [Fact]
    public async Task Etags_increase_with_every_write()
    {
        var storage = Open(faultDomain: 0);
        var state = new GrainState<ProbeState>(new ProbeState());
        var versions = new List<long>();
        for (var i = 0; i < 3; i++)
        {
            state.State!.Visits = i;
            await storage.WriteStateAsync(StateName, _grain, state);
            versions.Add(long.Parse(state.ETag!, System.Globalization.CultureInfo.InvariantCulture));
        }

        Assert.Equal([1, 2, 3], versions);
    }

    [Fact]
    public async Task Write_with_a_stale_etag_throws_and_leaves_the_stored_state_unchanged()
    {
        var storage = Open(faultDomain: 0);
        var first = new GrainState<ProbeState>(new ProbeState { Visits = 1 });
        await storage.WriteStateAsync(StateName, _grain, first);
        var staleETag = first.ETag;
        first.State!.Visits = 2;
        await storage.WriteStateAsync(StateName, _grain, first);

        var stale = new GrainState<ProbeState>(new ProbeState { Visits = 99 }) { ETag = staleETag, RecordExists = true };
        var exception = await Assert.ThrowsAsync<InconsistentStateException>(() => storage.WriteStateAsync(StateName, _grain, stale));

        Assert.Equal(first.ETag, exception.StoredEtag);
        Assert.Equal(staleETag, exception.CurrentEtag);
        Assert.Equal(staleETag, stale.ETag);
        var read = await ReadAsync(storage);
        Assert.Equal(2, read.State!.Visits);
        Assert.Equal(first.ETag, read.ETag);
    }

    [Fact]
    public async Task Write_without_etag_over_an_existing_row_throws()
    {
        var storage = Open(faultDomain: 0);
        await storage.WriteStateAsync(StateName, _grain, new GrainState<ProbeState>(new ProbeState { Visits = 1 }));

        var blind = new GrainState<ProbeState>(new ProbeState { Visits = 99 });
        await Assert.ThrowsAsync<InconsistentStateException>(() => storage.WriteStateAsync(StateName, _grain, blind));

        Assert.Equal(1, (await ReadAsync(storage)).State!.Visits);
    }

    [Theory]
    [InlineData("1")]
    [InlineData("not-a-version")]
    public async Task Write_with_an_etag_when_no_row_exists_throws(string etag)
    {
        var storage = Open(faultDomain: 0);

        var state = new GrainState<ProbeState>(new ProbeState { Visits = 1 }) { ETag = etag };
        await Assert.ThrowsAsync<InconsistentStateException>(() => storage.WriteStateAsync(StateName, _grain, state));

        Assert.False((await ReadAsync(storage)).RecordExists);
    }

    [Fact]
    public async Task Two_instances_on_one_file_let_only_one_write_from_the_same_etag_win()
    {
        // Two provider instances on the same file stand for two activations of one USIG on two
        // silos of the same fault domain (Orleans may briefly run both).
        var storageA = Open(faultDomain: 0);
        var storageB = Open(faultDomain: 0);
        Assert.Equal(storageA.DatabasePath, storageB.DatabasePath);
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

    [Fact]
    public async Task State_survives_closing_and_reopening_the_file()
    {
        var storage = Open(faultDomain: 2);
        var state = new GrainState<ProbeState>(new ProbeState { Visits = 42 });
        await storage.WriteStateAsync(StateName, _grain, state);
        storage.Dispose();

        var reopened = Open(faultDomain: 2);
        var read = await ReadAsync(reopened);

        Assert.True(read.RecordExists);
        Assert.Equal(42, read.State!.Visits);
        Assert.Equal(state.ETag, read.ETag);
    }

    [Fact]
    public async Task Clear_honours_the_etag_and_versions_keep_increasing_afterwards()
    {
        var storage = Open(faultDomain: 0);
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
        Assert.Equal(0, state.State!.Visits);
        var cleared = await ReadAsync(storage);
        Assert.False(cleared.RecordExists);
        Assert.Equal(state.ETag, cleared.ETag);

        // An activation that read before the clear must not be able to write over it, even
        // though its old ETag would have matched a restarted version counter.
        var old = new GrainState<ProbeState>(new ProbeState { Visits = 99 }) { ETag = beforeClear, RecordExists = true };
        await Assert.ThrowsAsync<InconsistentStateException>(() => storage.WriteStateAsync(StateName, _grain, old));

        cleared.State!.Visits = 5;
        await storage.WriteStateAsync(StateName, _grain, cleared);
        Assert.Equal("4", cleared.ETag);
        Assert.Equal(5, (await ReadAsync(storage)).State!.Visits);
    }

    [Fact]
    public async Task Clear_without_etag_of_a_missing_state_succeeds()
    {
        var storage = Open(faultDomain: 0);
        var state = new GrainState<ProbeState>(new ProbeState { Visits = 3 });

        await storage.ClearStateAsync(StateName, _grain, state);

        Assert.False(state.RecordExists);
        Assert.Null(state.ETag);
        Assert.False((await ReadAsync(storage)).RecordExists);
    }

    [Fact]
    public async Task Grain_ids_state_names_and_grain_types_are_separate_rows()
    {
        var storage = Open(faultDomain: 0);
        var keys = new (GrainId Grain, string StateName)[]
        {
            (GrainId.Create("usig", "1"), "a"),
            (GrainId.Create("usig", "1"), "b"),
            (GrainId.Create("usig", "2"), "a"),
            (GrainId.Create("replica", "1"), "a"),
        };
        for (var i = 0; i < keys.Length; i++)
        {
            await storage.WriteStateAsync(keys[i].StateName, keys[i].Grain, new GrainState<ProbeState>(new ProbeState { Visits = i + 1 }));
        }

        for (var i = 0; i < keys.Length; i++)
        {
            var read = new GrainState<ProbeState>(new ProbeState());
            await storage.ReadStateAsync(keys[i].StateName, keys[i].Grain, read);
            Assert.Equal(i + 1, read.State!.Visits);
            Assert.Equal("1", read.ETag);
        }
    }

    [Fact]
    public async Task Fault_domains_use_separate_files()
    {
        var domain0 = Open(faultDomain: 0);
        var domain1 = Open(faultDomain: 1);

        await domain0.WriteStateAsync(StateName, _grain, new GrainState<ProbeState>(new ProbeState { Visits = 1 }));

        Assert.NotEqual(domain0.DatabasePath, domain1.DatabasePath);
        Assert.Contains("domain-0", Path.GetFileName(domain0.DatabasePath), StringComparison.Ordinal);
        Assert.Contains("domain-1", Path.GetFileName(domain1.DatabasePath), StringComparison.Ordinal);
        Assert.True(File.Exists(domain0.DatabasePath));
        Assert.False((await ReadAsync(domain1)).RecordExists);
        Assert.True(File.Exists(domain1.DatabasePath));
    }

    [Fact]
    public async Task The_file_is_in_wal_mode()
    {
        var storage = Open(faultDomain: 0);
        await storage.WriteStateAsync(StateName, _grain, new GrainState<ProbeState>(new ProbeState { Visits = 1 }));

        // journal_mode=WAL is persistent in the file, so a second connection sees it.
        using var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = storage.DatabasePath, Pooling = false }.ToString());
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "PRAGMA journal_mode";
        Assert.Equal("wal", command.ExecuteScalar() as string);
    }

    [Fact]
    public void A_store_without_a_fault_domain_is_refused()
    {
        var options = new SqliteGrainStorageOptions { DataDirectory = _directory };

        Assert.Throws<OrleansConfigurationException>(() => Create(options));
    }

    private SqliteGrainStorage Open(int faultDomain) =>
        Create(new SqliteGrainStorageOptions { DataDirectory = _directory, FaultDomain = faultDomain });

    private SqliteGrainStorage Create(SqliteGrainStorageOptions options)
    {
        var storage = new SqliteGrainStorage(
            "minbft",
            options,
            new OrleansGrainStorageSerializer(SerializerServices.GetRequiredService<Serializer>()),
            SerializerServices.GetRequiredService<IActivatorProvider>(),
            NullLogger<SqliteGrainStorage>.Instance);
        _storages.Add(storage);
        return storage;
    }

    private async Task<GrainState<ProbeState>> ReadAsync(SqliteGrainStorage storage)
    {
        var state = new GrainState<ProbeState>(new ProbeState { Visits = -1 });
        await storage.ReadStateAsync(StateName, _grain, state);
        return state;
    }
}
