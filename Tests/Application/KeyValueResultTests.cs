using MinBft.Application;
using MinBft.Encoding;
using Xunit.Abstractions;

namespace MinBft.Tests.Application;

public sealed class KeyValueResultTests(ITestOutputHelper output)
{
    public static IEnumerable<KeyValueResult> Samples()
    {
        yield return KeyValueResult.Ok;
        yield return KeyValueResult.OkWithValue([]);
        yield return KeyValueResult.OkWithValue("value"u8.ToArray());
        yield return KeyValueResult.OkWithValue(new byte[KeyValueOperation.MaxValueLength]);
        yield return KeyValueResult.NotFound;
        yield return KeyValueResult.CasMismatch(null);
        yield return KeyValueResult.CasMismatch([]);
        yield return KeyValueResult.CasMismatch([1, 2, 3]);
        yield return KeyValueResult.BadOperation;
    }

    [Fact]
    public void Every_shape_round_trips_to_an_equal_result_and_identical_bytes()
    {
        foreach (var result in Samples())
        {
            var bytes = result.Encode();
            Assert.True(bytes.Length <= MessageLimits.MaxResultLength);
            Assert.True(KeyValueResult.TryDecode(bytes, out var decoded), result.ToString());
            Assert.Equal(result, decoded);
            Assert.Equal(result.Status, decoded.Status);
            Assert.Equal(result.Value, decoded.Value);
            Assert.Equal(result.GetHashCode(), decoded.GetHashCode());
            Assert.Equal(bytes, decoded.Encode());
        }
    }

    [Fact]
    public void Layout_is_pinned()
    {
        Assert.Equal([0x01, 0x00], KeyValueResult.Ok.Encode());
        Assert.Equal([0x01, 0x01, 0, 0, 0, 1, 9], KeyValueResult.OkWithValue([9]).Encode());
        Assert.Equal([0x02, 0x00], KeyValueResult.NotFound.Encode());
        Assert.Equal([0x03, 0x00], KeyValueResult.CasMismatch(null).Encode());
        Assert.Equal([0x03, 0x01, 0, 0, 0, 0], KeyValueResult.CasMismatch([]).Encode());
        Assert.Equal([0x04, 0x00], KeyValueResult.BadOperation.Encode());
    }

    [Fact]
    public void An_empty_value_is_not_the_same_as_no_value()
    {
        Assert.NotEqual(KeyValueResult.Ok, KeyValueResult.OkWithValue([]));
        Assert.NotEqual(KeyValueResult.CasMismatch(null), KeyValueResult.CasMismatch([]));
        Assert.Equal(KeyValueResult.CasMismatch([1]), KeyValueResult.CasMismatch([1]));
    }

    [Fact]
    public void Factories_reject_oversized_or_null_values()
    {
        Assert.Throws<ArgumentNullException>(() => KeyValueResult.OkWithValue(null!));
        Assert.Throws<ArgumentException>(() => KeyValueResult.OkWithValue(new byte[KeyValueOperation.MaxValueLength + 1]));
        Assert.Throws<ArgumentException>(() => KeyValueResult.CasMismatch(new byte[KeyValueOperation.MaxValueLength + 1]));
    }

    [Theory]
    [InlineData(new byte[] { })]
    [InlineData(new byte[] { 0x01 })]                       // no presence byte
    [InlineData(new byte[] { 0x00, 0x00 })]                 // status 0
    [InlineData(new byte[] { 0x05, 0x00 })]                 // unknown status
    [InlineData(new byte[] { 0xFF, 0x00 })]
    [InlineData(new byte[] { 0x01, 0x02 })]                 // presence flag 2
    [InlineData(new byte[] { 0x02, 0x01, 0, 0, 0, 0 })]     // NotFound never carries a value
    [InlineData(new byte[] { 0x04, 0x01, 0, 0, 0, 1, 7 })]  // nor does BadOperation
    [InlineData(new byte[] { 0x01, 0x01, 0, 0, 0, 2, 7 })]  // value shorter than declared
    [InlineData(new byte[] { 0x01, 0x01, 0xFF, 0xFF, 0xFF, 0xFF })]
    [InlineData(new byte[] { 0x01, 0x00, 0x00 })]           // trailing byte
    [InlineData(new byte[] { 0x01, 0x01, 0, 0, 0, 1, 7, 8 })]
    public void Rejects_malformed_encodings(byte[] encoded)
    {
        Assert.False(KeyValueResult.TryDecode(encoded, out var result));
        Assert.Null(result);
    }

    [Fact]
    public void Rejects_a_value_over_the_limit_even_when_the_bytes_are_there()
    {
        var length = KeyValueOperation.MaxValueLength + 1;
        byte[] encoded = [0x01, 0x01, 0, (byte)(length >> 16), (byte)(length >> 8), (byte)length, .. new byte[length]];
        Assert.False(KeyValueResult.TryDecode(encoded, out _));
    }

    [Fact]
    public void Rejects_every_truncation_and_any_trailing_byte()
    {
        foreach (var result in Samples().Where(r => r.Value is null || r.Value.Length < 100))
        {
            var bytes = result.Encode();
            for (var length = 0; length < bytes.Length; length++)
                Assert.False(KeyValueResult.TryDecode(bytes.AsSpan(0, length), out _), $"{result} truncated to {length}");
            Assert.False(KeyValueResult.TryDecode([.. bytes, 0x00], out _), $"{result} plus a byte");
        }
    }

    [Fact]
    public void Fuzzed_input_never_throws_and_whatever_decodes_is_canonical()
    {
        var rng = FuzzSeed.Create(output);
        var samples = Samples().Where(r => r.Value is null || r.Value.Length < 100).Select(r => r.Encode()).ToArray();
        var accepted = 0;
        for (var i = 0; i < 20_000; i++)
        {
            byte[] input;
            if (i % 2 == 0)
            {
                input = new byte[rng.Next(0, 16)];
                rng.NextBytes(input);
                if (input.Length > 0 && rng.Next(4) != 0) input[0] = (byte)rng.Next(1, 5);
                if (input.Length > 1 && rng.Next(2) == 0) input[1] = (byte)rng.Next(0, 2);
            }
            else
            {
                input = RandomOperations.Mutate(rng, samples[rng.Next(samples.Length)]);
            }

            if (!KeyValueResult.TryDecode(input, out var result)) continue;
            accepted++;
            Assert.Equal(input, result.Encode());
        }
        output.WriteLine($"accepted {accepted} of 20000 fuzzed inputs");
    }
}
