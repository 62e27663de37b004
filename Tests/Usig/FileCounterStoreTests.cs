using System.Buffers.Binary;
using System.Security.Cryptography;
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
        // Both states keep messages: a torn write must not mix the new slot's kept part with the old.
        var previous = State(random, counter: 40, held: 40, kept: 3);
        var next = State(random, counter: 41, held: 41, kept: 5);
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
        var payloadEnd = 38 + next.Recent.Length + 1 + next.KeptMessages.Sum(m => 2 + m.Length) + 32; // header, digests, kept, checksum

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
            // A cut short of the end whose missing bytes happen to equal the old slot's (the last
            // checksum byte matches one time in 256) is a complete write of the new state.
            var expected = torn.AsSpan(SlotSize, payloadEnd).SequenceEqual(after.AsSpan(SlotSize, payloadEnd)) ? next : previous;
            Assert.True(expected.Counter == read.Counter && expected.Recent.AsSpan().SequenceEqual(read.Recent), $"cut at byte {cut}: read counter {read.Counter}, expected {expected.Counter}");
            AssertSameKept(expected, read);
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

    [Fact]
    public async Task Kept_messages_are_in_the_same_slot_as_the_counter_and_a_fresh_usig_over_the_file_sees_them()
    {
        var random = TestRandom.Create(output);
        var path = PathOf("usig.state");
        var secret = random.Bytes(32);
        using (var store = FileCounterStore.Open(path, 1, create: true)) Assert.True(await UsigCore.InitializeAsync(store, 1, default));
        // The largest state the core writes: a full window of digests and a full batch keeping the
        // limit's bytes, some of them empty messages.
        var filler = Enumerable.Range(0, UsigCore.RecentWindow).Select(_ => random.Bytes(32)).ToArray();
        var digests = Enumerable.Range(0, UsigCore.MaxBatch).Select(_ => random.Bytes(32)).ToArray();
        var sizes = Enumerable.Range(0, UsigCore.MaxBatch).Select(i => i % 4 == 0 ? 0 : UsigCore.MaxKeptBytes / (UsigCore.MaxBatch * 3 / 4)).ToArray();
        var kept = sizes.Select(n => random.Bytes(n)).ToArray();
        Assert.Equal(UsigCore.MaxKeptBytes, kept.Sum(m => m.Length));
        using (var store = FileCounterStore.Open(path, 1, create: false))
        {
            var core = new UsigCore(1, 1, new HmacUsigCertifier(secret), store);
            await core.CreateUisAsync(1, Memory(filler[..32]), default);
            await core.CreateUisAsync(33, Memory(filler[32..]), default);
            await core.CreateUisAsync(65, Memory(digests), Memory(kept), default);
        }
        using (var store = FileCounterStore.Open(path, 1, create: false))
        {
            var loaded = await new UsigCore(1, 1, new HmacUsigCertifier(secret), store).LoadAsync(default);
            Assert.Equal(96UL, loaded.Counter);
            Assert.Equal(kept.Select(Convert.ToHexString), loaded.KeptMessages.Select(Convert.ToHexString));
            Assert.Equal(digests[^1], loaded.DigestAt(96).ToArray());
            Assert.Null(loaded.Inconsistency());
        }
        // The next batch that keeps none clears them, durably too.
        using (var store = FileCounterStore.Open(path, 1, create: false))
            await new UsigCore(1, 1, new HmacUsigCertifier(secret), store).CreateUisAsync(97, [random.Bytes(32)], default);
        using (var store = FileCounterStore.Open(path, 1, create: false))
        {
            var read = (await store.ReadAsync(default))!;
            Assert.Equal(97UL, read.Counter);
            Assert.Empty(read.KeptMessages);
        }
    }

    [Fact]
    public async Task A_format_1_file_still_reads_as_a_state_that_keeps_nothing_and_the_next_write_replaces_both_slots_with_format_2()
    {
        var random = TestRandom.Create(output);
        var path = PathOf("usig.state");
        var recent = random.Bytes(3 * 32);
        // What earlier builds wrote: sequence 1 in slot 1 (slot 0 never written), the checksum right
        // after the digests.
        var slot = Slot("MBUSIG01"u8, sequence: 1, replica: 1, epoch: 4, counter: 3, recent, keptPart: []);
        await File.WriteAllBytesAsync(path, [.. new byte[SlotSize], .. slot]);

        using (var store = FileCounterStore.Open(path, 1, create: false))
        {
            var read = (await store.ReadAsync(default))!;
            Assert.Equal((4UL, 3UL), (read.Epoch, read.Counter));
            Assert.Equal(recent, read.Recent);
            Assert.Empty(read.KeptMessages);
            var core = new UsigCore(1, 4, new HmacUsigCertifier(random.Bytes(32)), store);
            await core.CreateUisAsync(4, [random.Bytes(32)], [new byte[] { 9, 9 }], default);
        }
        // Both slots: an earlier build, which reads only format 1, must not find the older counter
        // in the slot left over (it would re-issue counter 4); it finds no valid slot and refuses.
        var bytes = await File.ReadAllBytesAsync(path);
        Assert.Equal("MBUSIG02"u8.ToArray(), bytes[..8]);
        Assert.Equal("MBUSIG02"u8.ToArray(), bytes[SlotSize..(SlotSize + 8)]);
        using (var store = FileCounterStore.Open(path, 1, create: false))
        {
            var read = (await store.ReadAsync(default))!;
            Assert.Equal(4UL, read.Counter);
            Assert.Equal(new byte[] { 9, 9 }, Assert.Single(read.KeptMessages));
        }
        // Written in order, each synced: the second (sequence 3, slot 1) damaged, the first holds the same state.
        bytes[SlotSize + 38 + 4 * 32 + 3] ^= 1;
        await File.WriteAllBytesAsync(path, bytes);
        using (var store = FileCounterStore.Open(path, 1, create: false))
        {
            var read = (await store.ReadAsync(default))!;
            Assert.Equal(4UL, read.Counter);
            Assert.Equal(new byte[] { 9, 9 }, Assert.Single(read.KeptMessages));
            // From then on one write per state, as before.
            await store.WriteAsync(read with { Counter = 5, Recent = [.. read.Recent, .. random.Bytes(32)], Kept = null }, default);
        }
        var final = await File.ReadAllBytesAsync(path);
        Assert.Equal(bytes[..SlotSize], final[..SlotSize]);

        // Torn in the middle of the first write over a format 1 file: the format 1 state, keeping nothing.
        await File.WriteAllBytesAsync(path, [.. Slot("MBUSIG02"u8, 2, 1, 4, 4, random.Bytes(4 * 32), [1, 0])[..200], .. new byte[SlotSize - 200], .. slot]);
        using (var store = FileCounterStore.Open(path, 1, create: false))
        {
            var read = (await store.ReadAsync(default))!;
            Assert.Equal(3UL, read.Counter);
            Assert.Empty(read.KeptMessages);
        }
    }

    public static TheoryData<string, int, int[]> MalformedKeptParts() => new()
    {
        // what, digests in the slot, kept message lengths (-1: a length field of 0xFFFF, past the slot)
        { "more kept messages than digests", 2, [1, 1, 1] },
        { "more kept messages than a batch", 40, Enumerable.Repeat(1, UsigCore.MaxBatch + 1).ToArray() },
        { "more kept bytes than the limit", 4, [UsigCore.MaxKeptBytes, 1] },
        { "a length past the slot", 4, [3, -1] },
    };

    [Theory]
    [MemberData(nameof(MalformedKeptParts))]
    public async Task A_newest_slot_whose_kept_part_is_malformed_is_invalid_and_the_other_slot_is_read_with_its_own(string what, int digests, int[] lengths)
    {
        var random = TestRandom.Create(output);
        var path = PathOf("usig.state");
        var olderKept = new[] { random.Bytes(5), random.Bytes(7) };
        var older = Slot("MBUSIG02"u8, 1, 1, 4, 2, random.Bytes(2 * 32), KeptPart(olderKept.Select(m => (m.Length, m)).ToArray()));
        var good = lengths.Select(n => n < 0 ? (0xFFFF, Array.Empty<byte>()) : (n, random.Bytes(n))).ToArray();
        var newer = Slot("MBUSIG02"u8, 2, 1, 4, (ulong)digests + 2, random.Bytes(digests * 32), KeptPart(good));
        // The same newer slot with a well-formed kept part reads as itself: what follows fails for the kept part alone.
        var wellFormed = Slot("MBUSIG02"u8, 2, 1, 4, (ulong)digests + 2, random.Bytes(digests * 32), KeptPart([(1, [7])]));
        await File.WriteAllBytesAsync(path, [.. wellFormed, .. older]);
        using (var store = FileCounterStore.Open(path, 1, create: false)) Assert.Equal((ulong)digests + 2, (await store.ReadAsync(default))!.Counter);

        await File.WriteAllBytesAsync(path, [.. newer, .. older]);
        using var reopened = FileCounterStore.Open(path, 1, create: false);
        var read = (await reopened.ReadAsync(default))!;
        Assert.True(read.Counter == 2, $"{what}: read counter {read.Counter}, expected the older slot's 2");
        Assert.Equal(olderKept.Select(Convert.ToHexString), read.KeptMessages.Select(Convert.ToHexString));
    }

    [Fact]
    public async Task A_state_that_would_not_fit_a_slot_is_refused_and_nothing_is_written()
    {
        var random = TestRandom.Create(output);
        var path = PathOf("usig.state");
        var held = State(random, counter: 70, held: 64, kept: 2);
        using (var store = FileCounterStore.Open(path, 1, create: true)) await store.WriteAsync(held, default);
        var before = await File.ReadAllBytesAsync(path);
        using (var store = FileCounterStore.Open(path, 1, create: false))
        {
            await store.ReadAsync(default);
            // 38 + 2048 + 1 + 2 × (2 + 1000) + 32 bytes: over 4096 (the core's limit would refuse it earlier).
            var tooBig = new UsigState(1, 71, random.Bytes(64 * 32), [random.Bytes(1000), random.Bytes(1000)]);
            await Assert.ThrowsAsync<ArgumentException>(() => store.WriteAsync(tooBig, default));
            await Assert.ThrowsAsync<ArgumentException>(() => store.WriteAsync(new UsigState(1, 71, random.Bytes(31)), default));
        }
        Assert.Equal(before, await File.ReadAllBytesAsync(path));
        using var reopened = FileCounterStore.Open(path, 1, create: false);
        var read = (await reopened.ReadAsync(default))!;
        Assert.Equal(70UL, read.Counter);
        AssertSameKept(held, read);
    }

    // One slot as FileCounterStore lays it out, written here by hand so that the format is pinned by
    // the test and not only by the code under test.
    private static byte[] Slot(ReadOnlySpan<byte> magic, ulong sequence, int replica, ulong epoch, ulong counter, byte[] recent, byte[] keptPart)
    {
        var slot = new byte[SlotSize];
        magic.CopyTo(slot);
        BinaryPrimitives.WriteUInt64BigEndian(slot.AsSpan(8), sequence);
        BinaryPrimitives.WriteInt32BigEndian(slot.AsSpan(16), replica);
        BinaryPrimitives.WriteUInt64BigEndian(slot.AsSpan(20), epoch);
        BinaryPrimitives.WriteUInt64BigEndian(slot.AsSpan(28), counter);
        BinaryPrimitives.WriteUInt16BigEndian(slot.AsSpan(36), (ushort)(recent.Length / 32));
        recent.CopyTo(slot, 38);
        var end = 38 + recent.Length + keptPart.Length;
        keptPart.CopyTo(slot, 38 + recent.Length);
        // A kept part that claims more than the slot holds has no place for a checksum: none written.
        if (end + 32 <= SlotSize) SHA256.HashData(slot.AsSpan(0, end), slot.AsSpan(end));
        return slot;
    }

    private static byte[] KeptPart((int Length, byte[] Bytes)[] messages)
    {
        var part = new List<byte> { (byte)messages.Length };
        foreach (var (length, bytes) in messages)
        {
            part.Add((byte)(length >> 8));
            part.Add((byte)length);
            part.AddRange(bytes);
        }
        return [.. part];
    }

    private static ReadOnlyMemory<byte>[] Memory(byte[][] items) => items.Select(m => (ReadOnlyMemory<byte>)m).ToArray();

    private static UsigState State(Random random, ulong counter, int held, int kept = 0) =>
        new(1, counter, random.Bytes(Math.Min(held, UsigCore.RecentWindow) * 32),
            kept == 0 ? null : Enumerable.Range(0, kept).Select(_ => random.Bytes(random.Next(UsigCore.MaxKeptBytes / kept + 1))).ToArray());

    private static void AssertSameKept(UsigState expected, UsigState actual) =>
        Assert.Equal(expected.KeptMessages.Select(Convert.ToHexString), actual.KeptMessages.Select(Convert.ToHexString));
}
