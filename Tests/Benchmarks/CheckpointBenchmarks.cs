using BenchmarkDotNet.Attributes;
using MinBft.Application;

namespace MinBft.Benchmarks;

/// <summary>
/// What a checkpoint asks of the key-value service as its state grows: one write, then the
/// state's digest and a snapshot of the same state (ReplicaCore.SendCheckpoint). The baseline
/// encodes the state a second time for the snapshot, as every checkpoint did before
/// <see cref="SnapshotDigestCache"/>, so the ratio is what handing over the digest's encoding saves.
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

    [Benchmark(Baseline = true)]
    public int DigestThenSnapshotEncodedAgain()
    {
        _state.Apply(_writes[_next++ % _writes.Length]);
        var digest = _state.Digest();
        _ = _state.Snapshot(); // takes the digest's encoding, which the old path did not have
        return digest.Length + _state.Snapshot().Length;
    }

    [Benchmark]
    public int DigestThenSnapshot()
    {
        _state.Apply(_writes[_next++ % _writes.Length]);
        return _state.Digest().Length + _state.Snapshot().Length;
    }
}
