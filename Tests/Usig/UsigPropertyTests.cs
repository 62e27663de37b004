using MinBft.Messages;
using MinBft.Tests.Crypto;
using MinBft.Usig;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Serialization;
using Xunit.Abstractions;
using static MinBft.Tests.Usig.UsigTestKit;

namespace MinBft.Tests.Usig;

/// <summary>The USIG guarantees of PROTOCOL.md section 2: unique, monotonic, sequential, idempotent on retry.</summary>
public sealed class UsigPropertyTests(ITestOutputHelper output)
{
    private const int ReplicaId = 2;
    private const ulong Epoch = 7;

    [Theory]
    [MemberData(nameof(Schemes), MemberType = typeof(UsigTestKit))]
    public async Task ManyRandomDigests_GetCounters1ToN_EachCounterExactlyOnce_AllVerifying(string scheme)
    {
        var random = TestRandom.Create(output);
        var setup = Scheme(scheme, random, Epoch);
        var store = new InMemoryUsigCounterStore(UsigState.Fresh(Epoch));
        var usig = new UsigCore(ReplicaId, Epoch, setup.Certifier, store);
        var verifier = VerifierFor(ReplicaId, setup.Key);

        var n = scheme == HmacScheme ? 1000 : 200;
        var digestByCounter = new Dictionary<ulong, byte[]>();
        ulong previous = 0;
        for (var i = 0; i < n; i++)
        {
            var digest = random.Bytes(32);
            var ui = await usig.Create(digest);
            Assert.Equal(previous + 1, ui.Counter);            // sequential from 1, hence monotonic
            Assert.True(digestByCounter.TryAdd(ui.Counter, digest)); // unique
            Assert.Equal(Epoch, ui.Epoch);
            Assert.True(verifier.Verify(ReplicaId, ui, digest));
            Assert.Equal(ui.Counter, store.State!.Counter);     // durable when returned
            previous = ui.Counter;
        }
        Assert.Equal((ulong)n, previous);
        Assert.Equal(n, store.Writes);
    }

    [Theory]
    [MemberData(nameof(Schemes), MemberType = typeof(UsigTestKit))]
    public async Task RetriedCounterAndDigest_ReturnsTheSameUi_WithoutBurningACounter_ThenANewDigestGetsTheNext(string scheme)
    {
        var random = TestRandom.Create(output);
        var setup = Scheme(scheme, random, Epoch);
        var store = new InMemoryUsigCounterStore(UsigState.Fresh(Epoch));
        var usig = new UsigCore(ReplicaId, Epoch, setup.Certifier, store);
        var a = random.Bytes(32);
        var b = random.Bytes(32);

        var first = await usig.CreateAt(1, a);
        var retry = await usig.CreateAt(1, a);
        var retryAgain = await usig.CreateAt(1, (byte[])a.Clone());
        Assert.Equal(1UL, first.Counter);
        AssertSameUi(first, retry);
        AssertSameUi(first, retryAgain);
        Assert.Equal(1, store.Writes);

        var second = await usig.CreateAt(2, b);
        Assert.Equal(2UL, second.Counter);
        AssertSameUi(second, await usig.CreateAt(2, b));
        Assert.Equal(2, store.Writes);
        // An older counter retried for its digest gets its UI again (re-certified, nothing written).
        var reissued = await usig.CreateAt(1, a);
        Assert.Equal(first.Counter, reissued.Counter);
        Assert.Equal(first.Certificate, reissued.Certificate);
        Assert.Equal(2, store.Writes);
    }

    [Fact]
    public async Task ANewMessageRepeatingTheLastDigest_GetsTheNextCounter_NotTheOldUi()
    {
        // A replica may certify the same content twice (after a restart, a CHECKPOINT it had sent
        // before). It asks for the next counter: the USIG must not mistake that for a retry.
        var random = TestRandom.Create(output);
        var setup = Scheme(Ed25519Scheme, random, Epoch);
        var usig = new UsigCore(ReplicaId, Epoch, setup.Certifier, new InMemoryUsigCounterStore(UsigState.Fresh(Epoch)));
        var a = random.Bytes(32);
        Assert.Equal(1UL, (await usig.CreateAt(1, a)).Counter);
        var again = await usig.CreateAt(2, a);
        Assert.Equal(2UL, again.Counter);
        Assert.True(VerifierFor(ReplicaId, setup.Key).Verify(ReplicaId, again, a));
    }

    [Fact]
    public async Task CountersThatAreNeitherNextNorIssuedForTheseDigests_AreRefused_AndNothingIsIssued()
    {
        var random = TestRandom.Create(output);
        var setup = Scheme(HmacScheme, random, Epoch);
        var store = new InMemoryUsigCounterStore(UsigState.Fresh(Epoch));
        var usig = new UsigCore(ReplicaId, Epoch, setup.Certifier, store);
        await usig.CreateAt(1, random.Bytes(32));
        await Assert.ThrowsAsync<ArgumentException>(() => usig.CreateAt(1, random.Bytes(32))); // reuse for another digest
        await Assert.ThrowsAsync<ArgumentException>(() => usig.CreateAt(3, random.Bytes(32))); // skip
        await Assert.ThrowsAsync<ArgumentException>(() => usig.CreateAt(0, random.Bytes(32)));
        Assert.Equal(1, store.Writes);
        Assert.Equal(1UL, store.State!.Counter);
    }

    [Fact]
    public async Task OnlyTheLastDigestIsIdempotent_AnOlderDigestGetsAFreshCounter_NeverAnOldOne()
    {
        // Decision (PROTOCOL.md 2): only the last issue is remembered. Re-certifying an older
        // message is legal and costs a counter; what must never happen is a counter reused.
        var random = TestRandom.Create(output);
        var setup = Scheme(Ed25519Scheme, random, Epoch);
        var usig = new UsigCore(ReplicaId, Epoch, setup.Certifier, new InMemoryUsigCounterStore(UsigState.Fresh(Epoch)));
        var a = random.Bytes(32);
        Assert.Equal(1UL, (await usig.Create(a)).Counter);
        Assert.Equal(2UL, (await usig.Create(random.Bytes(32))).Counter);
        var again = await usig.Create(a);
        Assert.Equal(3UL, again.Counter);
        Assert.True(VerifierFor(ReplicaId, setup.Key).Verify(ReplicaId, again, a));
    }

    [Theory]
    [MemberData(nameof(Schemes), MemberType = typeof(UsigTestKit))]
    public async Task ConcurrentCalls_GetDistinctSequentialCounters_InCallOrder(string scheme)
    {
        var random = TestRandom.Create(output);
        var setup = Scheme(scheme, random, Epoch);
        var firstWriteStarted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var releaseFirstWrite = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var store = new InMemoryUsigCounterStore(UsigState.Fresh(Epoch))
        {
            // Hold the first write open so all other calls queue up behind it.
            BeforeWrite = (state, _) =>
            {
                if (state.Counter != 1) return Task.CompletedTask;
                firstWriteStarted.TrySetResult();
                return releaseFirstWrite.Task;
            },
        };
        var usig = new UsigCore(ReplicaId, Epoch, setup.Certifier, store);
        var digests = Enumerable.Range(0, 50).Select(_ => random.Bytes(32)).ToArray();

        var first = usig.CreateAt(1, digests[0]);
        await firstWriteStarted.Task.WaitAsync(Deadline);
        var rest = digests.Skip(1).Select((d, i) => usig.CreateAt((ulong)i + 2, d)).ToArray();
        Assert.All(rest, t => Assert.False(t.IsCompleted));
        releaseFirstWrite.SetResult();

        var uis = await Task.WhenAll(rest.Prepend(first)).WaitAsync(Deadline);
        var verifier = VerifierFor(ReplicaId, setup.Key);
        for (var i = 0; i < uis.Length; i++)
        {
            Assert.Equal((ulong)i + 1, uis[i].Counter);
            Assert.True(verifier.Verify(ReplicaId, uis[i], digests[i]));
        }
    }

    [Fact]
    public async Task ConcurrentCallsFromManyThreads_NeverShareACounter()
    {
        var random = TestRandom.Create(output);
        var setup = Scheme(HmacScheme, random, Epoch);
        var usig = new UsigCore(ReplicaId, Epoch, setup.Certifier, new InMemoryUsigCounterStore(UsigState.Fresh(Epoch)));
        var digests = Enumerable.Range(0, 400).Select(_ => random.Bytes(32)).ToArray();
        // Every thread claims counters 1..40 in turn, each for its own digest: per counter exactly
        // one claim wins, the others are refused, and nothing is issued twice.
        var claims = await Task.WhenAll(digests.Select((d, i) => Task.Run(async () =>
        {
            var counter = (ulong)(i % 40) + 1;
            try { return (Counter: counter, Digest: d, Ui: (UniqueIdentifier?)await usig.CreateAt(counter, d)); }
            catch (ArgumentException) { return (Counter: counter, Digest: d, Ui: null); }
        }))).WaitAsync(Deadline);
        var won = claims.Where(c => c.Ui is not null).ToList();
        Assert.Equal(won.Count, won.Select(c => c.Ui!.Counter).Distinct().Count());
        Assert.All(won, c => Assert.Equal(c.Counter, c.Ui!.Counter));
        Assert.Equal((ulong)won.Count, (await usig.LoadAsync(CancellationToken.None)).Counter);
        var verifier = VerifierFor(ReplicaId, setup.Key);
        Assert.All(won, c => Assert.True(verifier.Verify(ReplicaId, c.Ui!, c.Digest)));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(31)]
    [InlineData(33)]
    [InlineData(64)]
    public async Task DigestOfWrongLength_IsRejected_AndIssuesNothing(int length)
    {
        var store = new InMemoryUsigCounterStore(UsigState.Fresh(Epoch));
        var usig = new UsigCore(ReplicaId, Epoch, Scheme(HmacScheme, new Random(1), Epoch).Certifier, store);
        await Assert.ThrowsAsync<ArgumentException>(() => usig.CreateAt(1, new byte[length]));
        Assert.Equal(0, store.Writes);
        Assert.Equal(1UL, (await usig.Create(new byte[32])).Counter);
    }

    [Theory]
    [MemberData(nameof(Schemes), MemberType = typeof(UsigTestKit))]
    public async Task Restart_ContinuesFromTheDurableCounter_AndARetriedLastDigestGetsTheStoredUi(string scheme)
    {
        var random = TestRandom.Create(output);
        var setup = Scheme(scheme, random, Epoch);
        var store = new InMemoryUsigCounterStore(UsigState.Fresh(Epoch));
        var before = new UsigCore(ReplicaId, Epoch, setup.Certifier, store);
        byte[] last = [];
        UniqueIdentifier lastUi = UniqueIdentifier.None;
        for (var i = 0; i < 5; i++) lastUi = await before.Create(last = random.Bytes(32));

        var after = new UsigCore(ReplicaId, Epoch, setup.Certifier, store);
        AssertSameUi(lastUi, await after.CreateAt(5, last));
        Assert.Equal(6UL, (await after.Create(random.Bytes(32))).Counter);
    }

    [Fact]
    public async Task StoreOfAnotherEpoch_RefusesToStart()
    {
        var setup = Scheme(Ed25519Scheme, new Random(1), 1);
        var store = new InMemoryUsigCounterStore(UsigState.Fresh(1));
        await new UsigCore(ReplicaId, 1, setup.Certifier, store).Create(new byte[32]);

        var wrongEpoch = new UsigCore(ReplicaId, 2, setup.Certifier, store);
        var error = await Assert.ThrowsAsync<UsigEpochMismatchException>(() => wrongEpoch.LoadAsync(CancellationToken.None));
        Assert.Equal(1UL, error.StoredEpoch);
        Assert.Contains("new epoch", error.Message);
        await Assert.ThrowsAsync<UsigEpochMismatchException>(() => wrongEpoch.CreateAt(2, new byte[32]));
        Assert.Equal(1UL, store.State!.Counter);
    }

    [Fact]
    public async Task InconsistentStoredState_RefusesToStart()
    {
        var setup = Scheme(HmacScheme, new Random(1), Epoch);
        // Counter 5 issued but no digest remembered: a state no write of the USIG produces.
        var corrupt = new UsigState(Epoch, 5, []);
        var usig = new UsigCore(ReplicaId, Epoch, setup.Certifier, new InMemoryUsigCounterStore(corrupt));
        await Assert.ThrowsAsync<InvalidDataException>(() => usig.CreateAt(6, new byte[32]));
    }

    [Fact]
    public async Task AStoreThatHoldsNothing_RefusesToIssue_NeverStartsOverAtCounterOne()
    {
        // A lost or wiped store looks exactly like this: starting at 1 again would re-issue counters.
        var store = new InMemoryUsigCounterStore();
        var usig = new UsigCore(ReplicaId, Epoch, Scheme(HmacScheme, new Random(1), Epoch).Certifier, store);
        var error = await Assert.ThrowsAsync<UsigNotInitializedException>(() => usig.CreateAt(1, new byte[32]));
        Assert.Contains("new epoch", error.Message);
        await Assert.ThrowsAsync<UsigNotInitializedException>(() => usig.LoadAsync(CancellationToken.None));
        Assert.Equal(0, store.Writes);

        // Explicit initialisation for the epoch is the one way to a first counter.
        Assert.True(await UsigCore.InitializeAsync(store, Epoch, CancellationToken.None));
        Assert.Equal(1UL, (await usig.CreateAt(1, new byte[32])).Counter);
        Assert.False(await UsigCore.InitializeAsync(store, Epoch, CancellationToken.None)); // already: nothing reset
        Assert.Equal(1UL, store.State!.Counter);
        await Assert.ThrowsAsync<InvalidOperationException>(() => UsigCore.InitializeAsync(store, Epoch - 1, CancellationToken.None));
        Assert.Equal(1UL, store.State!.Counter);
    }

    [Fact]
    public void StoredUsigState_RoundTripsThroughTheOrleansSerializer_AndBackToTheLibrarysState()
    {
        using var services = new ServiceCollection().AddSerializer().BuildServiceProvider();
        var serializer = services.GetRequiredService<Serializer>();
        var recent = Enumerable.Range(0, 96).Select(i => (byte)i).ToArray();
        var state = new UsigState(3, 9, recent);
        var stored = StoredUsigState.From(state);
        var copy = serializer.Deserialize<StoredUsigState>(serializer.SerializeToArray(stored))!.ToUsigState();
        Assert.Equal((state.Epoch, state.Counter), (copy.Epoch, copy.Counter));
        Assert.Equal(recent, copy.Recent);
        Assert.Equal(recent[64..], copy.DigestAt(9).ToArray());
        Assert.Equal(recent[..32], copy.DigestAt(7).ToArray());
        Assert.Empty(serializer.Deserialize<StoredUsigState>(serializer.SerializeToArray(StoredUsigState.From(UsigState.Fresh(1))))!.ToUsigState().Recent);
        Assert.Empty(copy.KeptMessages);
    }

    [Fact]
    public void StoredUsigState_CarriesTheKeptMessages_ThroughTheOrleansSerializer_AndARecordWithoutThemKeepsNothing()
    {
        var random = TestRandom.Create(output);
        using var services = new ServiceCollection().AddSerializer().BuildServiceProvider();
        var serializer = services.GetRequiredService<Serializer>();
        byte[][] kept = [random.Bytes(30), [], random.Bytes(UsigCore.MaxKeptBytes - 30)];
        var state = new UsigState(3, 9, random.Bytes(9 * 32), kept);
        var stored = StoredUsigState.From(state);
        Assert.Equal(kept.Select(Convert.ToHexString), stored.Kept!.Select(Convert.ToHexString));

        var copy = serializer.Deserialize<StoredUsigState>(serializer.SerializeToArray(stored))!.ToUsigState();
        Assert.Equal((state.Epoch, state.Counter), (copy.Epoch, copy.Counter));
        Assert.Equal(state.Recent, copy.Recent);
        Assert.Equal(kept.Select(Convert.ToHexString), copy.KeptMessages.Select(Convert.ToHexString));
        Assert.Null(copy.Inconsistency());

        // Inside the grain state, as GrainStorageCounterStore writes it.
        var grainState = serializer.Deserialize<UsigGrainState>(serializer.SerializeToArray(new UsigGrainState { Usig = stored }))!;
        Assert.Equal(kept.Select(Convert.ToHexString), grainState.Usig!.ToUsigState().KeptMessages.Select(Convert.ToHexString));

        // A record written before kept messages existed (no field 5) reads as keeping nothing.
        var legacy = serializer.Deserialize<StoredUsigState>(serializer.SerializeToArray(stored with { Kept = null }))!;
        Assert.Null(legacy.Kept);
        Assert.Empty(legacy.ToUsigState().KeptMessages);
        Assert.Null(StoredUsigState.From(new UsigState(3, 9, state.Recent)).Kept);
    }
}
