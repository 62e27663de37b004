using MinBft.Application;
using Xunit.Abstractions;

namespace MinBft.Tests.Application;

/// <summary>
/// While no key is added or removed, the key-value service patches replaced values into its last
/// snapshot instead of walking every key. A patched snapshot must be byte for byte the full sort of
/// the same state: replicas compare states by the digest of these bytes.
/// </summary>
public sealed class KeyValueSnapshotEncoderTests(ITestOutputHelper output)
{
    private static byte[] FullSortSnapshot(KeyValueStateMachine machine)
    {
        var fresh = new KeyValueStateMachine();
        Assert.True(fresh.TryRestore(machine.Snapshot()), "a snapshot the service made is not canonical");
        fresh.ForgetSnapshotOrder();
        return fresh.Snapshot();
    }

    private static byte[] Value(Random random) => [.. Enumerable.Range(0, random.Next(0, 40)).Select(_ => (byte)random.Next(256))];

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void Patched_snapshots_equal_full_sorts_when_values_grow_shrink_or_keep_their_length(int seed)
    {
        output.WriteLine($"seed {seed} (replay: this test with InlineData({seed}))");
        var random = new Random(seed);
        var keys = Enumerable.Range(0, 200).Select(i => "key-" + i).Append("\U0001F600").Append("\uE000").Append("").ToArray();
        var machine = new KeyValueStateMachine();
        var reference = new KeyValueStateMachine();
        void Both(byte[] operation) => Assert.Equal(reference.Apply(operation), machine.Apply(operation));

        foreach (var key in keys) Both(KeyValueOperation.EncodePut(key, Value(random)));
        for (var round = 0; round < 300; round++)
        {
            // Mostly rounds that only overwrite (the patched path), some that add or remove keys.
            var structural = random.Next(5) == 0;
            for (var write = random.Next(0, 30); write > 0; write--)
            {
                var key = keys[random.Next(keys.Length)];
                Both(random.Next(10) switch
                {
                    0 when structural => KeyValueOperation.EncodeDelete(key),
                    1 when structural => KeyValueOperation.EncodePut(key + "-new-" + round, Value(random)),
                    2 => KeyValueOperation.EncodeCompareAndSetAbsent(key, Value(random)),
                    _ => KeyValueOperation.EncodePut(key, Value(random)),
                });
            }
            var snapshot = random.Next(2) == 0 ? machine.Snapshot() : DigestThenSnapshot(machine);
            Assert.True(FullSortSnapshot(reference).AsSpan().SequenceEqual(snapshot), $"seed {seed}, round {round}: snapshot differs from a full sort");
            if (random.Next(40) == 0) Assert.True(machine.TryRestore(FullSortSnapshot(reference)), $"seed {seed}, round {round}: restore refused");
        }
        output.WriteLine($"{machine.SnapshotsPatched} of {machine.SnapshotEncodings} snapshots patched");
        Assert.True(machine.SnapshotsPatched > machine.SnapshotEncodings / 2, $"only {machine.SnapshotsPatched} of {machine.SnapshotEncodings} snapshots took the patched path");
    }

    private static byte[] DigestThenSnapshot(KeyValueStateMachine machine)
    {
        _ = machine.Digest();
        return machine.Snapshot();
    }

    [Fact]
    public void Overwrites_alone_patch_the_last_snapshot_and_adding_a_key_walks_again()
    {
        var machine = new KeyValueStateMachine();
        var reference = new KeyValueStateMachine();
        void Put(string key, byte[] value)
        {
            var operation = KeyValueOperation.EncodePut(key, value);
            machine.Apply(operation);
            reference.Apply(operation);
        }
        byte[] Walked()
        {
            reference.ForgetSnapshotOrder();
            return reference.Snapshot();
        }

        for (var i = 0; i < 1_000; i++) Put("k" + i, [1, 2, 3]);
        var first = machine.Snapshot();
        Assert.Equal(0, machine.SnapshotsPatched);

        Put("k500", [9]);             // shorter
        Put("k7", [9, 9, 9, 9, 9]);   // longer
        Put("k999", [4, 5, 6]);       // same length
        var patched = machine.Snapshot();
        Assert.Equal(1, machine.SnapshotsPatched);
        Assert.Equal(Walked(), patched);
        Assert.Equal(first.Length, patched.Length); // -2 and +2
        Assert.NotSame(first, patched);

        // A second patch starts from the offsets the first one moved.
        Put("k8", [7]);
        Put("k500", [1, 2, 3, 4]);
        Assert.Equal(Walked(), machine.Snapshot());
        Assert.Equal(2, machine.SnapshotsPatched);

        Put("new key", [1]);
        Assert.Equal(Walked(), machine.Snapshot());
        Assert.Equal(2, machine.SnapshotsPatched);

        // Nothing changed: a fresh array with the same bytes, never the one handed out before.
        var before = machine.Snapshot();
        var again = machine.Snapshot();
        Assert.NotSame(before, again);
        Assert.Equal(before, again);
        Assert.Equal(Walked(), again);
    }
}
