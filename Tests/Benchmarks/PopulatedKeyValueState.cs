using MinBft.Application;

namespace MinBft.Benchmarks;

/// <summary>The key-value service holding <c>key-0</c> .. <c>key-(n-1)</c>, each set to the same
/// 64 random bytes (seed 1), and the writes that put them, for benchmarks to overwrite keys with.</summary>
internal static class PopulatedKeyValueState
{
    public static (KeyValueStateMachine State, byte[][] Writes, byte[] Value) Create(int keys)
    {
        var value = new byte[64];
        new Random(1).NextBytes(value);
        var state = new KeyValueStateMachine();
        var writes = Enumerable.Range(0, keys).Select(k => KeyValueOperation.EncodePut("key-" + k, value)).ToArray();
        foreach (var write in writes) state.Apply(write);
        return (state, writes, value);
    }
}
