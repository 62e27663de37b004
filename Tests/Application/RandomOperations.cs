using MinBft.Application;

namespace MinBft.Tests.Application;

/// <summary>Random but valid key-value operations over a small key and value pool, so keys collide and CAS sometimes matches.</summary>
internal static class RandomOperations
{
    public static readonly string[] Keys =
        ["", "a", "b", "key", "k1", "k2", "日本", "\uFFFF", "\U0001F600", "\uE000", new string('x', 40)];

    public static readonly byte[][] Values = [[], [0], [1], [1, 2, 3], [0xFF, 0x00], "hello"u8.ToArray()];

    public static byte[] Next(Random rng)
    {
        var key = Keys[rng.Next(Keys.Length)];
        return rng.Next(4) switch
        {
            0 => KeyValueOperation.EncodePut(key, Value(rng)),
            1 => KeyValueOperation.EncodeGet(key),
            2 => KeyValueOperation.EncodeDelete(key),
            _ => rng.Next(3) == 0
                ? KeyValueOperation.EncodeCompareAndSetAbsent(key, Value(rng))
                : KeyValueOperation.EncodeCompareAndSet(key, Value(rng), Value(rng)),
        };
    }

    public static byte[][] Sequence(Random rng, int count)
    {
        var result = new byte[count][];
        for (var i = 0; i < count; i++) result[i] = Next(rng);
        return result;
    }

    public static byte[] Value(Random rng)
    {
        if (rng.Next(4) != 0) return Values[rng.Next(Values.Length)];
        var bytes = new byte[rng.Next(0, 100)];
        rng.NextBytes(bytes);
        return bytes;
    }

    /// <summary>A random corruption of <paramref name="valid"/>: flip, truncate, extend, insert or delete bytes.</summary>
    public static byte[] Mutate(Random rng, byte[] valid)
    {
        var bytes = new List<byte>(valid);
        var edits = rng.Next(1, 4);
        for (var e = 0; e < edits; e++)
        {
            switch (rng.Next(5))
            {
                case 0 when bytes.Count > 0:
                    bytes[rng.Next(bytes.Count)] ^= (byte)(1 << rng.Next(8));
                    break;
                case 1 when bytes.Count > 0:
                    bytes.RemoveRange(rng.Next(bytes.Count), 1);
                    break;
                case 2:
                    bytes.Insert(rng.Next(bytes.Count + 1), (byte)rng.Next(256));
                    break;
                case 3 when bytes.Count > 0:
                    var keep = rng.Next(bytes.Count);
                    bytes.RemoveRange(keep, bytes.Count - keep);
                    break;
                default:
                    bytes.Add((byte)rng.Next(256));
                    break;
            }
        }
        return [.. bytes];
    }
}
