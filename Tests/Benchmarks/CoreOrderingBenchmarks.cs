using BenchmarkDotNet.Attributes;
using MinBft.Application;
using MinBft.Crypto;
using MinBft.Messages;
using MinBft.Protocol;
using MinBft.Usig;

namespace MinBft.Benchmarks;

/// <summary>
/// The protocol's own ceiling: three replica cores (f = 1) in one thread with real crypto, an
/// in-memory USIG per replica and a network that delivers at once. Closed-loop clients each
/// keep one request outstanding, submitted to every replica as the client proxy does; a request
/// is done at f+1 replies. No Orleans, no storage, no threads: what is left is the core and its
/// crypto. An operation is one request, so requests ordered per CPU-second = 1 s / (time per operation).
/// </summary>
[MemoryDiagnoser]
public class CoreOrderingBenchmarks
{
    private const int F = 1;
    private const int N = 2 * F + 1;
    private const int RequestsPerInvoke = 512; // a multiple of every Clients value

    private int Rounds => RequestsPerInvoke / Clients;

    private ClientSigner[] _clients = [];
    private ulong[] _seq = [];
    private ReplicaCore[] _cores = [];
    private UsigCore[] _usigs = [];
    private Request[] _signed = [];
    private readonly Queue<(int To, ReplicaMessage Message)> _network = new();
    private readonly Dictionary<(string Client, ulong Seq), int> _replies = [];
    private TimeSpan _now = TimeSpan.FromSeconds(1);
    private int _done;

    /// <summary>Concurrent clients, each with one request outstanding.</summary>
    [Params(1, 32, 128)]
    public int Clients { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(42);
        var signing = Enumerable.Range(0, N).Select(_ => Ed25519KeyPair.FromPrivateKey(Bytes(rng))).ToArray();
        var usigKeys = Enumerable.Range(0, N).Select(_ => Ed25519KeyPair.FromPrivateKey(Bytes(rng))).ToArray();
        var verifier = new UsigVerifier(Enumerable.Range(0, N).ToDictionary(i => i, i => UsigVerificationKey.Ed25519(1, usigKeys[i].PublicKey)));
        var ring = new ReplicaKeyRing(signing.Select(k => k.PublicKey).ToArray());
        _cores = new ReplicaCore[N];
        _usigs = new UsigCore[N];
        for (var i = 0; i < N; i++)
        {
            _usigs[i] = new UsigCore(i, 1, new Ed25519UsigCertifier(usigKeys[i].PrivateKey), new MemoryCounterStore { State = UsigState.Fresh(1) }); // initialised for epoch 1, as on a first start
            var settings = new ProtocolSettings { N = N, ReplicaId = i, UsigReissueWindow = UsigCore.RecentWindow, UsigMaxBatch = UsigCore.MaxBatch };
            _cores[i] = new ReplicaCore(settings, new ProtocolCrypto(verifier, new Ed25519ReplicaSigner(signing[i]), ring, new RequestVerifier()), new KeyValueStateMachine());
        }
        _clients = Enumerable.Range(0, Clients).Select(_ => new ClientSigner(Ed25519KeyPair.FromPrivateKey(Bytes(rng)))).ToArray();
        _seq = new ulong[Clients];
    }

    /// <summary>Signs this invocation's requests beforehand: client-side work is not the replicas'.</summary>
    [IterationSetup]
    public void SignRequests()
    {
        _signed = new Request[Clients * Rounds];
        var operation = KeyValueOperation.EncodePut("k", new byte[64]);
        for (var r = 0; r < Rounds; r++)
            for (var c = 0; c < Clients; c++)
                _signed[r * Clients + c] = _clients[c].CreateRequest(++_seq[c], operation);
    }

    [Benchmark(Description = "order and execute one request, 3 cores (f=1)", OperationsPerInvoke = RequestsPerInvoke)]
    public int OrderRequests()
    {
        var executed = 0;
        for (var r = 0; r < Rounds; r++)
        {
            _done = 0;
            for (var c = 0; c < Clients; c++)
            {
                var request = _signed[r * Clients + c];
                for (var i = 0; i < N; i++) Drain(i, _cores[i].OnRequest(request, _now));
            }
            while (_done < Clients)
            {
                Pump();
                if (_done < Clients)
                {
                    // The primary waits MaxBatchWait for a batch to fill: let that time pass.
                    _now += TimeSpan.FromMilliseconds(5);
                    for (var i = 0; i < N; i++) Drain(i, _cores[i].OnTick(_now));
                }
            }
            executed += Clients;
        }
        return executed;
    }

    private void Pump()
    {
        while (_network.TryDequeue(out var delivery))
            Drain(delivery.To, _cores[delivery.To].OnMessage(delivery.Message, _now));
    }

    /// <summary>Applies a step's effects as a host would, with every durable write completing at once.</summary>
    private void Drain(int replica, Ready ready)
    {
        foreach (var effect in ready.Effects)
        {
            switch (effect)
            {
                case Send { To: null } send:
                    for (var to = 0; to < N; to++) if (to != replica) _network.Enqueue((to, send.Message));
                    break;
                case Send { To: { } to } send:
                    _network.Enqueue((to, send.Message));
                    break;
                case SendReply reply:
                    var key = (reply.Reply.ClientId, reply.Reply.Seq);
                    var count = _replies.GetValueOrDefault(key) + 1;
                    if (count == F + 1) { _done++; _replies.Remove(key); }
                    else if (count <= F) _replies[key] = count;
                    break;
                case WriteLog:
                    Drain(replica, _cores[replica].OnLogWritten(_now));
                    break;
                case CertifyUis certify:
                    var uis = _usigs[replica].CreateUisAsync(certify.FirstCounter, certify.Digests.Select(d => (ReadOnlyMemory<byte>)d).ToList(), CancellationToken.None).GetAwaiter().GetResult();
                    Drain(replica, _cores[replica].OnUisIssued([.. uis.Select(u => u.ToUniqueIdentifier())], _now));
                    break;
                case StoreCheckpoint:
                    Drain(replica, _cores[replica].OnCheckpointStored(_now));
                    break;
            }
        }
    }

    private static byte[] Bytes(Random rng)
    {
        var bytes = new byte[32];
        rng.NextBytes(bytes);
        return bytes;
    }

    private sealed class MemoryCounterStore : IUsigCounterStore
    {
        public UsigState? State { get; set; }
        public Task<UsigState?> ReadAsync(CancellationToken cancellationToken) => Task.FromResult(State);
        public Task WriteAsync(UsigState state, CancellationToken cancellationToken)
        {
            State = state;
            return Task.CompletedTask;
        }
    }
}
