using BenchmarkDotNet.Attributes;
using MinBft.Application;

namespace MinBft.Benchmarks;

/// <summary>
/// What a checkpoint asks of the key-value service as its state grows: the state's digest and a
/// snapshot of the same state (ReplicaCore.SendCheckpoint). The baseline is the path before stop
/// 32: every key sorted again, and the state encoded twice. Then the same with one encoding
/// (<see cref="SnapshotDigestCache"/>), then with the key order kept between snapshots
/// (<see cref="SnapshotKeyOrder"/>).
/// </summary>
[MemoryDiagnoser]
public class CheckpointBenchmarks
{
    private readonly byte[] _value = new byte[64];
    private KeyValueStateMachine _state = null!;
    private byte[][] _writes = [];
    private int _next;

    [Params(10_000, 100_000)]
    public int Keys { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        new Random(1).NextBytes(_value);
        _state = new KeyValueStateMachine();
        _writes = Enumerable.Range(0, Keys).Select(k => KeyValueOperation.EncodePut("key-" + k, _value)).ToArray();
        foreach (var write in _writes) _state.Apply(write);
    }

    // Each method first overwrites one key, as the writes between two checkpoints do.

    [Benchmark(Baseline = true)]
    public int FullSortEncodedTwice()
    {
        _state.Apply(_writes[_next++ % _writes.Length]);
        _state.ForgetSnapshotOrder();
        var digest = _state.Digest();
        _ = _state.Snapshot(); // takes the digest's encoding, which this path did not have
        _state.ForgetSnapshotOrder();
        return digest.Length + _state.Snapshot().Length;
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
        return _state.Digest().Length + _state.Snapshot().Length;
    }
}
