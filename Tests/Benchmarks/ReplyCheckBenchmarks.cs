using BenchmarkDotNet.Attributes;
using MinBft.Crypto;
using MinBft.Encoding;
using MinBft.Messages;
using Org.BouncyCastle.Security;

namespace MinBft.Benchmarks;

/// <summary>
/// What a client pays to check one REPLY, and what a replica pays to authenticate it: the
/// reply's Ed25519 signature over a batch of one (the baseline: one client, nothing to share a
/// signature with) against its MAC under the client's session (<see cref="ClientSession.ProvesReply"/>,
/// <see cref="ReplicaClientSessions.AuthenticateReply"/>).
/// </summary>
[MemoryDiagnoser]
public class ReplyCheckBenchmarks : IDisposable
{
    private const int Replies = 64;

    private ReplyAuthenticator _signatures = null!;
    private ClientSession _session = null!;
    private ReplicaClientSessions _replica = null!;
    private Ed25519ReplicaSigner _signer = null!;
    private Reply[] _replies = [];
    private ReplyContent _content;
    private int _next;

    [GlobalSetup]
    public void Setup()
    {
        var random = new SecureRandom();
        var replicaKeys = Ed25519KeyPair.Generate(random);
        _signer = new Ed25519ReplicaSigner(replicaKeys);
        var client = new ClientSigner(Ed25519KeyPair.Generate(random));
        _replica = new ReplicaClientSessions(0, _signer);
        _session = new ClientSession(client, 1, epoch: 1);
        if (!_session.TryAccept(_replica.Open(_session.Offer), new ReplicaKeyRing([replicaKeys.PublicKey])))
            throw new InvalidOperationException("the session did not open");
        // Remembering at most one proven node, and cycling through distinct batches, every
        // signature check is a real one (a client with one request in flight shares nothing).
        _signatures = new ReplyAuthenticator(new ReplicaKeyRing([replicaKeys.PublicKey]), rememberedNodes: 1);
        _replies = Enumerable.Range(0, Replies).Select(i =>
        {
            var request = client.CreateRequest((ulong)i + 1, [1, 2, 3]);
            var content = new ReplyContent(0, client.ClientId, request.Seq, MessageEncoding.RequestDigest(request), new byte[16], ReplyStatus.Executed, (ulong)i);
            _content = content;
            return _replica.AuthenticateReply(ReplyBatchSigner.Sign(_signer, 0, [content])[0]);
        }).ToArray();
    }

    private Reply NextReply() => _replies[_next++ % Replies];

    [Benchmark(Baseline = true, Description = "client: check a reply's signature (batch of one)")]
    public bool CheckSignature() => _signatures.Verify(NextReply());

    [Benchmark(Description = "client: check a reply's session MAC")]
    public bool CheckMac() => _session.ProvesReply(NextReply());

    [Benchmark(Description = "replica: sign a batch of one reply")]
    public Reply[] SignReply() => ReplyBatchSigner.Sign(_signer, 0, [_content]);

    [Benchmark(Description = "replica: add a reply's session MAC")]
    public Reply AddMac() => _replica.AuthenticateReply(_replies[0]);

    public void Dispose()
    {
        _session?.Dispose();
        _replica?.Dispose();
        GC.SuppressFinalize(this);
    }
}
