using System.Buffers.Binary;
using System.Security.Cryptography;
using BenchmarkDotNet.Attributes;
using MinBft.Application;

namespace MinBft.Benchmarks;

/// <summary>
/// What a checkpoint asks of the key-value service as its state grows: the state's digest and a
/// snapshot of the same state (ReplicaCore.SendCheckpoint). The baseline is stop 31's encoder
/// (checked in setup to give the same bytes): every key converted to UTF-8 and sorted, the state
/// encoded twice. Then the encoder encoding once (<see cref="SnapshotDigestCache"/>): with a full
/// sort, with the key order kept between snapshots (<see cref="SnapshotKeyOrder{TEntry}"/>) and
/// every key walked, and patching the one overwritten value into its last snapshot (stop 47,
/// KeyValueSnapshotEncoder: what a checkpoint after overwrites alone costs).
/// </summary>
[MemoryDiagnoser]
public class CheckpointBenchmarks
{
    private byte[] _value = [];
    private KeyValueStateMachine _state = null!;
    private byte[][] _writes = [];
    private int _next;
    // The same entries, for the stop-31 encoder the baseline runs.
    private readonly Dictionary<string, byte[]> _mirror = new(StringComparer.Ordinal);

    [Params(10_000, 100_000)]
    public int Keys { get; set; }

    private static void CheckSameBytes(bool sameBytes)
    {
        if (!sameBytes) throw new InvalidOperationException("the stop-31 encoder and the service disagree: the baseline would measure something else");
    }

    [GlobalSetup]
    public void Setup()
    {
        (_state, _writes, _value) = PopulatedKeyValueState.Create(Keys);
        for (var k = 0; k < Keys; k++) _mirror["key-" + k] = _value;
        CheckSameBytes(Stop31Encoding(_mirror).AsSpan().SequenceEqual(_state.Snapshot()));
    }

    // Each method first overwrites one key, as the writes between two checkpoints do.

    /// <summary>Stop 31's checkpoint: the digest hashed a full encoding, the snapshot was another,
    /// each sorting every key by its UTF-8 bytes (that encoder, kept here as it was).</summary>
    [Benchmark(Baseline = true)]
    public int FullSortOverUtf8BytesEncodedTwice()
    {
        var write = _writes[_next++ % _writes.Length];
        _state.Apply(write);
        KeyValueOperation.TryDecode(write, out var decoded);
        var put = (PutOperation)decoded!;
        _mirror[put.Key] = put.Value;
        return SHA256.HashData(Stop31Encoding(_mirror)).Length + Stop31Encoding(_mirror).Length;
    }

    [Benchmark]
    public int FullSortEncodedOnce()
    {
        _state.Apply(_writes[_next++ % _writes.Length]);
        _state.ForgetSnapshotOrder();
        return _state.Digest().Length + _state.Snapshot().Length;
    }

    [Benchmark]
    public int MergedOrderEncodedOnce()
    {
        _state.Apply(_writes[_next++ % _writes.Length]);
        _state.ForgetLastSnapshot();
        return _state.Digest().Length + _state.Snapshot().Length;
    }

    [Benchmark]
    public int LastSnapshotPatchedEncodedOnce()
    {
        _state.Apply(_writes[_next++ % _writes.Length]);
        return _state.Digest().Length + _state.Snapshot().Length;
    }

    private static byte[] Stop31Encoding(Dictionary<string, byte[]> entries)
    {
        var sorted = new (byte[] Key, byte[] Value)[entries.Count];
        long length = "MINBFT-KV\x01"u8.Length + 4;
        var i = 0;
        foreach (var (key, value) in entries)
        {
            var keyBytes = System.Text.Encoding.UTF8.GetBytes(key);
            sorted[i++] = (keyBytes, value);
            length += 6 + keyBytes.Length + value.Length;
        }
        Array.Sort(sorted, static (a, b) => a.Key.AsSpan().SequenceCompareTo(b.Key));
        var buffer = new byte[length];
        var at = 0;
        "MINBFT-KV\x01"u8.CopyTo(buffer);
        at += "MINBFT-KV\x01"u8.Length;
        BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(at), (uint)sorted.Length);
        at += 4;
        foreach (var (key, value) in sorted)
        {
            BinaryPrimitives.WriteUInt16BigEndian(buffer.AsSpan(at), (ushort)key.Length);
            key.CopyTo(buffer, at + 2);
            at += 2 + key.Length;
            BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(at), (uint)value.Length);
            value.CopyTo(buffer, at + 4);
            at += 4 + value.Length;
        }
        return buffer;
    }
}
