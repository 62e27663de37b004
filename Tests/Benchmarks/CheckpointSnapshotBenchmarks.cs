using BenchmarkDotNet.Attributes;
using MinBft.Application;
using MinBft.Protocol;

namespace MinBft.Benchmarks;

/// <summary>
/// A checkpoint's snapshot as the core takes it (ReplicaCore.SendCheckpoint): the key-value
/// service's digest and snapshot, then the <see cref="StateSnapshot"/> around them with a client
/// table of 128 records. The baseline puts the whole encoding in one array, as stop 36 did (the
/// application's bytes copied in after the envelope); the other keeps the three parts, the
/// application's array as the service returned it.
/// </summary>
[MemoryDiagnoser]
public class CheckpointSnapshotBenchmarks
{
    private readonly byte[] _history = new byte[32];
    private KeyValueStateMachine _state = null!;
    private byte[][] _writes = [];
    private SnapshotClient[] _clients = [];
    private int _next;

    [Params(10_000, 100_000)]
    public int Keys { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        (_state, _writes, _) = PopulatedKeyValueState.Create(Keys);
        _clients = Enumerable.Range(0, 128)
            .Select(i => new SnapshotClient($"{i:D64}", 5, 0, new byte[32], new byte[8], LastActive: 9))
            .ToArray();
    }

    private EncodedSnapshot Take()
    {
        // One write since the last checkpoint, as between two checkpoints under load.
        _state.Apply(_writes[_next++ % _writes.Length]);
        _ = _state.Digest();
        return new StateSnapshot(10, _history, _state.Snapshot(), _clients, 0).Encode();
    }

    [Benchmark(Baseline = true)]
    public long InOneArray() => Take().ToArray().LongLength;

    [Benchmark]
    public long InParts() => Take().Length;
}
