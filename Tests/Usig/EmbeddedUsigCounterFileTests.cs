using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using MinBft.Hosting;
using MinBft.Usig;
using Orleans.Runtime;
using Orleans.Serialization;
using Orleans.Serialization.Serializers;
using Orleans.Storage;

namespace MinBft.Tests.Usig;

/// <summary>
/// The in-process USIG's counter file with embedded storage (<see cref="EmbeddedUsigCounterFile"/>):
/// a counter an earlier build kept in grain storage moves into the file with every counter and
/// digest it had, exactly once; afterwards grain storage can never hand that counter back, so a
/// lost file stops the USIG instead of rolling it back.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class EmbeddedUsigCounterFileTests : IDisposable
{
    private const int Replica = 1;
    private static readonly ServiceProvider SerializerServices = new ServiceCollection().AddSerializer().BuildServiceProvider();

    private readonly string _directory = Directory.CreateTempSubdirectory("usig-embedded-").FullName;
    private readonly SqliteGrainStorage _storage;
    private readonly GrainId _grain = GrainId.Create("usig", "1");

    public EmbeddedUsigCounterFileTests() =>
        _storage = new SqliteGrainStorage("minbft", new SqliteGrainStorageOptions { DataDirectory = _directory, FaultDomain = Replica },
            new OrleansGrainStorageSerializer(SerializerServices.GetRequiredService<Serializer>()),
            SerializerServices.GetRequiredService<IActivatorProvider>(), NullLogger<SqliteGrainStorage>.Instance);

    public void Dispose()
    {
        _storage.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    private string CounterPath => EmbeddedUsigCounterFile.PathFor(_directory, Replica);

    private GrainStorageCounterStore GrainStore() => new(_storage, _grain);

    private static UsigState Issued(ulong counter) =>
        new(3, counter, [.. Enumerable.Range(0, (int)counter).SelectMany(i => Enumerable.Repeat((byte)i, UsigCertificateInput.DigestLength))]);

    [Fact]
    public async Task A_counter_kept_in_grain_storage_moves_into_the_file_and_grain_storage_is_marked()
    {
        await GrainStore().WriteAsync(Issued(5), default);

        using (var file = await EmbeddedUsigCounterFile.OpenAsync(CounterPath, Replica, GrainStore(), initializing: false))
        {
            var moved = await file.ReadAsync(default);
            Assert.NotNull(moved);
            Assert.Equal((3UL, 5UL), (moved.Epoch, moved.Counter));
            Assert.Equal(Issued(5).Recent, moved.Recent);
        }

        var stored = await GrainStore().ReadStoredAsync();
        Assert.True(stored.MovedToFile);
        Assert.Null(stored.Usig);
        // Nothing can read the stale copy as a counter any more.
        await Assert.ThrowsAsync<InvalidDataException>(() => GrainStore().ReadAsync(default));
        Assert.False(File.Exists(CounterPath + ".new"));
    }

    [Fact]
    public async Task Grain_storage_keeps_the_kept_messages_with_the_counter_and_they_move_into_the_file_with_it()
    {
        byte[][] kept = [[1, 2, 3], [], [4]];
        var usig = new UsigCore(Replica, 3, new HmacUsigCertifier(new byte[32]), GrainStore());
        await UsigCore.InitializeAsync(GrainStore(), 3, default);
        await usig.CreateUisAsync(1, [new byte[32], new byte[32], new byte[32]], kept.Select(m => (ReadOnlyMemory<byte>)m).ToArray(), default);
        // The grain storage path (Redis in a deployment): a fresh store over the same storage reads them.
        Assert.Equal(kept, (await GrainStore().ReadAsync(default))!.KeptMessages);

        using var file = await EmbeddedUsigCounterFile.OpenAsync(CounterPath, Replica, GrainStore(), initializing: false);
        var moved = (await file.ReadAsync(default))!;
        Assert.Equal(3UL, moved.Counter);
        Assert.Equal(kept, moved.KeptMessages);
    }

    [Fact]
    public async Task Once_moved_the_file_is_the_counter_and_goes_on_from_where_it_is()
    {
        await GrainStore().WriteAsync(Issued(5), default);
        using (var file = await EmbeddedUsigCounterFile.OpenAsync(CounterPath, Replica, GrainStore(), initializing: false))
        {
            await file.ReadAsync(default);
            await file.WriteAsync(Issued(9), default);
        }

        using var reopened = await EmbeddedUsigCounterFile.OpenAsync(CounterPath, Replica, GrainStore(), initializing: false);

        Assert.Equal(9UL, (await reopened.ReadAsync(default))!.Counter);
    }

    [Fact]
    public async Task A_lost_file_after_the_move_stops_the_usig_rather_than_rolling_it_back()
    {
        await GrainStore().WriteAsync(Issued(5), default);
        (await EmbeddedUsigCounterFile.OpenAsync(CounterPath, Replica, GrainStore(), initializing: false)).Dispose();
        File.Delete(CounterPath);

        var refused = await Assert.ThrowsAsync<InvalidDataException>(() => EmbeddedUsigCounterFile.OpenAsync(CounterPath, Replica, GrainStore(), initializing: false));

        Assert.Contains("new epoch", refused.Message);
        Assert.False(File.Exists(CounterPath));
        // Only the operator's explicit initialisation (a new epoch) opens a fresh file, and it is empty.
        using var fresh = await EmbeddedUsigCounterFile.OpenAsync(CounterPath, Replica, GrainStore(), initializing: true);
        Assert.Null(await fresh.ReadAsync(default));
    }

    [Fact]
    public async Task A_crash_after_the_move_before_grain_storage_was_marked_keeps_the_file()
    {
        // The file already holds a newer counter; grain storage still has the old one, unmarked.
        await GrainStore().WriteAsync(Issued(5), default);
        FileCounterStore.CreateHolding(CounterPath, Replica, Issued(7));

        using var file = await EmbeddedUsigCounterFile.OpenAsync(CounterPath, Replica, GrainStore(), initializing: false);

        Assert.Equal(7UL, (await file.ReadAsync(default))!.Counter);
        Assert.True((await GrainStore().ReadStoredAsync()).MovedToFile);
    }

    [Fact]
    public async Task A_new_domain_gets_an_empty_file_that_needs_initialising()
    {
        using var file = await EmbeddedUsigCounterFile.OpenAsync(CounterPath, Replica, GrainStore(), initializing: false);

        Assert.True(File.Exists(CounterPath));
        Assert.Null(await file.ReadAsync(default));
        Assert.False((await GrainStore().ReadStoredAsync()).MovedToFile);
        // The USIG refuses a state it never initialised (UsigCore.LoadAsync), as with grain storage.
        Assert.True(await UsigCore.InitializeAsync(file, 3, default));
        Assert.Equal(0UL, (await file.ReadAsync(default))!.Counter);
    }

    [Fact]
    public async Task The_running_usig_holds_the_file_so_a_second_opener_fails()
    {
        using var first = await EmbeddedUsigCounterFile.OpenAsync(CounterPath, Replica, GrainStore(), initializing: true);

        await Assert.ThrowsAnyAsync<IOException>(() => EmbeddedUsigCounterFile.OpenAsync(CounterPath, Replica, GrainStore(), initializing: false));
    }

    [Fact]
    public async Task A_counter_file_is_created_whole_and_never_replaced()
    {
        FileCounterStore.CreateHolding(CounterPath, Replica, Issued(2));

        Assert.Throws<IOException>(() => FileCounterStore.CreateHolding(CounterPath, Replica, Issued(1)));
        using var file = FileCounterStore.Open(CounterPath, Replica, create: false);
        Assert.Equal(2UL, (await file.ReadAsync(default))!.Counter);
    }
}
