using BenchmarkDotNet.Attributes;
using Microsoft.Extensions.DependencyInjection;
using MinBft.Messages;
using Orleans.Serialization;

namespace MinBft.Benchmarks;

/// <summary>
/// What the Orleans serializer costs for the messages that carry a batch: a PREPARE of
/// <see cref="Requests"/> client requests (sizes as the bench sends them), serialized and read
/// back, as a replica does for each send, delivery and journal write of it (a COMMIT carries it
/// too). The baseline moves the same number of bytes as one array: the most a hand-written
/// <see cref="Request"/> codec (no reference tracking, no per-field headers) could save is the
/// difference. Per request = mean / <see cref="Requests"/>.
/// </summary>
[MemoryDiagnoser]
public class MessageSerializationBenchmarks
{
    private Serializer _serializer = null!;
    private Prepare _prepare = null!;
    private byte[] _sameSize = [];

    [Params(1, 20, 60)]
    public int Requests { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _serializer = new ServiceCollection().AddSerializer().BuildServiceProvider().GetRequiredService<Serializer>();
        var random = new Random(1);
        byte[] Bytes(int n)
        {
            var bytes = new byte[n];
            random.NextBytes(bytes);
            return bytes;
        }
        // Each request as the bench makes it: its own client (id = hex SHA-256 of the key), a
        // 64-byte operation, an Ed25519 signature, one session MAC per replica, the proxy's key.
        var batch = Enumerable.Range(0, Requests)
            .Select(i => new Request(Convert.ToHexStringLower(Bytes(32)), Bytes(32), (ulong)(1000 + i), Bytes(64), Bytes(64), Bytes(3 * 32), "client-0123456789abcdef01234567", 42))
            .ToArray();
        _prepare = new Prepare(3, 0, 129, batch, new UniqueIdentifier(1, 77, Bytes(64)));
        _sameSize = new byte[_serializer.SerializeToArray(_prepare).Length];
        var copy = _serializer.Deserialize<Prepare>(_serializer.SerializeToArray(_prepare))!;
        if (!MinBft.Encoding.MessageEncoding.CertifiedDigest(copy).AsSpan().SequenceEqual(MinBft.Encoding.MessageEncoding.CertifiedDigest(_prepare)))
            throw new InvalidOperationException("the PREPARE did not round-trip: the benchmark would measure something else");
    }

    [Benchmark(Baseline = true, Description = "the same bytes as one array")]
    public int OneArray() => _serializer.Deserialize<byte[]>(_serializer.SerializeToArray(_sameSize))!.Length;

    [Benchmark(Description = "PREPARE, generated codecs")]
    public int Prepare() => _serializer.Deserialize<Prepare>(_serializer.SerializeToArray(_prepare))!.Batch.Length;
}
