using MinBft.Application;
using MinBft.Encoding;
using MinBft.Messages;

namespace MinBft.Tests.Simulation;

/// <summary>
/// A correct client: one outstanding signed request at a time, sent to every replica and
/// retransmitted on timeout; a result is accepted once f+1 replicas sent matching REPLYs whose
/// signatures verify (the client trusts neither the network nor any single replica). Each proven
/// reply's position becomes the incarnation of the next request, so a client whose record was
/// evicted while it was idle is admitted again; an Expired result ends only the request it answers.
/// </summary>
internal sealed class SimClient(Simulation sim, SimClientSigner signer, int target)
{
    private static readonly TimeSpan RetransmitTimeout = TimeSpan.FromMilliseconds(300);
    private readonly Dictionary<int, Reply> _replies = [];
    private Request? _current;

    /// <summary>The request this client waits on (null when done): what a Byzantine replica forging
    /// a reply to it would name.</summary>
    internal Request? Current => _current;
    private ulong _seq;
    private ulong _incarnation;

    public string Id => signer.ClientId;
    public int Target => target;
    public List<(ulong Seq, ReplyStatus Status, byte[] Result)> Completed { get; } = [];

    /// <summary>Requests answered Expired.</summary>
    public int Expired => Completed.Count(c => c.Status == ReplyStatus.Expired);
    public bool Done => Completed.Count >= target;

    public void Start() => SendNext();

    private void SendNext()
    {
        if (Done) { _current = null; return; }
        _seq += (ulong)sim.Rng.Next(1, 3); // clients may skip seqs: only "newer" matters
        _current = signer.CreateRequest(_seq, RandomOperation(), _incarnation);
        _replies.Clear();
        sim.OnClientIssued(_current);
        sim.BroadcastRequest(_current);
        ScheduleRetransmit(_current);
    }

    private void ScheduleRetransmit(Request request) =>
        sim.Events.After(RetransmitTimeout, () =>
        {
            if (!ReferenceEquals(_current, request)) return;
            sim.Trace($"client {Id[..6]} retransmits #{request.Seq}");
            sim.BroadcastRequest(request);
            ScheduleRetransmit(request);
        });

    public void OnReply(Reply reply)
    {
        if (_current is null || reply.ClientId != Id || reply.Seq != _current.Seq) return;
        if (MessageLimits.CheckReply(reply) is not null) return;
        if (reply.ReplicaId < 0 || reply.ReplicaId >= sim.N) return;
        if (!reply.RequestDigest.AsSpan().SequenceEqual(MessageEncoding.RequestDigest(_current))) return;
        if (!sim.Replies.Verify(reply)) return;
        _replies[reply.ReplicaId] = reply; // each replica counts once
        var matching = _replies.Values.Count(r => r.Status == reply.Status && r.Position == reply.Position && r.Result.AsSpan().SequenceEqual(reply.Result));
        if (matching < sim.F + 1) return;
        Completed.Add((_current.Seq, reply.Status, reply.Result));
        // Every proven position is a valid incarnation: the next request executes after it.
        _incarnation = Math.Max(_incarnation, reply.Position);
        SendNext();
    }

    private byte[] RandomOperation()
    {
        var rng = sim.Rng;
        var key = "k" + rng.Next(4);
        var value = new byte[rng.Next(0, 12)];
        rng.NextBytes(value);
        return rng.Next(5) switch
        {
            0 => KeyValueOperation.EncodeGet(key),
            1 => KeyValueOperation.EncodeDelete(key),
            2 => KeyValueOperation.EncodeCompareAndSetAbsent(key, value),
            3 => KeyValueOperation.EncodeCompareAndSet(key, [(byte)rng.Next(2)], value),
            _ => KeyValueOperation.EncodePut(key, value),
        };
    }
}
