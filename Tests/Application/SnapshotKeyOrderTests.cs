using MinBft.Application;
using Xunit.Abstractions;

namespace MinBft.Tests.Application;

/// <summary>
/// The key-value service keeps its keys' snapshot order between snapshots and merges new keys in.
/// Its snapshots must stay byte for byte what a full sort gives: replicas compare states by the
/// digest of these bytes, so any difference is a divergence.
/// </summary>
public sealed class SnapshotKeyOrderTests(ITestOutputHelper output)
{
    // Keys whose UTF-16 and UTF-8 orders differ (a surrogate pair against U+E000..U+FFFF), and
    // plain ones, from a small pool so that writes hit existing keys and deleted keys come back.
    private static readonly string[] Pool =
        [.. Enumerable.Range(0, 40).Select(i => "k" + i), "\uE000", "\uFFFD", "\U0001F600", "\U0001F600x", "日本", "", "z"];

    private static byte[] FullSortSnapshot(KeyValueStateMachine machine)
    {
        machine.ForgetSnapshotOrder();
        return machine.Snapshot();
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    public void Merged_snapshots_equal_full_sorts_under_random_writes_deletes_and_restores(int seed)
    {
        output.WriteLine($"seed {seed} (replay: this test with InlineData({seed}))");
        var random = new Random(seed);
        var machine = new KeyValueStateMachine();
        var reference = new KeyValueStateMachine();
        for (var step = 0; step < 3_000; step++)
        {
            var key = Pool[random.Next(Pool.Length)];
            var operation = random.Next(10) switch
            {
                < 5 => KeyValueOperation.EncodePut(key, [(byte)step]),
                < 8 => KeyValueOperation.EncodeDelete(key),
                _ => KeyValueOperation.EncodeCompareAndSetAbsent(key, [(byte)step]),
            };
            Assert.Equal(reference.Apply(operation), machine.Apply(operation));

            switch (random.Next(20))
            {
                case 0: // a checkpoint: the merged order against a full sort of the same state
                    var snapshot = machine.Snapshot();
                    var sorted = FullSortSnapshot(reference);
                    Assert.True(sorted.AsSpan().SequenceEqual(snapshot), $"seed {seed}, step {step}: snapshot differs from a full sort");
                    break;
                case 1: // a state transfer: the order comes from the installed snapshot
                    Assert.True(machine.TryRestore(FullSortSnapshot(reference)), $"seed {seed}, step {step}: restore refused");
                    break;
            }
        }
        Assert.Equal(FullSortSnapshot(reference), machine.Snapshot());
    }

    [Fact]
    public void Many_new_keys_between_snapshots_still_give_the_sorted_snapshot()
    {
        var machine = new KeyValueStateMachine();
        machine.Apply(KeyValueOperation.EncodePut("first", [1]));
        _ = machine.Snapshot(); // an order is kept from here on
        // More insertions than the order keeps pending: it is dropped and rebuilt by a full sort.
        for (var i = 5_000; i > 0; i--) machine.Apply(KeyValueOperation.EncodePut("key" + i, [2]));
        var merged = machine.Snapshot();

        var fresh = new KeyValueStateMachine();
        Assert.True(fresh.TryRestore(merged)); // strictly ascending, or restore refuses it
        Assert.Equal(5_001, fresh.Count);
        Assert.Equal(FullSortSnapshot(machine), merged);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void Ledger_snapshots_with_accounts_opened_between_them_equal_full_sorts(int seed)
    {
        output.WriteLine($"seed {seed} (replay: this test with InlineData({seed}))");
        var random = new Random(seed);
        var ledger = new LedgerStateMachine();
        for (var step = 0; step < 1_000; step++)
        {
            var account = Pool[random.Next(Pool.Length)] + "-acct";
            ledger.Apply(random.Next(2) == 0 ? LedgerOperation.EncodeOpen(account, step) : LedgerOperation.EncodeDeposit(account, 1));
            if (random.Next(25) != 0) continue;
            var merged = ledger.Snapshot();
            ledger.ForgetSnapshotOrder();
            Assert.True(ledger.Snapshot().AsSpan().SequenceEqual(merged), $"seed {seed}, step {step}: snapshot differs from a full sort");
            if (random.Next(3) == 0) Assert.True(ledger.TryRestore(merged));
        }
    }

    [Fact]
    public void Keys_compare_as_their_utf8_bytes_do()
    {
        // Text elements whose UTF-16 and UTF-8 orders differ, and ordinary ones around them.
        string[] pieces = ["a", "z", "\u00E9", "\u07FF", "\u0800", "\uD7FF", "\uE000", "\uFFFD", "\uFFFF", "\U00010000", "\U0001F600", "\U0010FFFF", "日"];
        var random = new Random(11);
        output.WriteLine("seed 11");
        string Text() => string.Concat(Enumerable.Range(0, random.Next(4)).Select(_ => pieces[random.Next(pieces.Length)]));
        for (var i = 0; i < 20_000; i++)
        {
            var (a, b) = (Text(), Text());
            var expected = Math.Sign(System.Text.Encoding.UTF8.GetBytes(a).AsSpan().SequenceCompareTo(System.Text.Encoding.UTF8.GetBytes(b)));
            Assert.True(expected == Math.Sign(SnapshotKeyOrder.CompareUtf8(a, b)), $"\"{a}\" against \"{b}\": UTF-8 order {expected}");
        }
    }
}
