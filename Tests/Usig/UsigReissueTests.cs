using MinBft.Tests.Crypto;
using MinBft.Usig;
using Xunit.Abstractions;
using static MinBft.Tests.Usig.UsigTestKit;

namespace MinBft.Tests.Usig;

/// <summary>
/// ReissueUI: for one of its last RecentWindow counters, the USIG returns a UI only for the
/// digest that counter was certified for, never issues anything new, and remembers this across
/// a reload from its store (what a replica that crashed before logging UIs relies on).
/// </summary>
public sealed class UsigReissueTests(ITestOutputHelper output)
{
    private const int ReplicaId = 1;
    private const ulong Epoch = 3;

    [Theory]
    [MemberData(nameof(Schemes), MemberType = typeof(UsigTestKit))]
    public async Task The_last_window_of_counters_is_reissued_for_their_own_digests_only(string scheme)
    {
        var random = TestRandom.Create(output);
        var setup = Scheme(scheme, random, Epoch);
        var store = new InMemoryUsigCounterStore(UsigState.Fresh(Epoch));
        var usig = new UsigCore(ReplicaId, Epoch, setup.Certifier, store);
        var verifier = VerifierFor(ReplicaId, setup.Key);
        var digests = new List<byte[]>();
        for (var i = 0; i < UsigCore.RecentWindow + 10; i++)
        {
            digests.Add(random.Bytes(32));
            await usig.Create(digests[^1]);
        }
        var last = (ulong)digests.Count;

        // A fresh core over the same store: the window is durable, not only in memory.
        var reloaded = new UsigCore(ReplicaId, Epoch, setup.Certifier, store);
        for (var counter = last - UsigCore.RecentWindow + 1; counter <= last; counter++)
        {
            var digest = digests[(int)counter - 1];
            var ui = await reloaded.ReissueUiAsync(counter, digest, CancellationToken.None);
            Assert.NotNull(ui);
            Assert.Equal(counter, ui.Counter);
            Assert.True(verifier.Verify(ReplicaId, ui.ToUniqueIdentifier(), digest));
            // Never for another digest, even one certified at another counter.
            Assert.Null(await reloaded.ReissueUiAsync(counter, digests[(int)counter % digests.Count], CancellationToken.None));
            Assert.Null(await reloaded.ReissueUiAsync(counter, random.Bytes(32), CancellationToken.None));
        }
        // Outside the window, beyond the counter, or counter 0: nothing.
        Assert.Null(await reloaded.ReissueUiAsync(last - UsigCore.RecentWindow, digests[(int)(last - UsigCore.RecentWindow) - 1], CancellationToken.None));
        Assert.Null(await reloaded.ReissueUiAsync(last + 1, random.Bytes(32), CancellationToken.None));
        Assert.Null(await reloaded.ReissueUiAsync(0, digests[0], CancellationToken.None));
        // Re-issuing wrote nothing and issued nothing: the next issue is the next counter.
        Assert.Equal(last, store.State!.Counter);
        Assert.Equal(last + 1, (await reloaded.Create(random.Bytes(32))).Counter);
    }

    [Fact]
    public async Task A_fresh_usig_reissues_nothing_and_the_stored_window_stays_bounded()
    {
        var random = TestRandom.Create(output);
        var setup = Scheme(Ed25519Scheme, random, Epoch);
        var store = new InMemoryUsigCounterStore(UsigState.Fresh(Epoch));
        var usig = new UsigCore(ReplicaId, Epoch, setup.Certifier, store);
        Assert.Null(await usig.ReissueUiAsync(1, random.Bytes(32), CancellationToken.None));
        for (var i = 0; i < 3 * UsigCore.RecentWindow; i++)
        {
            await usig.Create(random.Bytes(32));
            Assert.Null(store.State!.Inconsistency());
            Assert.True(store.State.Recent.Length <= UsigCore.RecentWindow * 32);
        }
        await Assert.ThrowsAsync<ArgumentException>(() => usig.ReissueUiAsync(1, new byte[31], CancellationToken.None));
    }
}
