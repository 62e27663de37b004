using MinBft.Messages;
using MinBft.Tests.Crypto;
using MinBft.Usig;
using Xunit.Abstractions;
using static MinBft.Tests.Usig.UsigTestKit;

namespace MinBft.Tests.Usig;

/// <summary>
/// PROTOCOL.md 2 and 11: a UI never leaves the USIG before its counter is durable, and a
/// failed or ambiguous write never leads to two UIs with one counter.
/// </summary>
public sealed class UsigDurabilityTests(ITestOutputHelper output)
{
    private const int ReplicaId = 0;
    private const ulong Epoch = 1;

    [Theory]
    [MemberData(nameof(Schemes), MemberType = typeof(UsigTestKit))]
    public async Task WhileTheStoreWriteIsBlocked_NoUiIsReturned_ItIsReturnedOnceTheWriteCompletes(string scheme)
    {
        var random = TestRandom.Create(output);
        var setup = Scheme(scheme, random, Epoch);
        var writeStarted = new TaskCompletionSource<UsigState>(TaskCreationOptions.RunContinuationsAsynchronously);
        var releaseWrite = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var store = new InMemoryUsigCounterStore(UsigState.Fresh(Epoch))
        {
            BeforeWrite = (state, _) =>
            {
                writeStarted.TrySetResult(state);
                return releaseWrite.Task;
            },
        };
        var usig = new UsigCore(ReplicaId, Epoch, setup.Certifier, store);
        var digest = random.Bytes(32);

        var pending = usig.CreateAt(1, digest);
        var beingWritten = await writeStarted.Task.WaitAsync(Deadline);
        Assert.Equal(1UL, beingWritten.Counter);
        Assert.False(pending.IsCompleted);
        Assert.Equal(0UL, store.State!.Counter);

        // A retry of the same digest must not overtake the blocked write either.
        var retry = usig.CreateAt(1, digest);
        Assert.False(retry.IsCompleted);

        releaseWrite.SetResult();
        var ui = await pending.WaitAsync(Deadline);
        Assert.Equal(1UL, ui.Counter);
        Assert.Equal(digest, store.State!.DigestAt(1).ToArray());
        AssertSameUi(ui, await retry.WaitAsync(Deadline));
        Assert.Equal(1, store.Writes);
    }

    [Theory]
    [MemberData(nameof(Schemes), MemberType = typeof(UsigTestKit))]
    public async Task WriteLost_NoUiIsReturned_NoCounterAdvances_RetryGetsCounterOne(string scheme)
    {
        var random = TestRandom.Create(output);
        var setup = Scheme(scheme, random, Epoch);
        var store = new InMemoryUsigCounterStore(UsigState.Fresh(Epoch)) { Fault = UsigStoreFault.FailWithoutWriting };
        var usig = new UsigCore(ReplicaId, Epoch, setup.Certifier, store);
        var digest = random.Bytes(32);

        await Assert.ThrowsAsync<IOException>(() => usig.CreateAt(1, digest));
        Assert.Equal(0UL, store.State!.Counter);

        store.Fault = UsigStoreFault.None;
        var readsBefore = store.Reads;
        var ui = await usig.Create(digest);
        Assert.Equal(readsBefore + 1, store.Reads); // reloaded before issuing again
        Assert.Equal(1UL, ui.Counter);
        Assert.True(VerifierFor(ReplicaId, setup.Key).Verify(ReplicaId, ui, digest));
    }

    [Theory]
    [MemberData(nameof(Schemes), MemberType = typeof(UsigTestKit))]
    public async Task WriteLandedButFailed_AfterReloadARetryReturnsTheStoredUi_NotASecondOne(string scheme)
    {
        var random = TestRandom.Create(output);
        var setup = Scheme(scheme, random, Epoch);
        var store = new InMemoryUsigCounterStore(UsigState.Fresh(Epoch)) { Fault = UsigStoreFault.FailAfterWriting };
        var usig = new UsigCore(ReplicaId, Epoch, setup.Certifier, store);
        var digest = random.Bytes(32);

        await Assert.ThrowsAsync<IOException>(() => usig.CreateAt(1, digest));
        Assert.Equal(1UL, store.State!.Counter);
        Assert.Equal(digest, store.State.DigestAt(1).ToArray());

        store.Fault = UsigStoreFault.None;
        var retried = await usig.CreateAt(1, digest);
        Assert.Equal(1UL, retried.Counter);
        Assert.True(VerifierFor(ReplicaId, setup.Key).Verify(ReplicaId, retried, digest));
        Assert.Equal(1, store.Writes); // the retry wrote nothing new
        Assert.Equal(2UL, (await usig.Create(random.Bytes(32))).Counter);
    }

    [Fact]
    public async Task WriteLandedButFailed_ADifferentDigestNeverGetsTheLandedCounter()
    {
        // Without the reload the in-memory counter would still be 0 and the next digest would
        // get counter 1 too: two messages with one counter, exactly what USIG must prevent.
        var random = TestRandom.Create(output);
        var setup = Scheme(Ed25519Scheme, random, Epoch);
        var store = new InMemoryUsigCounterStore(UsigState.Fresh(Epoch)) { Fault = UsigStoreFault.FailAfterWriting };
        var usig = new UsigCore(ReplicaId, Epoch, setup.Certifier, store);

        await Assert.ThrowsAsync<IOException>(() => usig.CreateAt(1, random.Bytes(32)));
        store.Fault = UsigStoreFault.None;
        // Counter 1 for another digest is refused; the next one is 2.
        await Assert.ThrowsAsync<ArgumentException>(() => usig.CreateAt(1, random.Bytes(32)));
        Assert.Equal(2UL, (await usig.CreateAt(2, random.Bytes(32))).Counter);
    }

    [Fact]
    public async Task CancelledWhileTheWriteIsPending_NoUi_AndTheNextCallReloads()
    {
        var random = TestRandom.Create(output);
        var setup = Scheme(HmacScheme, random, Epoch);
        var writeStarted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var store = new InMemoryUsigCounterStore(UsigState.Fresh(Epoch))
        {
            BeforeWrite = async (_, ct) =>
            {
                writeStarted.TrySetResult();
                await Task.Delay(Timeout.Infinite, ct);
            },
        };
        var usig = new UsigCore(ReplicaId, Epoch, setup.Certifier, store);
        using var cts = new CancellationTokenSource();
        var digest = random.Bytes(32);

        var pending = usig.CreateAt(1, digest, cts.Token);
        await writeStarted.Task.WaitAsync(Deadline);
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => pending.WaitAsync(Deadline));

        store.BeforeWrite = null;
        var reads = store.Reads;
        Assert.Equal(1UL, (await usig.CreateAt(1, digest)).Counter);
        Assert.Equal(reads + 1, store.Reads);
    }

    [Fact]
    public async Task StoreReadFailure_IssuesNothing_UntilTheStoreIsReadable()
    {
        var setup = Scheme(HmacScheme, new Random(1), Epoch);
        var store = new InMemoryUsigCounterStore(UsigState.Fresh(Epoch)) { FailReads = true };
        var usig = new UsigCore(ReplicaId, Epoch, setup.Certifier, store);
        await Assert.ThrowsAsync<IOException>(() => usig.CreateAt(1, new byte[32]));
        Assert.Equal(0, store.Writes);
        store.FailReads = false;
        Assert.Equal(1UL, (await usig.Create(new byte[32])).Counter);
    }

    [Theory]
    [MemberData(nameof(Schemes), MemberType = typeof(UsigTestKit))]
    public async Task UnderRandomWriteFaultsRestartsAndAbandonedDigests_NoCounterIsEverCertifiedForTwoDigests(string scheme)
    {
        var random = TestRandom.Create(output);
        var setup = Scheme(scheme, random, Epoch);
        var verifier = VerifierFor(ReplicaId, setup.Key);
        var store = new InMemoryUsigCounterStore(UsigState.Fresh(Epoch));
        var usig = new UsigCore(ReplicaId, Epoch, setup.Certifier, store);
        var digestByCounter = new Dictionary<ulong, byte[]>();
        ulong lastReturned = 0;
        var abandonedSinceLastReturn = false;
        var returned = 0;

        void Record(UniqueIdentifier ui, byte[] digest)
        {
            Assert.True(verifier.Verify(ReplicaId, ui, digest));
            RecordDigest(ui.Counter, digest);
        }

        void RecordDigest(ulong counter, byte[] digest)
        {
            if (digestByCounter.TryGetValue(counter, out var known)) Assert.Equal(known, digest); // unique
            else digestByCounter.Add(counter, digest);
        }

        for (var message = 0; message < 200; message++)
        {
            var digest = random.Bytes(32);
            ulong? counter = null;
            // A correct replica retries the same counter and digest until it has a UI (persist
            // before send); the USIG must stay safe even for a caller that gives up and moves on.
            while (true)
            {
                store.Fault = random.Next(4) switch
                {
                    0 => UsigStoreFault.FailWithoutWriting,
                    1 => UsigStoreFault.FailAfterWriting,
                    _ => UsigStoreFault.None,
                };
                if (random.Next(10) == 0) usig = new UsigCore(ReplicaId, Epoch, setup.Certifier, store); // crash and restart
                try
                {
                    counter ??= (await usig.LoadAsync(CancellationToken.None)).Counter + 1;
                    var ui = await usig.CreateAt(counter.Value, digest);
                    Record(ui, digest);
                    // Sequential: retries never leave a gap; only an abandoned landed write can.
                    if (abandonedSinceLastReturn) Assert.True(ui.Counter > lastReturned);
                    else Assert.Equal(lastReturned + 1, ui.Counter);
                    lastReturned = ui.Counter;
                    abandonedSinceLastReturn = false;
                    returned++;
                    break;
                }
                catch (IOException)
                {
                    // Whatever landed is certified as far as the world can tell.
                    if (store.State is { Counter: > 0 } landed) RecordDigest(landed.Counter, landed.DigestAt(landed.Counter).ToArray());
                    if (random.Next(3) == 0)
                    {
                        abandonedSinceLastReturn = true;
                        break;
                    }
                }
            }
        }
        output.WriteLine($"{returned} UIs returned, last counter {lastReturned}");
        Assert.True(returned > 0);
    }

    [Fact]
    public async Task CallerThatAlwaysRetriesTheSameDigest_SeesCounters1ToNWithoutGaps_UnderRandomFaults()
    {
        var random = TestRandom.Create(output);
        var setup = Scheme(HmacScheme, random, Epoch);
        var store = new InMemoryUsigCounterStore(UsigState.Fresh(Epoch));
        var usig = new UsigCore(ReplicaId, Epoch, setup.Certifier, store);
        for (ulong expected = 1; expected <= 200; expected++)
        {
            var digest = random.Bytes(32);
            while (true)
            {
                store.Fault = (UsigStoreFault)random.Next(3);
                try
                {
                    Assert.Equal(expected, (await usig.CreateAt(expected, digest)).Counter);
                    break;
                }
                catch (IOException)
                {
                }
            }
        }
    }

    [Theory]
    [InlineData(UsigStoreFault.FailWithoutWriting)]
    [InlineData(UsigStoreFault.FailAfterWriting)]
    public async Task A_failed_write_leaves_the_previous_batchs_messages_or_the_new_ones_never_a_mix(UsigStoreFault fault)
    {
        var random = TestRandom.Create(output);
        var setup = Scheme(HmacScheme, random, Epoch);
        var store = new InMemoryUsigCounterStore(UsigState.Fresh(Epoch));
        var usig = new UsigCore(ReplicaId, Epoch, setup.Certifier, store);
        byte[][] before = [random.Bytes(16), random.Bytes(17)];
        await usig.CreateUisAsync(1, [random.Bytes(32), random.Bytes(32)], Memory(before), CancellationToken.None);
        byte[][] digests = [random.Bytes(32), random.Bytes(32), random.Bytes(32)];
        byte[][] after = [random.Bytes(3), random.Bytes(4), random.Bytes(5)];

        store.Fault = fault;
        await Assert.ThrowsAsync<IOException>(() => usig.CreateUisAsync(3, Memory(digests), Memory(after), CancellationToken.None));
        store.Fault = UsigStoreFault.None;

        // The USIG reads the store again before issuing: it keeps what the store holds.
        var written = fault == UsigStoreFault.FailAfterWriting;
        var state = await usig.LoadAsync(CancellationToken.None);
        Assert.Equal(written ? 5UL : 2UL, state.Counter);
        Assert.Equal((written ? after : before).Select(Convert.ToHexString), state.KeptMessages.Select(Convert.ToHexString));
        // The caller retries the batch: the same counters, and its messages kept either way.
        var uis = await usig.CreateUisAsync(3, Memory(digests), Memory(after), CancellationToken.None);
        Assert.Equal([3UL, 4UL, 5UL], uis.Select(u => u.Counter));
        Assert.Equal(after.Select(Convert.ToHexString), store.State!.KeptMessages.Select(Convert.ToHexString));
    }

    private static ReadOnlyMemory<byte>[] Memory(byte[][] items) => items.Select(m => (ReadOnlyMemory<byte>)m).ToArray();
}
