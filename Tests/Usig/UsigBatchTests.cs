using MinBft.Messages;
using MinBft.Tests.Crypto;
using MinBft.Usig;
using Xunit.Abstractions;
using static MinBft.Tests.Usig.UsigTestKit;

namespace MinBft.Tests.Usig;

/// <summary>
/// CreateUIs: the USIG certifies a batch of digests at consecutive counters with one durable
/// write. Every property of a single issue holds for a batch, and a batch is all or nothing.
/// </summary>
public sealed class UsigBatchTests(ITestOutputHelper output)
{
    private const int ReplicaId = 2;
    private const ulong Epoch = 3;

    private static async Task<IReadOnlyList<UniqueIdentifier>> Batch(UsigCore usig, ulong first, IEnumerable<byte[]> digests) =>
        (await usig.CreateUisAsync(first, digests.Select(d => (ReadOnlyMemory<byte>)d).ToList(), CancellationToken.None).WaitAsync(Deadline))
            .Select(u => u.ToUniqueIdentifier()).ToList();

    private static async Task<IReadOnlyList<UniqueIdentifier>> Batch(UsigCore usig, ulong first, byte[][] digests, byte[][]? kept) =>
        (await usig.CreateUisAsync(first, digests.Select(d => (ReadOnlyMemory<byte>)d).ToList(), kept?.Select(m => (ReadOnlyMemory<byte>)m).ToList(), CancellationToken.None).WaitAsync(Deadline))
            .Select(u => u.ToUniqueIdentifier()).ToList();

    private static void AssertKept(byte[][] expected, UsigState? state) =>
        Assert.Equal(expected.Select(Convert.ToHexString), state!.KeptMessages.Select(Convert.ToHexString));

    private static byte[][] Digests(Random random, int count) => Enumerable.Range(0, count).Select(_ => random.Bytes(32)).ToArray();

    [Fact]
    public async Task Kept_messages_are_written_with_the_counter_in_one_write_and_a_fresh_usig_over_the_store_sees_them()
    {
        var random = TestRandom.Create(output);
        var setup = Scheme(HmacScheme, random, Epoch);
        var store = new InMemoryUsigCounterStore(UsigState.Fresh(Epoch));
        var usig = new UsigCore(ReplicaId, Epoch, setup.Certifier, store);
        await Batch(usig, 1, Digests(random, 2), null);
        var kept = new[] { random.Bytes(40), random.Bytes(0), random.Bytes(200) };
        var writes = store.Writes;
        await Batch(usig, 3, Digests(random, 3), kept);
        Assert.Equal(writes + 1, store.Writes);
        Assert.Equal(5UL, store.State!.Counter);
        AssertKept(kept, store.State);
        // Copied when asked: the caller's buffers changing afterwards changes nothing kept.
        kept[0][0] ^= 0xFF;
        var expected = kept.Select(m => m.ToArray()).ToArray();
        expected[0][0] ^= 0xFF;
        AssertKept(expected, store.State);

        var restarted = new UsigCore(ReplicaId, Epoch, setup.Certifier, store);
        var loaded = await restarted.LoadAsync(CancellationToken.None);
        Assert.Equal(5UL, loaded.Counter);
        AssertKept(expected, loaded);
        Assert.Null(loaded.Inconsistency());
    }

    [Fact]
    public async Task The_next_batch_replaces_what_the_last_kept_and_a_batch_that_keeps_none_clears_it()
    {
        var random = TestRandom.Create(output);
        var setup = Scheme(Ed25519Scheme, random, Epoch);
        var store = new InMemoryUsigCounterStore(UsigState.Fresh(Epoch));
        var usig = new UsigCore(ReplicaId, Epoch, setup.Certifier, store);
        var first = new[] { random.Bytes(10), random.Bytes(11) };
        await Batch(usig, 1, Digests(random, 2), first);
        AssertKept(first, store.State);
        var second = new[] { random.Bytes(12) };
        await Batch(usig, 3, Digests(random, 1), second);
        AssertKept(second, store.State);
        await Batch(usig, 4, Digests(random, 4), null);
        AssertKept([], store.State);
        AssertKept([], await new UsigCore(ReplicaId, Epoch, setup.Certifier, store).LoadAsync(CancellationToken.None));
    }

    public static TheoryData<string, int, int[]> KeptOfTheWrongShape() => new()
    {
        // what, digests, kept message lengths
        { "one byte over the limit in one message", 1, [UsigCore.MaxKeptBytes + 1] },
        { "one byte over the limit over a full batch", UsigCore.MaxBatch, [.. Enumerable.Repeat(UsigCore.MaxKeptBytes / UsigCore.MaxBatch, UsigCore.MaxBatch - 1), UsigCore.MaxKeptBytes / UsigCore.MaxBatch + 1] },
        { "fewer messages than digests", 3, [1, 1] },
        { "more messages than digests", 2, [1, 1, 1] },
        { "an empty list for one digest", 1, [] },
    };

    [Theory]
    [MemberData(nameof(KeptOfTheWrongShape))]
    public async Task Kept_messages_over_the_limit_or_not_one_per_digest_are_refused_and_nothing_is_issued(string what, int digests, int[] lengths)
    {
        var random = TestRandom.Create(output);
        var setup = Scheme(HmacScheme, random, Epoch);
        var store = new InMemoryUsigCounterStore(UsigState.Fresh(Epoch));
        var usig = new UsigCore(ReplicaId, Epoch, setup.Certifier, store);
        var held = new[] { random.Bytes(8) };
        await Batch(usig, 1, Digests(random, 1), held);
        var writes = store.Writes;

        var error = await Assert.ThrowsAsync<ArgumentException>(() => Batch(usig, 2, Digests(random, digests), lengths.Select(n => random.Bytes(n)).ToArray()));

        output.WriteLine($"{what}: {error.Message}");
        Assert.Equal(writes, store.Writes);
        Assert.Equal(1UL, store.State!.Counter);
        AssertKept(held, store.State);
        // The same batch at the limit exactly, one message per digest, is taken.
        var atLimit = Enumerable.Range(0, digests).Select(i => random.Bytes(i == 0 ? UsigCore.MaxKeptBytes - (digests - 1) : 1)).ToArray();
        Assert.Equal(UsigCore.MaxKeptBytes, atLimit.Sum(m => m.Length));
        Assert.Equal(1 + digests, (int)(await Batch(usig, 2, Digests(random, digests), atLimit))[^1].Counter);
        AssertKept(atLimit, store.State);
    }

    [Theory]
    [MemberData(nameof(Schemes), MemberType = typeof(UsigTestKit))]
    public async Task A_retried_batch_gets_the_same_uis_and_changes_nothing_kept(string scheme)
    {
        var random = TestRandom.Create(output);
        var setup = Scheme(scheme, random, Epoch);
        var store = new InMemoryUsigCounterStore(UsigState.Fresh(Epoch));
        var usig = new UsigCore(ReplicaId, Epoch, setup.Certifier, store);
        var older = Digests(random, 3);
        var olderKept = older.Select(_ => random.Bytes(20)).ToArray();
        var olderUis = await Batch(usig, 1, older, olderKept);
        var last = Digests(random, 2);
        var lastKept = last.Select(_ => random.Bytes(30)).ToArray();
        var lastUis = await Batch(usig, 4, last, lastKept);
        var writes = store.Writes;

        // The last batch again with its bytes, other bytes or none; an older one with its own bytes.
        foreach (var (first, digests, kept, uis) in new[]
        {
            (4UL, last, lastKept, lastUis), (4UL, last, last.Select(_ => random.Bytes(5)).ToArray(), lastUis), (4UL, last, null, lastUis),
            (1UL, older, olderKept, olderUis), (1UL, older, null, olderUis),
        })
        {
            var again = await Batch(usig, first, digests, kept);
            Assert.Equal(uis.Select(u => (u.Counter, Convert.ToHexString(u.Certificate))), again.Select(u => (u.Counter, Convert.ToHexString(u.Certificate))));
            Assert.Equal(writes, store.Writes);
            AssertKept(lastKept, store.State);
        }
        // After a restart too (the retry then reads the store first).
        var restarted = new UsigCore(ReplicaId, Epoch, setup.Certifier, store);
        Assert.Equal(lastUis.Select(u => Convert.ToHexString(u.Certificate)), (await Batch(restarted, 4, last, null)).Select(u => Convert.ToHexString(u.Certificate)));
        AssertKept(lastKept, await restarted.LoadAsync(CancellationToken.None));
        Assert.Equal(writes, store.Writes);
    }

    [Fact]
    public async Task Random_batches_leave_exactly_the_last_batchs_messages_kept_across_restarts()
    {
        var random = TestRandom.Create(output);
        var setup = Scheme(HmacScheme, random, Epoch);
        var store = new InMemoryUsigCounterStore(UsigState.Fresh(Epoch));
        var usig = new UsigCore(ReplicaId, Epoch, setup.Certifier, store);
        ulong next = 1;
        for (var i = 0; i < 300; i++)
        {
            var digests = Digests(random, random.Next(1, UsigCore.MaxBatch + 1));
            var budget = UsigCore.MaxKeptBytes;
            var kept = random.Next(3) == 0 ? null : digests.Select(_ =>
            {
                var message = random.Bytes(random.Next(0, Math.Min(budget, 200) + 1));
                budget -= message.Length;
                return message;
            }).ToArray();
            await Batch(usig, next, digests, kept);
            next += (ulong)digests.Length;
            if (random.Next(10) == 0) usig = new UsigCore(ReplicaId, Epoch, setup.Certifier, store);
            var seen = await new UsigCore(ReplicaId, Epoch, setup.Certifier, store).LoadAsync(CancellationToken.None);
            Assert.Equal(next - 1, seen.Counter);
            AssertKept(kept ?? [], seen);
            Assert.Null(seen.Inconsistency());
        }
    }

    [Theory]
    [MemberData(nameof(Schemes), MemberType = typeof(UsigTestKit))]
    public async Task A_batch_gets_consecutive_counters_each_certifying_its_own_digest_with_one_write(string scheme)
    {
        var random = TestRandom.Create(output);
        var setup = Scheme(scheme, random, Epoch);
        var store = new InMemoryUsigCounterStore(UsigState.Fresh(Epoch));
        var usig = new UsigCore(ReplicaId, Epoch, setup.Certifier, store);
        var verifier = VerifierFor(ReplicaId, setup.Key);
        ulong next = 1;
        foreach (var size in new[] { 1, 5, UsigCore.MaxBatch, 3 })
        {
            var digests = Enumerable.Range(0, size).Select(_ => random.Bytes(32)).ToArray();
            var writes = store.Writes;
            var uis = await Batch(usig, next, digests);
            Assert.Equal(writes + 1, store.Writes);
            Assert.Equal(Enumerable.Range(0, size).Select(i => next + (ulong)i), uis.Select(u => u.Counter));
            for (var i = 0; i < size; i++)
            {
                Assert.True(verifier.Verify(ReplicaId, uis[i], digests[i]));
                // Unique: a UI never verifies for another digest of the batch.
                if (size > 1) Assert.False(verifier.Verify(ReplicaId, uis[i], digests[(i + 1) % size]));
            }
            next += (ulong)size;
        }
        Assert.Equal(next - 1, store.State!.Counter);
    }

    [Fact]
    public async Task A_batch_is_durable_before_any_of_its_uis_is_returned()
    {
        var random = TestRandom.Create(output);
        var setup = Scheme(Ed25519Scheme, random, Epoch);
        var writeStarted = new TaskCompletionSource<UsigState>(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var store = new InMemoryUsigCounterStore(UsigState.Fresh(Epoch))
        {
            BeforeWrite = (state, _) =>
            {
                writeStarted.TrySetResult(state);
                return release.Task;
            },
        };
        var usig = new UsigCore(ReplicaId, Epoch, setup.Certifier, store);
        var pending = Batch(usig, 1, Enumerable.Range(0, 4).Select(_ => random.Bytes(32)));
        var writing = await writeStarted.Task.WaitAsync(Deadline);
        Assert.Equal(4UL, writing.Counter);
        Assert.False(pending.IsCompleted);
        Assert.Equal(0UL, store.State!.Counter);
        release.SetResult();
        Assert.Equal(4, (await pending).Count);
        Assert.Equal(4UL, store.State!.Counter);
    }

    [Theory]
    [MemberData(nameof(Schemes), MemberType = typeof(UsigTestKit))]
    public async Task A_retried_batch_gets_the_same_uis_and_a_changed_one_is_refused(string scheme)
    {
        var random = TestRandom.Create(output);
        var setup = Scheme(scheme, random, Epoch);
        var store = new InMemoryUsigCounterStore(UsigState.Fresh(Epoch));
        var usig = new UsigCore(ReplicaId, Epoch, setup.Certifier, store);
        var digests = Enumerable.Range(0, 6).Select(_ => random.Bytes(32)).ToArray();
        var first = await Batch(usig, 1, digests);
        var again = await Batch(usig, 1, digests.Select(d => (byte[])d.Clone()));
        Assert.Equal(first.Select(u => (u.Counter, Convert.ToHexString(u.Certificate))), again.Select(u => (u.Counter, Convert.ToHexString(u.Certificate))));
        Assert.Equal(1, store.Writes);

        // The same counters with one digest changed, a shorter or longer batch over issued and new
        // counters, the batch shifted by one: all refused, nothing issued.
        var changed = digests.ToArray();
        changed[3] = random.Bytes(32);
        await Assert.ThrowsAsync<ArgumentException>(() => Batch(usig, 1, changed));
        await Assert.ThrowsAsync<ArgumentException>(() => Batch(usig, 4, digests[3..].Append(random.Bytes(32))));
        await Assert.ThrowsAsync<ArgumentException>(() => Batch(usig, 2, digests));
        Assert.Equal(1, store.Writes);
        Assert.Equal(6UL, store.State!.Counter);
        // A tail of the batch on its own counters is a retry too (it certifies nothing new).
        Assert.Equal([5UL, 6UL], (await Batch(usig, 5, digests[4..])).Select(u => u.Counter));
    }

    [Theory]
    [InlineData(UsigStoreFault.FailWithoutWriting)]
    [InlineData(UsigStoreFault.FailAfterWriting)]
    public async Task A_crash_in_the_middle_of_a_batch_leaves_all_of_it_or_none_and_the_retry_recovers(UsigStoreFault fault)
    {
        var random = TestRandom.Create(output);
        var setup = Scheme(HmacScheme, random, Epoch);
        var store = new InMemoryUsigCounterStore(UsigState.Fresh(Epoch));
        var usig = new UsigCore(ReplicaId, Epoch, setup.Certifier, store);
        await Batch(usig, 1, [random.Bytes(32)]);
        var digests = Enumerable.Range(0, 8).Select(_ => random.Bytes(32)).ToArray();

        store.Fault = fault;
        await Assert.ThrowsAsync<IOException>(() => Batch(usig, 2, digests));
        store.Fault = UsigStoreFault.None;
        // All or nothing in the store: never a part of the batch.
        Assert.Equal(fault == UsigStoreFault.FailAfterWriting ? 9UL : 1UL, store.State!.Counter);

        // The process restarts: a fresh USIG over the same store; the caller retries the batch.
        var restarted = new UsigCore(ReplicaId, Epoch, setup.Certifier, store);
        var uis = await Batch(restarted, 2, digests);
        Assert.Equal(Enumerable.Range(2, 8).Select(i => (ulong)i), uis.Select(u => u.Counter));
        var verifier = VerifierFor(ReplicaId, setup.Key);
        for (var i = 0; i < digests.Length; i++) Assert.True(verifier.Verify(ReplicaId, uis[i], digests[i]));
        Assert.Equal(9UL, store.State!.Counter);
    }

    [Fact]
    public async Task Every_counter_of_the_last_batches_within_the_window_can_be_reissued_for_its_digest_only()
    {
        var random = TestRandom.Create(output);
        var setup = Scheme(Ed25519Scheme, random, Epoch);
        var store = new InMemoryUsigCounterStore(UsigState.Fresh(Epoch));
        var usig = new UsigCore(ReplicaId, Epoch, setup.Certifier, store);
        var issued = new List<byte[]>();
        while (issued.Count < 3 * UsigCore.RecentWindow)
        {
            var digests = Enumerable.Range(0, random.Next(1, UsigCore.MaxBatch + 1)).Select(_ => random.Bytes(32)).ToArray();
            await Batch(usig, (ulong)issued.Count + 1, digests);
            issued.AddRange(digests);
        }
        var reloaded = new UsigCore(ReplicaId, Epoch, setup.Certifier, store);
        var last = (ulong)issued.Count;
        var verifier = VerifierFor(ReplicaId, setup.Key);
        for (var counter = last - UsigCore.RecentWindow + 1; counter <= last; counter++)
        {
            var ui = await reloaded.ReissueUiAsync(counter, issued[(int)counter - 1], CancellationToken.None);
            Assert.NotNull(ui);
            Assert.True(verifier.Verify(ReplicaId, ui.ToUniqueIdentifier(), issued[(int)counter - 1]));
            Assert.Null(await reloaded.ReissueUiAsync(counter, random.Bytes(32), CancellationToken.None));
        }
        Assert.Null(await reloaded.ReissueUiAsync(last - UsigCore.RecentWindow, issued[(int)(last - UsigCore.RecentWindow) - 1], CancellationToken.None));
        Assert.True(store.State!.Recent.Length <= UsigCore.RecentWindow * 32);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(UsigCore.MaxBatch + 1)]
    public async Task A_batch_of_no_digests_or_too_many_is_refused_and_nothing_is_issued(int size)
    {
        var store = new InMemoryUsigCounterStore(UsigState.Fresh(Epoch));
        var usig = new UsigCore(ReplicaId, Epoch, Scheme(HmacScheme, new Random(1), Epoch).Certifier, store);
        var error = await Assert.ThrowsAsync<ArgumentException>(() => Batch(usig, 1, Enumerable.Range(0, size).Select(_ => new byte[32])));
        Assert.Contains($"1..{UsigCore.MaxBatch}", error.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<ArgumentException>(() => Batch(usig, 1, [new byte[32], new byte[31]]));
        Assert.Equal(0, store.Writes);
    }
}
