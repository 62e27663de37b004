using MinBft.Tests.Crypto;
using MinBft.Usig;
using Xunit.Abstractions;

namespace MinBft.Tests.Usig;

/// <summary>
/// The USIG program's counter file (<see cref="FileCounterStore"/>): a write torn at any byte
/// leaves the previous state readable, never a mix and never nothing; a file with no valid slot,
/// another replica's file or a missing file is refused rather than read as a fresh USIG.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class FileCounterStoreTests(ITestOutputHelper output) : IDisposable
{
    private const int SlotSize = 4096;
    private readonly string _directory = Directory.CreateTempSubdirectory("usig-file-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private string PathOf(string name) => Path.Combine(_directory, name);

    [Fact]
    public async Task A_write_torn_at_any_byte_leaves_the_previous_or_the_new_state_never_another()
    {
        var random = TestRandom.Create(output);
        var path = PathOf("usig.state");
        var previous = State(random, counter: 40, held: 40);
        var next = State(random, counter: 41, held: 41);
        using (var store = FileCounterStore.Open(path, 2, create: true))
        {
            await store.WriteAsync(State(random, counter: 39, held: 39), default); // sequence 1, slot 1
            await store.WriteAsync(previous, default);                             // sequence 2, slot 0
        }
        var before = await File.ReadAllBytesAsync(path);
        using (var store = FileCounterStore.Open(path, 2, create: false))
        {
            await store.ReadAsync(default);
            await store.WriteAsync(next, default);                                 // sequence 3, slot 1
        }
        var after = await File.ReadAllBytesAsync(path);
        Assert.True(before.AsSpan(0, SlotSize).SequenceEqual(after.AsSpan(0, SlotSize)), "the write left the newest slot alone");
        var payloadEnd = 38 + next.Recent.Length + 32; // header, digests, checksum

        // Cut the new slot's bytes at every point a crash could leave them (all of them near the
        // ends, a random sample in between), over the old slot's bytes or over zeros (file growth).
        var cuts = Enumerable.Range(0, 80).Concat(Enumerable.Range(payloadEnd - 80, 160)).Concat(Enumerable.Range(0, 200).Select(_ => random.Next(SlotSize + 1)))
            .Where(c => c >= 0 && c <= SlotSize).Distinct().Order().ToList();
        foreach (var cut in cuts)
        {
            var torn = before.ToArray();
            after.AsSpan(SlotSize, cut).CopyTo(torn.AsSpan(SlotSize));
            await File.WriteAllBytesAsync(path, torn);
            using var store = FileCounterStore.Open(path, 2, create: false);
            var read = (await store.ReadAsync(default))!;
            var expected = cut >= payloadEnd ? next : previous;
            Assert.True(expected.Counter == read.Counter && expected.Recent.AsSpan().SequenceEqual(read.Recent), $"cut at byte {cut}: read counter {read.Counter}, expected {expected.Counter}");
            Assert.Null(read.Inconsistency());
        }

        // A torn write that grew the file: the new slot half written after a file of one slot.
        var oneSlot = before.AsSpan(0, SlotSize).ToArray();
        await File.WriteAllBytesAsync(path, [.. oneSlot, .. after.AsSpan(SlotSize, 100)]);
        using (var store = FileCounterStore.Open(path, 2, create: false))
        {
            Assert.Equal(previous.Counter, (await store.ReadAsync(default))!.Counter);
            // Writing again after recovery goes over the damaged slot, and the newest state wins.
            await store.WriteAsync(next, default);
        }
        using (var store = FileCounterStore.Open(path, 2, create: false)) Assert.Equal(next.Counter, (await store.ReadAsync(default))!.Counter);
    }

    [Fact]
    public async Task No_valid_slot_is_an_error_never_a_fresh_counter()
    {
        var random = TestRandom.Create(output);
        var path = PathOf("usig.state");
        using (var store = FileCounterStore.Open(path, 0, create: true))
        {
            await store.WriteAsync(State(random, 5, 5), default);
            await store.WriteAsync(State(random, 6, 6), default);
        }
        var bytes = await File.ReadAllBytesAsync(path);
        bytes[100] ^= 1;
        bytes[SlotSize + 100] ^= 1;
        await File.WriteAllBytesAsync(path, bytes);
        using (var store = FileCounterStore.Open(path, 0, create: false))
            await Assert.ThrowsAsync<InvalidDataException>(() => store.ReadAsync(default));
        using (var store = FileCounterStore.Open(path, 0, create: false))
        {
            var core = new UsigCore(0, 1, new HmacUsigCertifier(random.Bytes(32)), store);
            await Assert.ThrowsAsync<InvalidDataException>(() => core.CreateUisAsync(7, [random.Bytes(32)], default));
        }
    }

    [Fact]
    public async Task A_missing_file_another_replicas_file_and_a_second_opener_are_refused()
    {
        var random = TestRandom.Create(output);
        Assert.Throws<UsigNotInitializedException>(() => FileCounterStore.Open(PathOf("absent"), 1, create: false));
        Assert.False(File.Exists(PathOf("absent")));

        var path = PathOf("usig.state");
        using (var store = FileCounterStore.Open(path, 1, create: true)) await store.WriteAsync(State(random, 2, 2), default);
        using (var foreign = FileCounterStore.Open(path, 2, create: false))
            await Assert.ThrowsAsync<InvalidDataException>(() => foreign.ReadAsync(default));

        // A second USIG process on the same counter file would fork it: the file is locked.
        using var first = FileCounterStore.Open(path, 1, create: false);
        Assert.ThrowsAny<IOException>(() => FileCounterStore.Open(path, 1, create: false));
        Assert.Equal(2UL, (await first.ReadAsync(default))!.Counter);
    }

    [Fact]
    public async Task A_state_survives_reopening_and_a_new_epoch_is_not_read_as_the_old_one()
    {
        var random = TestRandom.Create(output);
        var path = PathOf("usig.state");
        using (var store = FileCounterStore.Open(path, 1, create: true)) Assert.True(await UsigCore.InitializeAsync(store, 4, default));
        using (var store = FileCounterStore.Open(path, 1, create: false))
        {
            var core = new UsigCore(1, 4, new HmacUsigCertifier(random.Bytes(32)), store);
            await core.CreateUisAsync(1, [random.Bytes(32), random.Bytes(32)], default);
        }
        using (var store = FileCounterStore.Open(path, 1, create: false))
        {
            Assert.Equal((4UL, 2UL), ((await store.ReadAsync(default))!.Epoch, (await store.ReadAsync(default))!.Counter));
            // The same file under the next epoch's configuration is refused, not restarted.
            var rotated = new UsigCore(1, 5, new HmacUsigCertifier(random.Bytes(32)), store);
            await Assert.ThrowsAsync<UsigEpochMismatchException>(() => rotated.LoadAsync(default));
            // Initialising for an older epoch is refused; for the same one it does nothing.
            await Assert.ThrowsAsync<InvalidOperationException>(() => UsigCore.InitializeAsync(store, 3, default));
            Assert.False(await UsigCore.InitializeAsync(store, 4, default));
            Assert.Equal(2UL, (await store.ReadAsync(default))!.Counter);
        }
    }

    private static UsigState State(Random random, ulong counter, int held) =>
        new(1, counter, random.Bytes(Math.Min(held, UsigCore.RecentWindow) * 32));
}
