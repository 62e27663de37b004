using System.Globalization;
using MinBft.Crypto;
using MinBft.Encoding;
using MinBft.Hosting;
using MinBft.Messages;
using MinBft.Protocol;

namespace MinBft.Client;

/// <summary>
/// Decides whether a set of REPLYs proves the result of one request (PROTOCOL.md 4.6): f+1
/// replies from distinct replicas, each within bounds, each for this client id, sequence
/// number and request digest, each signed by its replica's key from the cluster manifest (one
/// signature over a batch's Merkle root, checked once per batch, or a MAC under the client's
/// session with that replica, which needs no signature check), all with the same status,
/// position and result. At most f replicas are faulty, so f+1 such replies include one from a correct
/// replica, and a correct replica only replies with the result of executing the request in the
/// agreed order.
/// </summary>
/// <remarks>
/// Replies that fail a check are discarded rather than failing the whole set: a faulty replica
/// or proxy could otherwise veto a result that f+1 correct replicas proved. A replica that
/// signed two different results for one request is faulty and counts for neither. Views may
/// differ between replies (a reply cached before a view change is still a valid reply).
/// </remarks>
public sealed class ReplyVerifier
{
    private readonly ReplyAuthenticator _authenticator;

    /// <param name="n">Number of replicas, 2f+1.</param>
    /// <param name="f">Number of faults tolerated.</param>
    /// <param name="replicaKeys">Replica i's REPLY signing key, for i in 0..n-1.</param>
    public ReplyVerifier(int n, int f, ReplicaKeyRing replicaKeys)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(f);
        ArgumentNullException.ThrowIfNull(replicaKeys);
        if (n != 2 * f + 1) throw new ArgumentException($"MinBFT needs n = 2f+1 replicas; got n={n}, f={f}", nameof(n));
        for (var i = 0; i < n; i++)
        {
            if (!replicaKeys.Contains(i)) throw new ArgumentException($"no signing key for replica {i}", nameof(replicaKeys));
        }
        N = n;
        F = f;
        _authenticator = new ReplyAuthenticator(replicaKeys);
        ReplicaKeys = replicaKeys;
    }

    /// <summary>The verifier for the cluster described by <paramref name="manifest"/>.</summary>
    public static ReplyVerifier FromManifest(ClusterManifest manifest)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        return new ReplyVerifier(manifest.N, manifest.F, manifest.CreateReplicaKeyRing());
    }

    public int N { get; }

    /// <summary>The replicas' signing keys (from the manifest).</summary>
    public IReplicaSignatureVerifier ReplicaKeys { get; }

    public int F { get; }

    /// <summary>Matching replies needed: f+1.</summary>
    public int Required => F + 1;

    /// <summary>Replies taken on their session MAC (<see cref="ClientSession.ProvesReply"/>), without a signature check.</summary>
    public long ProvenByMac => Interlocked.Read(ref _provenByMac);

    /// <summary>Replies whose signature was checked (valid or not).</summary>
    public long SignaturesChecked => Interlocked.Read(ref _signaturesChecked);

    private long _provenByMac;
    private long _signaturesChecked;

    /// <summary>
    /// The result that <paramref name="replies"/> prove for <paramref name="request"/>, or a
    /// <see cref="MinBftReplyVerificationException"/> listing why they do not. A reply with a valid
    /// MAC under <paramref name="session"/> (the request's client's) needs no signature check; any
    /// other reply is checked by its signature, so a missing or bad MAC costs only time.
    /// </summary>
    public VerifiedResult Verify(Request request, IReadOnlyList<Reply?>? replies, ClientSession? session = null)
    {
        ArgumentNullException.ThrowIfNull(request);
        var problems = new List<string>();
        if (replies is null)
        {
            throw new MinBftReplyVerificationException(request.ClientId, request.Seq, Required, ["the proxy returned no reply list"]);
        }

        var digest = MessageEncoding.RequestDigest(request);
        // Valid replies by replica; null marks a replica that signed conflicting results.
        var byReplica = new Dictionary<int, Reply?>();
        for (var index = 0; index < replies.Count; index++)
        {
            var reply = replies[index];
            if (Check(request, digest, reply, session) is { } why)
            {
                problems.Add(string.Create(CultureInfo.InvariantCulture, $"reply #{index}: {why}"));
                continue;
            }
            var id = reply!.ReplicaId;
            if (!byReplica.TryGetValue(id, out var earlier))
            {
                byReplica[id] = reply;
            }
            else if (earlier is null)
            {
                // Already known to equivocate.
            }
            else if (SameOutcome(earlier, reply))
            {
                problems.Add(string.Create(CultureInfo.InvariantCulture, $"reply #{index}: replica {id} counted once only"));
            }
            else
            {
                problems.Add(string.Create(CultureInfo.InvariantCulture, $"reply #{index}: replica {id} signed two different results; ignoring it"));
                byReplica[id] = null;
            }
        }

        var valid = byReplica.Values.OfType<Reply>().ToList();
        foreach (var group in valid.GroupBy(OutcomeKey, StringComparer.Ordinal))
        {
            if (group.Count() >= Required)
            {
                var proof = group.OrderBy(r => r.ReplicaId).ToArray();
                return new VerifiedResult(request.ClientId, request.Seq, proof[0].Result, proof);
            }
        }

        problems.Add(valid.Count switch
        {
            0 => "no valid reply",
            _ when valid.Select(OutcomeKey).Distinct().Count() > 1 =>
                string.Create(CultureInfo.InvariantCulture, $"{valid.Count} valid replies disagree on the result"),
            _ => string.Create(CultureInfo.InvariantCulture, $"only {valid.Count} valid matching replies"),
        });
        throw new MinBftReplyVerificationException(request.ClientId, request.Seq, Required, problems);
    }

    /// <summary>What f+1 replies must agree on: status, position and result.</summary>
    private static string OutcomeKey(Reply r) =>
        string.Create(CultureInfo.InvariantCulture, $"{r.Status}@{r.Position}:{Convert.ToHexString(r.Result)}");

    private static bool SameOutcome(Reply a, Reply b) =>
        a.Status == b.Status && a.Position == b.Position && a.Result.AsSpan().SequenceEqual(b.Result);

    /// <summary>Null when <paramref name="reply"/> is a valid REPLY to <paramref name="request"/>, else why not.</summary>
    private string? Check(Request request, byte[] requestDigest, Reply? reply, ClientSession? session)
    {
        // Bounds before anything is hashed or verified.
        if (MessageLimits.CheckReply(reply) is { } malformed) return malformed;
        var r = reply!;
        if (r.ReplicaId < 0 || r.ReplicaId >= N) return string.Create(CultureInfo.InvariantCulture, $"unknown replica {r.ReplicaId}");
        if (!string.Equals(r.ClientId, request.ClientId, StringComparison.Ordinal)) return "for another client";
        if (r.Seq != request.Seq) return string.Create(CultureInfo.InvariantCulture, $"for seq {r.Seq}, not {request.Seq}");
        // Another operation under the same seq (a client whose seq went back) is not this request.
        if (!r.RequestDigest.AsSpan().SequenceEqual(requestDigest)) return "for another request with this seq";
        if (session is not null && session.ProvesReply(r))
        {
            Interlocked.Increment(ref _provenByMac);
            return null;
        }
        Interlocked.Increment(ref _signaturesChecked);
        return _authenticator.Explain(r);
    }
}

/// <summary>
/// A result proven by <see cref="Replies"/>: f+1 valid, matching replies from distinct replicas.
/// A reply taken on its session MAC proves it to this client only; every reply also carries its
/// replica's signature, which anyone else can check.
/// </summary>
public sealed record VerifiedResult(string ClientId, ulong Seq, byte[] Result, IReadOnlyList<Reply> Replies)
{
    /// <summary>Executed, or Expired: the request did not run (its identity's record had been evicted).</summary>
    public ReplyStatus Status => Replies[0].Status;

    /// <summary>The position in the replicated history the request was decided at.</summary>
    public ulong Position => Replies[0].Position;

    /// <summary>The highest view among the proving replies.</summary>
    public long View => Replies.Max(r => r.View);
}
