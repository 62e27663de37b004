using MinBft.Application;
using MinBft.Encoding;
using Xunit.Abstractions;

namespace MinBft.Tests.Application;

public sealed class KeyValueOperationTests(ITestOutputHelper output)
{
    private static readonly string MaxKey = new('k', KeyValueOperation.MaxKeyLength);
    private static readonly byte[] MaxValue = Filled(KeyValueOperation.MaxValueLength, 0xAB);

    private static byte[] Filled(int length, byte value)
    {
        var bytes = new byte[length];
        Array.Fill(bytes, value);
        return bytes;
    }

    public static IEnumerable<KeyValueOperation> Samples()
    {
        yield return new PutOperation("k", "v"u8.ToArray());
        yield return new PutOperation("", []);
        yield return new PutOperation(MaxKey, MaxValue);
        yield return new PutOperation("日本\U0001F600\uFFFF", [0, 1, 2, 0xFF]);
        yield return new GetOperation("k");
        yield return new GetOperation("");
        yield return new GetOperation(MaxKey);
        yield return new DeleteOperation("k");
        yield return new DeleteOperation("\U0001F600");
        yield return new CompareAndSetOperation("k", "old"u8.ToArray(), "new"u8.ToArray());
        yield return new CompareAndSetOperation("k", null, "new"u8.ToArray());
        yield return new CompareAndSetOperation("k", [], []);
        yield return new CompareAndSetOperation("", null, []);
        // Largest CAS that fits the operation limit: both values share it.
        var budget = MessageLimits.MaxOperationLength - (1 + 2 + MaxKey.Length + 1 + 4 + 4);
        yield return new CompareAndSetOperation(MaxKey, Filled(budget - MaxValue.Length, 1), MaxValue);
        yield return new CompareAndSetOperation(MaxKey, null, MaxValue);
    }

    [Fact]
    public void Every_sample_round_trips_to_an_equal_operation_and_identical_bytes()
    {
        foreach (var op in Samples())
        {
            var bytes = op.Encode();
            Assert.True(bytes.Length <= MessageLimits.MaxOperationLength);
            Assert.True(KeyValueOperation.TryDecode(bytes, out var decoded), op.ToString());
            Assert.Equal(op, decoded);
            Assert.Equal(op.GetHashCode(), decoded.GetHashCode());
            Assert.Equal(bytes, decoded.Encode());
        }
    }

    [Fact]
    public void Static_encoders_match_the_record_encoders()
    {
        Assert.Equal(new PutOperation("k", [1, 2]).Encode(), KeyValueOperation.EncodePut("k", [1, 2]));
        Assert.Equal(new GetOperation("k").Encode(), KeyValueOperation.EncodeGet("k"));
        Assert.Equal(new DeleteOperation("k").Encode(), KeyValueOperation.EncodeDelete("k"));
        Assert.Equal(new CompareAndSetOperation("k", [1], [2]).Encode(), KeyValueOperation.EncodeCompareAndSet("k", [1], [2]));
        Assert.Equal(new CompareAndSetOperation("k", null, [2]).Encode(), KeyValueOperation.EncodeCompareAndSetAbsent("k", [2]));
    }

    [Fact]
    public void Layout_is_pinned()
    {
        // Replicas of different builds must agree on these bytes; a change here needs a new opcode.
        Assert.Equal([0x01, 0x00, 0x01, (byte)'a', 0x00, 0x00, 0x00, 0x01, 0x07], KeyValueOperation.EncodePut("a", [7]));
        Assert.Equal([0x02, 0x00, 0x02, (byte)'a', (byte)'b'], KeyValueOperation.EncodeGet("ab"));
        Assert.Equal([0x03, 0x00, 0x00], KeyValueOperation.EncodeDelete(""));
        Assert.Equal([0x04, 0x00, 0x01, (byte)'a', 0x01, 0, 0, 0, 1, 5, 0, 0, 0, 1, 6],
            KeyValueOperation.EncodeCompareAndSet("a", [5], [6]));
        Assert.Equal([0x04, 0x00, 0x01, (byte)'a', 0x00, 0, 0, 0, 1, 6],
            KeyValueOperation.EncodeCompareAndSetAbsent("a", [6]));
    }

    [Fact]
    public void Decoded_operations_have_the_expected_fields()
    {
        Assert.True(KeyValueOperation.TryDecode(KeyValueOperation.EncodeCompareAndSetAbsent("日本", [9]), out var op));
        var cas = Assert.IsType<CompareAndSetOperation>(op);
        Assert.Equal("日本", cas.Key);
        Assert.True(cas.ExpectsAbsent);
        Assert.Equal([9], cas.NewValue);
    }

    [Fact]
    public void Equality_compares_array_contents_and_distinguishes_absent_from_empty()
    {
        Assert.Equal(new PutOperation("k", [1, 2]), new PutOperation("k", [1, 2]));
        Assert.NotEqual(new PutOperation("k", [1, 2]), new PutOperation("k", [1, 3]));
        Assert.NotEqual(new CompareAndSetOperation("k", null, [1]), new CompareAndSetOperation("k", [], [1]));
        Assert.NotEqual<KeyValueOperation>(new GetOperation("k"), new DeleteOperation("k"));
    }

    [Fact]
    public void Encoders_reject_out_of_bounds_fields()
    {
        Assert.Throws<ArgumentException>(() => KeyValueOperation.EncodeGet(new string('k', KeyValueOperation.MaxKeyLength + 1)));
        // 342 three-byte characters: 342 UTF-16 units but 1026 UTF-8 bytes; the limit is in bytes.
        Assert.Throws<ArgumentException>(() => KeyValueOperation.EncodeGet(new string('日', 342)));
        KeyValueOperation.EncodeGet(new string('日', 341));
        Assert.Throws<ArgumentException>(() => KeyValueOperation.EncodeGet("bad\uD800"));
        Assert.Throws<ArgumentNullException>(() => KeyValueOperation.EncodeGet(null!));
        Assert.Throws<ArgumentException>(() => KeyValueOperation.EncodePut("k", new byte[KeyValueOperation.MaxValueLength + 1]));
        Assert.Throws<ArgumentException>(() => KeyValueOperation.EncodeCompareAndSet("k", new byte[KeyValueOperation.MaxValueLength + 1], []));
        Assert.Throws<ArgumentException>(() => KeyValueOperation.EncodeCompareAndSet("k", MaxValue, MaxValue));
        Assert.Throws<ArgumentNullException>(() => new PutOperation("k", null!).Encode());
        Assert.Throws<ArgumentNullException>(() => new CompareAndSetOperation("k", null, null!).Encode());
    }

    [Fact]
    public void Rejects_empty_and_unknown_opcodes()
    {
        Assert.False(KeyValueOperation.TryDecode([], out _));
        foreach (var opcode in new byte[] { 0x00, 0x05, 0x7F, 0xFF })
            Assert.False(KeyValueOperation.TryDecode([opcode, 0x00, 0x00], out _));
    }

    [Fact]
    public void Rejects_every_truncation_and_any_trailing_byte()
    {
        foreach (var op in Samples().Where(o => o.Key.Length < 100))
        {
            var bytes = op.Encode();
            for (var length = 0; length < bytes.Length; length++)
                Assert.False(KeyValueOperation.TryDecode(bytes.AsSpan(0, length), out _), $"{op} truncated to {length}");
            Assert.False(KeyValueOperation.TryDecode([.. bytes, 0x00], out _), $"{op} plus a byte");
        }
    }

    [Fact]
    public void Rejects_a_key_over_the_limit()
    {
        var key = Filled(KeyValueOperation.MaxKeyLength + 1, (byte)'k');
        byte[] get = [0x02, (byte)(key.Length >> 8), (byte)key.Length, .. key];
        Assert.False(KeyValueOperation.TryDecode(get, out _));
        // The same layout at the limit is accepted, so the rejection above is the length.
        byte[] atLimit = [0x02, 0x04, 0x00, .. key.AsSpan(1)];
        Assert.True(KeyValueOperation.TryDecode(atLimit, out _));
    }

    [Theory]
    [InlineData(new byte[] { 0xFF })]                 // never valid in UTF-8
    [InlineData(new byte[] { 0xC0, 0x80 })]           // overlong NUL
    [InlineData(new byte[] { 0xED, 0xA0, 0x80 })]     // encoded surrogate
    [InlineData(new byte[] { 0xE6, 0x97 })]           // truncated sequence
    [InlineData(new byte[] { 0xF4, 0x90, 0x80, 0x80 })] // above U+10FFFF
    public void Rejects_keys_that_are_not_valid_utf8(byte[] key)
    {
        byte[] get = [0x02, 0x00, (byte)key.Length, .. key];
        Assert.False(KeyValueOperation.TryDecode(get, out _));
    }

    [Fact]
    public void Rejects_a_value_over_the_limit_even_when_the_bytes_are_there()
    {
        var length = KeyValueOperation.MaxValueLength + 1;
        byte[] put = [0x01, 0x00, 0x01, (byte)'k', 0, (byte)(length >> 16), (byte)(length >> 8), (byte)length, .. new byte[length]];
        Assert.True(put.Length <= MessageLimits.MaxOperationLength);
        Assert.False(KeyValueOperation.TryDecode(put, out _));
    }

    [Fact]
    public void Rejects_huge_declared_lengths_without_allocating_them()
    {
        Assert.False(KeyValueOperation.TryDecode([0x01, 0x00, 0x01, (byte)'k', 0xFF, 0xFF, 0xFF, 0xFF], out _));
        Assert.False(KeyValueOperation.TryDecode([0x01, 0x00, 0x01, (byte)'k', 0x7F, 0xFF, 0xFF, 0xFF, 1], out _));
        Assert.False(KeyValueOperation.TryDecode([0x02, 0xFF, 0xFF, (byte)'k'], out _));
    }

    [Fact]
    public void Rejects_input_over_the_operation_limit()
    {
        // A CAS whose two values are each within bounds but whose total is not.
        byte[] cas =
        [
            0x04, 0x00, 0x01, (byte)'k',
            0x01, 0x00, 0x00, 0xF0, 0x00, .. MaxValue,
            0x00, 0x00, 0xF0, 0x00, .. MaxValue,
        ];
        Assert.True(cas.Length > MessageLimits.MaxOperationLength);
        Assert.False(KeyValueOperation.TryDecode(cas, out _));
    }

    [Theory]
    [InlineData(0x02)]
    [InlineData(0xFF)]
    public void Rejects_a_cas_presence_flag_other_than_0_or_1(byte flag)
    {
        byte[] cas = [0x04, 0x00, 0x01, (byte)'k', flag, 0, 0, 0, 0, 0, 0, 0, 0];
        Assert.False(KeyValueOperation.TryDecode(cas, out _));
    }

    [Fact]
    public void Fuzzed_input_never_throws_and_whatever_decodes_is_canonical()
    {
        var rng = FuzzSeed.Create(output);
        var samples = Samples().Where(o => o.Key.Length < 100).Select(o => o.Encode()).ToArray();
        var accepted = 0;
        for (var i = 0; i < 20_000; i++)
        {
            byte[] input;
            if (i % 2 == 0)
            {
                input = new byte[rng.Next(0, 48)];
                rng.NextBytes(input);
                // Mostly valid opcodes and short key lengths, so the fuzz gets past the first bytes.
                if (input.Length > 0 && rng.Next(4) != 0) input[0] = (byte)rng.Next(1, 5);
                if (input.Length > 2 && rng.Next(2) == 0) input[1] = 0;
            }
            else
            {
                var valid = rng.Next(2) == 0 ? samples[rng.Next(samples.Length)] : RandomOperations.Next(rng);
                input = RandomOperations.Mutate(rng, valid);
            }

            if (!KeyValueOperation.TryDecode(input, out var op)) continue;
            accepted++;
            // One encoding per operation: anything accepted must re-encode to exactly itself.
            Assert.Equal(input, op.Encode());
        }
        output.WriteLine($"accepted {accepted} of 20000 fuzzed inputs");
    }
}
