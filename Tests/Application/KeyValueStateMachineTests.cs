using System.Buffers.Binary;
using System.Security.Cryptography;
using MinBft.Application;
using Xunit.Abstractions;

namespace MinBft.Tests.Application;

public sealed class KeyValueStateMachineTests(ITestOutputHelper output)
{
    private static byte[] B(string text) => System.Text.Encoding.UTF8.GetBytes(text);

    private static KeyValueResult Apply(KeyValueStateMachine machine, byte[] operation)
    {
        var bytes = machine.Apply(operation);
        Assert.True(KeyValueResult.TryDecode(bytes, out var result), "Apply returned an undecodable result");
        return result;
    }

    private static KeyValueResult Put(KeyValueStateMachine m, string key, byte[] value) => Apply(m, KeyValueOperation.EncodePut(key, value));
    private static KeyValueResult Get(KeyValueStateMachine m, string key) => Apply(m, KeyValueOperation.EncodeGet(key));
    private static KeyValueResult Delete(KeyValueStateMachine m, string key) => Apply(m, KeyValueOperation.EncodeDelete(key));
    private static KeyValueResult Cas(KeyValueStateMachine m, string key, byte[] expected, byte[] value) =>
        Apply(m, KeyValueOperation.EncodeCompareAndSet(key, expected, value));
    private static KeyValueResult CasAbsent(KeyValueStateMachine m, string key, byte[] value) =>
        Apply(m, KeyValueOperation.EncodeCompareAndSetAbsent(key, value));

    private static KeyValueStateMachine Populated()
    {
        var m = new KeyValueStateMachine();
        Put(m, "alpha", B("1"));
        Put(m, "beta", []);
        Put(m, "日本", B("語"));
        Put(m, "\U0001F600", [0xFF, 0x00]);
        return m;
    }

    // ---- basic semantics -------------------------------------------------------------------

    [Fact]
    public void Put_get_delete()
    {
        var m = new KeyValueStateMachine();
        Assert.Equal(KeyValueResult.NotFound, Get(m, "k"));
        Assert.Equal(KeyValueResult.Ok, Put(m, "k", B("v1")));
        Assert.Equal(KeyValueResult.OkWithValue(B("v1")), Get(m, "k"));
        Assert.Equal(KeyValueResult.Ok, Put(m, "k", B("v2")));
        Assert.Equal(KeyValueResult.OkWithValue(B("v2")), Get(m, "k"));
        Assert.Equal(1, m.Count);
        Assert.Equal(KeyValueResult.Ok, Delete(m, "k"));
        Assert.Equal(KeyValueResult.NotFound, Delete(m, "k"));
        Assert.Equal(KeyValueResult.NotFound, Get(m, "k"));
        Assert.Equal(0, m.Count);
    }

    [Fact]
    public void Empty_value_and_empty_key_are_ordinary()
    {
        var m = new KeyValueStateMachine();
        Put(m, "", []);
        Assert.Equal(KeyValueResult.OkWithValue([]), Get(m, ""));
        Assert.True(m.TryGetValue("", out var value));
        Assert.Empty(value);
    }

    [Fact]
    public void TryGetValue_returns_a_copy()
    {
        var m = new KeyValueStateMachine();
        Put(m, "k", [1, 2, 3]);
        var digest = m.Digest();
        Assert.True(m.TryGetValue("k", out var value));
        value[0] = 99;
        Assert.Equal(KeyValueResult.OkWithValue([1, 2, 3]), Get(m, "k"));
        Assert.Equal(digest, m.Digest());
        Assert.False(m.TryGetValue("missing", out _));
    }

    // ---- compare-and-set -------------------------------------------------------------------

    [Fact]
    public void Cas_absent_succeeds_only_when_the_key_is_absent()
    {
        var m = new KeyValueStateMachine();
        Assert.Equal(KeyValueResult.Ok, CasAbsent(m, "k", B("first")));
        Assert.Equal(KeyValueResult.OkWithValue(B("first")), Get(m, "k"));

        var before = StateFingerprint.Of(m);
        Assert.Equal(KeyValueResult.CasMismatch(B("first")), CasAbsent(m, "k", B("second")));
        before.AssertSame(m);
    }

    [Fact]
    public void Cas_present_succeeds_only_on_an_exact_match()
    {
        var m = new KeyValueStateMachine();
        Put(m, "k", B("v1"));

        var before = StateFingerprint.Of(m);
        Assert.Equal(KeyValueResult.CasMismatch(B("v1")), Cas(m, "k", B("v0"), B("v2")));
        Assert.Equal(KeyValueResult.CasMismatch(B("v1")), Cas(m, "k", B("v1 "), B("v2")));  // prefix is not a match
        Assert.Equal(KeyValueResult.CasMismatch(B("v1")), Cas(m, "k", B("v"), B("v2")));
        before.AssertSame(m);

        Assert.Equal(KeyValueResult.Ok, Cas(m, "k", B("v1"), B("v2")));
        Assert.Equal(KeyValueResult.OkWithValue(B("v2")), Get(m, "k"));
        Assert.NotEqual(before.Digest, m.Digest());
    }

    [Fact]
    public void Cas_expecting_a_value_on_an_absent_key_mismatches_without_a_value()
    {
        var m = new KeyValueStateMachine();
        var before = StateFingerprint.Of(m);
        Assert.Equal(KeyValueResult.CasMismatch(null), Cas(m, "k", [], B("v")));
        before.AssertSame(m);
        Assert.Equal(KeyValueResult.NotFound, Get(m, "k"));
    }

    [Fact]
    public void Cas_distinguishes_an_empty_value_from_absence()
    {
        var m = new KeyValueStateMachine();
        Put(m, "k", []);
        Assert.Equal(KeyValueResult.CasMismatch([]), CasAbsent(m, "k", B("x")));
        Assert.Equal(KeyValueResult.Ok, Cas(m, "k", [], B("x")));
        Assert.Equal(KeyValueResult.OkWithValue(B("x")), Get(m, "k"));
    }

    [Fact]
    public void Cas_after_delete_sees_the_key_as_absent()
    {
        var m = new KeyValueStateMachine();
        Put(m, "k", B("v"));
        Delete(m, "k");
        Assert.Equal(KeyValueResult.CasMismatch(null), Cas(m, "k", B("v"), B("w")));
        Assert.Equal(KeyValueResult.Ok, CasAbsent(m, "k", B("w")));
    }

    [Fact]
    public void Matches_a_reference_model_on_random_operations()
    {
        var rng = FuzzSeed.Create(output);
        var m = new KeyValueStateMachine();
        var model = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        for (var i = 0; i < 5_000; i++)
        {
            var bytes = RandomOperations.Next(rng);
            Assert.True(KeyValueOperation.TryDecode(bytes, out var op));
            var present = model.TryGetValue(op.Key, out var current);
            KeyValueResult expected;
            switch (op)
            {
                case PutOperation put:
                    model[put.Key] = put.Value;
                    expected = KeyValueResult.Ok;
                    break;
                case GetOperation:
                    expected = present ? KeyValueResult.OkWithValue(current!) : KeyValueResult.NotFound;
                    break;
                case DeleteOperation:
                    model.Remove(op.Key);
                    expected = present ? KeyValueResult.Ok : KeyValueResult.NotFound;
                    break;
                case CompareAndSetOperation cas:
                    var match = cas.Expected is null ? !present : present && current!.SequenceEqual(cas.Expected);
                    if (match) model[cas.Key] = cas.NewValue;
                    expected = match ? KeyValueResult.Ok : KeyValueResult.CasMismatch(current);
                    break;
                default:
                    throw new InvalidOperationException(op.ToString());
            }
            Assert.Equal(expected, Apply(m, bytes));
            Assert.Equal(model.Count, m.Count);
        }
        foreach (var (key, value) in model)
        {
            Assert.True(m.TryGetValue(key, out var stored));
            Assert.Equal(value, stored);
        }
    }

    // ---- malformed operations --------------------------------------------------------------

    [Theory]
    [InlineData(new byte[] { })]
    [InlineData(new byte[] { 0x00 })]
    [InlineData(new byte[] { 0x09, 0x00, 0x00 })]
    [InlineData(new byte[] { 0x01, 0x00, 0x01, (byte)'k' })]                       // Put without a value
    [InlineData(new byte[] { 0x01, 0x00, 0x01, (byte)'k', 0, 0, 0, 0, 0 })]        // trailing byte
    [InlineData(new byte[] { 0x03, 0x00, 0x01, 0xFF })]                            // invalid UTF-8 key
    [InlineData(new byte[] { 0x04, 0x00, 0x01, (byte)'k', 0x02, 0, 0, 0, 0 })]     // bad presence flag
    public void A_malformed_operation_is_a_bad_operation_and_changes_nothing(byte[] operation)
    {
        var m = Populated();
        var before = StateFingerprint.Of(m);
        Assert.Equal(KeyValueResult.BadOperation.Encode(), m.Apply(operation));
        before.AssertSame(m);
    }

    [Fact]
    public void An_oversized_operation_is_a_bad_operation_and_changes_nothing()
    {
        var m = Populated();
        var before = StateFingerprint.Of(m);
        var huge = new byte[MinBft.Encoding.MessageLimits.MaxOperationLength + 1];
        huge[0] = 0x01;
        Assert.Equal(KeyValueResult.BadOperation.Encode(), m.Apply(huge));
        before.AssertSame(m);
    }

    [Fact]
    public void Fuzzed_operations_never_throw_and_rejected_ones_change_nothing()
    {
        var rng = FuzzSeed.Create(output);
        var m = Populated();
        var reference = Populated();
        var rejected = 0;
        for (var i = 0; i < 10_000; i++)
        {
            byte[] input;
            if (i % 2 == 0)
            {
                input = new byte[rng.Next(0, 40)];
                rng.NextBytes(input);
                if (input.Length > 0 && rng.Next(4) != 0) input[0] = (byte)rng.Next(1, 5);
            }
            else
            {
                input = RandomOperations.Mutate(rng, RandomOperations.Next(rng));
            }

            var before = StateFingerprint.Of(m);
            var result = m.Apply(input);
            if (KeyValueOperation.TryDecode(input, out _))
            {
                // A mutation that happens to be a valid operation: it must act like one.
                Assert.Equal(reference.Apply(input), result);
                Assert.Equal(reference.Digest(), m.Digest());
                continue;
            }
            rejected++;
            Assert.Equal(KeyValueResult.BadOperation.Encode(), result);
            before.AssertSame(m);
        }
        output.WriteLine($"rejected {rejected} of 10000 fuzzed operations");
    }

    // ---- determinism and digests -----------------------------------------------------------

    [Fact]
    public void Same_operations_give_same_results_snapshots_and_digests()
    {
        var rng = FuzzSeed.Create(output);
        var operations = RandomOperations.Sequence(rng, 3_000);
        var a = new KeyValueStateMachine();
        var b = new KeyValueStateMachine();
        for (var i = 0; i < operations.Length; i++)
        {
            Assert.Equal(a.Apply(operations[i]), b.Apply(operations[i]));
            if (i % 250 == 0) Assert.Equal(a.Digest(), b.Digest());
        }
        Assert.Equal(a.Snapshot(), b.Snapshot());
        Assert.Equal(a.Digest(), b.Digest());
        Assert.Equal(a.Count, b.Count);
    }

    [Fact]
    public void Different_operations_give_different_digests()
    {
        var rng = FuzzSeed.Create(output);
        var operations = RandomOperations.Sequence(rng, 1_000);

        var a = new KeyValueStateMachine();
        var b = new KeyValueStateMachine();
        var c = new KeyValueStateMachine();
        foreach (var op in operations)
        {
            a.Apply(op);
            b.Apply(op);
            c.Apply(op);
        }
        // The generator never uses this key, so b's extra entry is a real difference.
        b.Apply(KeyValueOperation.EncodePut("only-in-b", [1]));
        c.Apply(KeyValueOperation.EncodePut("only-in-b", [2]));

        Assert.NotEqual(a.Digest(), b.Digest());
        Assert.NotEqual(a.Snapshot(), b.Snapshot());
        Assert.NotEqual(b.Digest(), c.Digest());
        Assert.NotEqual(b.Snapshot(), c.Snapshot());
    }

    [Fact]
    public void Digest_is_independent_of_insertion_order_and_history()
    {
        var rng = FuzzSeed.Create(output);
        var entries = RandomOperations.Keys
            .Select((key, i) => (Key: key, Value: RandomOperations.Value(rng)))
            .ToArray();

        var reference = new KeyValueStateMachine();
        foreach (var (key, value) in entries) Put(reference, key, value);

        for (var round = 0; round < 20; round++)
        {
            var shuffled = entries.ToArray();
            rng.Shuffle(shuffled);
            var m = new KeyValueStateMachine();
            foreach (var (key, value) in shuffled)
            {
                // History that ends in the same state: overwritten values and a deleted key.
                if (rng.Next(2) == 0) Put(m, key, B("stale"));
                if (rng.Next(4) == 0) Put(m, "transient", B("gone"));
                Put(m, key, value);
            }
            Delete(m, "transient");
            Assert.Equal(reference.Digest(), m.Digest());
            Assert.Equal(reference.Snapshot(), m.Snapshot());
        }
    }

    [Fact]
    public void Digest_is_sha256_of_the_snapshot_and_tracks_every_mutation()
    {
        var m = new KeyValueStateMachine();
        var empty = m.Digest();
        Assert.Equal(SHA256.HashData(m.Snapshot()), empty);

        Put(m, "k", B("v"));
        var afterPut = m.Digest();
        Assert.NotEqual(empty, afterPut);
        Assert.Equal(SHA256.HashData(m.Snapshot()), afterPut);

        // Reads and failed writes do not change the state, so not the digest.
        Get(m, "k");
        Delete(m, "missing");
        CasAbsent(m, "k", B("w"));
        Assert.Equal(afterPut, m.Digest());

        Cas(m, "k", B("v"), B("w"));
        Assert.NotEqual(afterPut, m.Digest());
        Assert.Equal(SHA256.HashData(m.Snapshot()), m.Digest());

        Delete(m, "k");
        Assert.Equal(empty, m.Digest());
    }

    [Fact]
    public void Digest_callers_cannot_corrupt_the_cached_digest()
    {
        var m = Populated();
        var first = m.Digest();
        var expected = first.ToArray();
        Array.Clear(first);
        Assert.Equal(expected, m.Digest());
        Assert.Equal(32, expected.Length);
    }

    // ---- snapshots -------------------------------------------------------------------------

    [Fact]
    public void Empty_snapshot_is_the_header_and_a_zero_count()
    {
        Assert.Equal([.. "MINBFT-KV"u8, 0x01, 0, 0, 0, 0], new KeyValueStateMachine().Snapshot());
    }

    [Fact]
    public void Snapshot_layout_is_pinned()
    {
        var m = new KeyValueStateMachine();
        Put(m, "b", [2]);
        Put(m, "a", []);
        byte[] expected =
        [
            .. "MINBFT-KV"u8, 0x01, 0, 0, 0, 2,
            0, 1, (byte)'a', 0, 0, 0, 0,
            0, 1, (byte)'b', 0, 0, 0, 1, 2,
        ];
        Assert.Equal(expected, m.Snapshot());
    }

    [Fact]
    public void Snapshot_orders_keys_by_utf8_bytes_not_utf16()
    {
        // UTF-16 ordinal order: "a" < U+1F600 (surrogate D83D) < U+FFFF.
        // UTF-8 byte order:     "a" < U+FFFF (EF BF BF) < U+1F600 (F0 9F 98 80).
        var m = new KeyValueStateMachine();
        Put(m, "\U0001F600", [1]);
        Put(m, "\uFFFF", [2]);
        Put(m, "a", [3]);
        Assert.Equal(["a", "\uFFFF", "\U0001F600"], SnapshotKeys(m.Snapshot()));

        var utf16Order = BuildSnapshot(("a", [3]), ("\U0001F600", [1]), ("\uFFFF", [2]));
        var fresh = new KeyValueStateMachine();
        Assert.False(fresh.TryRestore(utf16Order));
        Assert.True(fresh.TryRestore(BuildSnapshot(("a", [3]), ("\uFFFF", [2]), ("\U0001F600", [1]))));
        Assert.Equal(m.Digest(), fresh.Digest());
    }

    [Fact]
    public void Restore_into_a_fresh_machine_gives_equal_state_and_equal_behaviour()
    {
        var rng = FuzzSeed.Create(output);
        var original = new KeyValueStateMachine();
        foreach (var op in RandomOperations.Sequence(rng, 2_000)) original.Apply(op);

        var snapshot = original.Snapshot();
        var restored = new KeyValueStateMachine();
        Assert.True(restored.TryRestore(snapshot));
        Assert.Equal(original.Digest(), restored.Digest());
        Assert.Equal(snapshot, restored.Snapshot());
        Assert.Equal(original.Count, restored.Count);
        // The digest set on restore must equal a recomputation from the restored state.
        Assert.Equal(SHA256.HashData(restored.Snapshot()), restored.Digest());

        foreach (var op in RandomOperations.Sequence(rng, 2_000))
            Assert.Equal(original.Apply(op), restored.Apply(op));
        Assert.Equal(original.Digest(), restored.Digest());
        Assert.Equal(original.Snapshot(), restored.Snapshot());
    }

    [Fact]
    public void Restore_replaces_existing_state_entirely()
    {
        var m = Populated();
        var other = new KeyValueStateMachine();
        Put(other, "only", B("this"));
        Assert.True(m.TryRestore(other.Snapshot()));
        Assert.Equal(1, m.Count);
        Assert.Equal(KeyValueResult.NotFound, Get(m, "alpha"));
        Assert.Equal(other.Digest(), m.Digest());

        Assert.True(m.TryRestore(new KeyValueStateMachine().Snapshot()));
        Assert.Equal(0, m.Count);
        Assert.Equal(new KeyValueStateMachine().Digest(), m.Digest());
    }

    [Fact]
    public void Restore_copies_its_input()
    {
        var source = Populated();
        // A copy: the array a service hands out is never written into, by it or by the replica.
        var snapshot = source.Snapshot().ToArray();
        var m = new KeyValueStateMachine();
        Assert.True(m.TryRestore(snapshot));
        Array.Clear(snapshot);
        Assert.Equal(source.Snapshot(), m.Snapshot());
    }

    public static TheoryData<string, byte[]> MalformedSnapshots()
    {
        var overKey = new string('k', KeyValueOperation.MaxKeyLength + 1);
        var overValue = new byte[KeyValueOperation.MaxValueLength + 1];
        var valid = BuildSnapshot(("a", [1]), ("b", [2]));
        return new TheoryData<string, byte[]>
        {
            { "empty", [] },
            { "header only", [.. "MINBFT-KV"u8, 0x01] },
            { "wrong version", [.. "MINBFT-KV"u8, 0x02, 0, 0, 0, 0] },
            { "wrong magic", [.. "MINBFT-XX"u8, 0x01, 0, 0, 0, 0] },
            { "trailing byte", [.. valid, 0] },
            { "count too high", WithCount(valid, 3) },
            { "count too low", WithCount(valid, 1) },
            { "count absurd", WithCount(valid, uint.MaxValue) },
            { "duplicate key", BuildSnapshot(("a", [1]), ("a", [1])) },
            { "descending keys", BuildSnapshot(("b", [1]), ("a", [1])) },
            { "prefix after longer key", BuildSnapshot(("ab", [1]), ("a", [1])) },
            { "invalid utf8 key", BuildRawSnapshot(([0xC0, 0x80], [1])) },
            { "encoded surrogate key", BuildRawSnapshot(([0xED, 0xA0, 0x80], [1])) },
            { "key over limit", BuildSnapshot((overKey, [1])) },
            { "value over limit", BuildSnapshot(("a", overValue)) },
            { "value length past end", [.. "MINBFT-KV"u8, 0x01, 0, 0, 0, 1, 0, 1, (byte)'a', 0xFF, 0xFF, 0xFF, 0xFF] },
        };
    }

    [Theory]
    [MemberData(nameof(MalformedSnapshots))]
    public void A_malformed_snapshot_is_rejected_and_changes_nothing(string why, byte[] snapshot)
    {
        var m = Populated();
        var before = StateFingerprint.Of(m);
        Assert.False(m.TryRestore(snapshot), why);
        before.AssertSame(m);
    }

    [Fact]
    public void Every_truncation_of_a_snapshot_is_rejected()
    {
        var snapshot = Populated().Snapshot();
        var m = new KeyValueStateMachine();
        Put(m, "keep", B("me"));
        var before = StateFingerprint.Of(m);
        for (var length = 0; length < snapshot.Length; length++)
        {
            Assert.False(m.TryRestore(snapshot.AsSpan(0, length)), $"truncated to {length}");
            before.AssertSame(m);
        }
    }

    [Fact]
    public void Fuzzed_snapshots_never_throw_and_are_accepted_only_if_canonical()
    {
        var rng = FuzzSeed.Create(output);
        var source = new KeyValueStateMachine();
        foreach (var op in RandomOperations.Sequence(rng, 200)) source.Apply(op);
        var valid = source.Snapshot();

        var m = Populated();
        var accepted = 0;
        for (var i = 0; i < 3_000; i++)
        {
            var input = RandomOperations.Mutate(rng, valid);
            var before = StateFingerprint.Of(m);
            if (m.TryRestore(input))
            {
                accepted++;
                // Accepted bytes must be exactly what the restored state snapshots to.
                Assert.Equal(input, m.Snapshot());
                Assert.Equal(SHA256.HashData(input), m.Digest());
                Assert.True(m.TryRestore(before.Snapshot));
            }
            before.AssertSame(m);
        }
        output.WriteLine($"accepted {accepted} of 3000 mutated snapshots");
    }

    // ---- helpers ---------------------------------------------------------------------------

    private static byte[] BuildSnapshot(params (string Key, byte[] Value)[] entries) =>
        BuildRawSnapshot(entries.Select(e => (B(e.Key), e.Value)).ToArray());

    /// <summary>Writes the snapshot layout verbatim, in the given order, without any validation.</summary>
    private static byte[] BuildRawSnapshot(params (byte[] Key, byte[] Value)[] entries)
    {
        var bytes = new List<byte>(KeyValueStateMachine.SnapshotHeader.ToArray());
        var scratch = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(scratch, (uint)entries.Length);
        bytes.AddRange(scratch);
        foreach (var (key, value) in entries)
        {
            bytes.Add((byte)(key.Length >> 8));
            bytes.Add((byte)key.Length);
            bytes.AddRange(key);
            BinaryPrimitives.WriteUInt32BigEndian(scratch, (uint)value.Length);
            bytes.AddRange(scratch);
            bytes.AddRange(value);
        }
        return [.. bytes];
    }

    private static byte[] WithCount(byte[] snapshot, uint count)
    {
        var copy = snapshot.ToArray();
        BinaryPrimitives.WriteUInt32BigEndian(copy.AsSpan(KeyValueStateMachine.SnapshotHeader.Length), count);
        return copy;
    }

    private static List<string> SnapshotKeys(byte[] snapshot)
    {
        var keys = new List<string>();
        var offset = KeyValueStateMachine.SnapshotHeader.Length;
        var count = BinaryPrimitives.ReadUInt32BigEndian(snapshot.AsSpan(offset));
        offset += 4;
        for (var i = 0; i < count; i++)
        {
            var keyLength = BinaryPrimitives.ReadUInt16BigEndian(snapshot.AsSpan(offset));
            offset += 2;
            keys.Add(System.Text.Encoding.UTF8.GetString(snapshot, offset, keyLength));
            offset += keyLength;
            var valueLength = (int)BinaryPrimitives.ReadUInt32BigEndian(snapshot.AsSpan(offset));
            offset += 4 + valueLength;
        }
        return keys;
    }
}
