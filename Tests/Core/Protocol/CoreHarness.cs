using MinBft.Application;
using MinBft.Crypto;
using MinBft.Messages;
using MinBft.Protocol;
using MinBft.Tests.Simulation;

namespace MinBft.Tests.Protocol;

/// <summary>
/// n real cores with real crypto, driven by hand: the test decides which message reaches whom
/// and when. The host's durable work (log writes, USIG batches, checkpoint stores) completes at
/// once unless a test holds it back (<see cref="AutoIssueUi"/> false) and completes it itself.
/// </summary>
internal sealed class CoreHarness
{
    private readonly ClusterKeys _keys;
    private readonly SimUsig[] _usigs;
    private readonly Random _rng;
    private readonly ProtocolSettings[] _settings;
    private readonly IKeptMessageCodec? _keptCodec;

    /// <param name="keptCodec">Replicas ask their USIGs to keep the messages of batches that fit
    /// (null: nothing kept, every message certified once its journal write is durable).</param>
    public CoreHarness(int f = 1, int seed = 7, Func<ProtocolSettings, ProtocolSettings>? tune = null, IKeptMessageCodec? keptCodec = null)
    {
        _keptCodec = keptCodec;
        N = 2 * f + 1;
        _rng = new Random(seed);
        _keys = ClusterKeys.Create(N, _rng, hmac: false);
        Cores = new ReplicaCore[N];
        Apps = new KeyValueStateMachine[N];
        _usigs = new SimUsig[N];
        _settings = new ProtocolSettings[N];
        Outbox = new List<Effect>[N];
        for (var i = 0; i < N; i++)
        {
            var settings = new ProtocolSettings
            {
                N = N, ReplicaId = i, Tuning = new() { MaxBatchWait = TimeSpan.FromMilliseconds(5) },
                UsigReissueWindow = SimUsig.ReissueWindow, UsigMaxBatch = SimUsig.MaxBatch,
                UsigMaxKeptBytes = keptCodec is null ? 0 : SimUsig.MaxKeptBytes,
            };
            _settings[i] = tune?.Invoke(settings) ?? settings;
            Cores[i] = new ReplicaCore(_settings[i], _keys.CryptoFor(i), Apps[i] = new KeyValueStateMachine(), keptCodec);
            _usigs[i] = _keys.UsigFor(i);
            Outbox[i] = [];
        }
    }

    public int N { get; }
    public ReplicaCore[] Cores { get; }

    /// <summary>Each core's replicated service (replaced with the core by <see cref="Renew"/>).</summary>
    public KeyValueStateMachine[] Apps { get; }
    public List<Effect>[] Outbox { get; }
    public TimeSpan Now { get; set; } = TimeSpan.FromSeconds(1);
    public bool AutoIssueUi { get; set; } = true;

    public ClientSigner NewClient()
    {
        var seed = new byte[32];
        _rng.NextBytes(seed);
        return new ClientSigner(Ed25519KeyPair.FromPrivateKey(seed));
    }

    public SimUsig Usig(int replica) => _usigs[replica];

    /// <summary>keygen --rotate-usig: USIG <paramref name="replica"/> gets a new epoch and key with a fresh
    /// counter. Cores keep the manifest they were built with until <see cref="Renew"/>.</summary>
    public void RotateUsig(int replica, long firstView, ulong firstCheckpoint = 0)
    {
        _keys.Rotate(replica, _rng, firstView, firstCheckpoint);
        _usigs[replica] = _keys.UsigFor(replica);
    }

    /// <summary>A new, empty core for replica <paramref name="i"/> under the current manifest (a restart
    /// that kept nothing, or a core to Restore into).</summary>
    public ReplicaCore Renew(int i)
    {
        Cores[i] = new ReplicaCore(_settings[i], _keys.CryptoFor(i), Apps[i] = new KeyValueStateMachine(), _keptCodec);
        Outbox[i].Clear();
        return Cores[i];
    }

    public IReplicaSigner Signer(int replica) => _keys.SignerFor(replica);

    /// <summary>Checks REPLYs under the replicas' keys, as a client does.</summary>
    public MinBft.Crypto.ReplyAuthenticator Replies() => new(_keys.ReplicaVerifier);

    /// <summary>Run one input at replica <paramref name="i"/>; complete its durable work at once
    /// (unless held back), returning every effect in order.</summary>
    public IReadOnlyList<Effect> Step(int i, Func<ReplicaCore, Ready> input)
    {
        var ready = input(Cores[i]);
        var all = new List<Effect>(ready.Effects);
        Outbox[i].AddRange(ready.Effects);
        if (AutoIssueUi)
            foreach (var effect in ready.Effects.ToList())
                all.AddRange(Complete(i, effect));
        return all;
    }

    /// <summary>Completes one durable effect the way a host would (no-op for other effects).</summary>
    public IReadOnlyList<Effect> Complete(int i, Effect effect) => effect switch
    {
        WriteLog => Step(i, c => c.OnLogWritten(Now)),
        CertifyUis certify => Step(i, c => c.OnUisIssued(_usigs[i].CreateUis(certify.FirstCounter, certify.Digests, certify.Kept), Now)),
        StoreCheckpoint => Step(i, c => c.OnCheckpointStored(Now)),
        _ => [],
    };

    /// <summary>The messages a replica created in these effects (intents written to its log).</summary>
    public static List<CertifiedMessage> Intents(IEnumerable<Effect> effects) =>
        effects.OfType<WriteLog>().SelectMany(w => w.Write.Intents).ToList();

    public IReadOnlyList<Effect> Request(int i, Request request) => Step(i, c => c.OnRequest(request, Now));
    public IReadOnlyList<Effect> Deliver(int i, ReplicaMessage message) => Step(i, c => c.OnMessage(message, Now));
    public IReadOnlyList<Effect> Tick(int i) => Step(i, c => c.OnTick(Now));

    /// <summary>Certified messages replica <paramref name="i"/> sent so far, of one type.</summary>
    public List<T> Sent<T>(int i) where T : ReplicaMessage =>
        Outbox[i].OfType<Send>().Select(s => s.Message).OfType<T>().Distinct().ToList();

    /// <summary>Deliver every message sent so far among <paramref name="live"/> replicas (all when
    /// empty; the others are down), repeatedly, until quiet.</summary>
    public void Flush(params int[] live)
    {
        if (live.Length == 0) live = Enumerable.Range(0, N).ToArray();
        var delivered = new HashSet<(int, ReplicaMessage)>(DeliveryComparer.Instance);
        bool moved;
        do
        {
            moved = false;
            foreach (var from in live)
                foreach (var send in Outbox[from].OfType<Send>().ToList())
                    foreach (var to in live)
                    {
                        if (to == from || (send.To is { } only && only != to)) continue;
                        if (!delivered.Add((to, send.Message))) continue;
                        Deliver(to, send.Message);
                        moved = true;
                    }
        } while (moved);
    }

    /// <summary>A certified message as replica <paramref name="i"/>'s USIG would certify it
    /// (for tests that play a Byzantine replica holding its own USIG).</summary>
    public T Certify<T>(int i, T message) where T : CertifiedMessage =>
        (T)message.WithUi(_usigs[i].CreateUi(Encoding.MessageEncoding.CertifiedDigest(message)));

    private sealed class DeliveryComparer : IEqualityComparer<(int, ReplicaMessage)>
    {
        public static readonly DeliveryComparer Instance = new();
        public bool Equals((int, ReplicaMessage) x, (int, ReplicaMessage) y) => x.Item1 == y.Item1 && ReferenceEquals(x.Item2, y.Item2);
        public int GetHashCode((int, ReplicaMessage) obj) => HashCode.Combine(obj.Item1, System.Runtime.CompilerServices.RuntimeHelpers.GetHashCode(obj.Item2));
    }
}
