using System.Security.Cryptography;
using MinBft.Application;
using MinBft.Encoding;
using MinBft.Messages;

namespace MinBft.Protocol;

/// <summary>
/// The MinBFT replica as a pure, deterministic state machine (etcd raft style): each call takes
/// one input (a client request, a peer message, a UI issued by this replica's USIG, a tick)
/// and returns a <see cref="Ready"/> with the effects the host must apply, in order.
/// No I/O, no clock (time is passed in), no randomness, no threads. Input from the network
/// never throws: it is accepted, buffered or rejected with a counted reason. An exception
/// means a violated invariant: a bug, surfaced loudly.
/// </summary>
public sealed partial class ReplicaCore
{
    private readonly ProtocolSettings _settings;
    private readonly ProtocolTuning _tuning;
    private readonly ProtocolCrypto _crypto;
    private readonly IStateMachine _app;
    private readonly List<Effect> _effects = [];
    private readonly PeerStream[] _streams;
    private readonly Dictionary<RejectReason, long> _rejections = [];
    private readonly OwnLog _own;
    private TimeSpan _now;

    /// <remarks><paramref name="keptCodec"/>: how the host encodes this replica's messages for its
    /// USIG to keep (null: none kept; every message is certified once its journal write is durable).</remarks>
    public ReplicaCore(ProtocolSettings settings, ProtocolCrypto crypto, IStateMachine app, IKeptMessageCodec? keptCodec = null)
    {
        settings.Validate();
        _settings = settings;
        _tuning = settings.Tuning;
        _crypto = crypto;
        _app = app;
        _own = new OwnLog(settings.UsigReissueWindow, settings.UsigMaxBatch, keptCodec is null ? 0 : settings.UsigMaxKeptBytes, keptCodec);
        _streams = new PeerStream[settings.N];
        for (var i = 0; i < settings.N; i++) _streams[i] = new PeerStream();
        _lastCommitted = new ulong[settings.N];
        _lastCommittedPosition = new ulong[settings.N];
        _verifiedRequests = new VerifiedRequestCache(_tuning.VerifiedRequestCacheSize);
        _clients = new ClientTable(settings.MaxClientRecords);
        _genesisDigest = StateDigest(); // where view starts at position 0 begin
    }

    public ProtocolSettings Settings => _settings;
    public int Id => _settings.ReplicaId;
    public int N => _settings.N;
    public int F => _settings.F;

    /// <summary>The current view; its primary is replica <c>View mod n</c>.</summary>
    public long View { get; private set; }

    public int Primary => PrimaryOf(View);
    public bool IsPrimary => Primary == Id;

    /// <summary>VIEW-CHANGEs held for view changes still to come (at most one per replica).</summary>
    public int HeldViewChanges => _viewChanges.Values.Sum(v => v.Count);

    /// <summary>This replica's current USIG identity may lead <see cref="View"/> (one epoch per
    /// primary per view: a rotated USIG's new identity leads only from its first view on).</summary>
    private bool MayLeadView => _crypto.Ui.Epochs.LeaderEpoch(Id, View) == _crypto.Ui.Epochs.Current(Id);

    /// <summary>The PREPARE is certified under the identity of its primary that leads its view.</summary>
    private bool UnderLeaderIdentity(Prepare prepare) => prepare.PrepareUi.Epoch == _crypto.Ui.Epochs.LeaderEpoch(prepare.PrimaryId, prepare.View);

    /// <summary>Number of batches executed so far (the position in the replicated history).</summary>
    public ulong ExecutedSequence { get; private set; }

    /// <summary>Rejected inputs by reason, since this core started.</summary>
    public IReadOnlyDictionary<RejectReason, long> Rejections => _rejections;

    public long RejectionCount(RejectReason reason) => _rejections.GetValueOrDefault(reason);

    /// <summary>Counter of the last message accepted from replica <paramref name="replica"/>
    /// (for this replica itself: the last counter its USIG issued).</summary>
    public ulong LastAccepted(int replica) => _streams[replica].LastAccepted;

    /// <summary>Messages held in the reorder buffer for one sender.</summary>
    public int BufferedFrom(int replica) => _streams[replica].Buffer.Count;

    /// <summary>Messages held in reorder buffers, over all senders.</summary>
    /// <summary>Bytes buffered from a replica's stream, ahead of a gap (bounded by
    /// <see cref="ProtocolTuning.ReorderBufferBytesPerSender"/>, beyond one message).</summary>
    public long BufferedBytesFrom(int replica) => _streams[replica].BufferedBytes;

    public int BufferedMessages => _streams.Sum(s => s.Buffer.Count);

    public int PrimaryOf(long view) => (int)(view % N);

    // ----- inputs -----

    /// <summary>A client request, from the client's proxy or forwarded by a replica.</summary>
    public Ready OnRequest(Request request, TimeSpan now)
    {
        Begin(now);
        HandleRequest(request);
        return End();
    }

    /// <summary>Client requests that arrived together (one proxy's batch), as one step.</summary>
    public Ready OnRequests(IReadOnlyList<Request> requests, TimeSpan now)
    {
        ArgumentNullException.ThrowIfNull(requests);
        Begin(now);
        foreach (var request in requests) HandleRequest(request);
        return End();
    }

    /// <summary>A message from another replica (nothing about it is trusted yet).</summary>
    public Ready OnMessage(ReplicaMessage message, TimeSpan now)
    {
        Begin(now);
        HandleMessage(message);
        return End();
    }

    /// <summary>Several messages from other replicas, in the order they arrived, as one step: what
    /// they cause is persisted, certified and sent together.</summary>
    public Ready OnMessages(IReadOnlyList<ReplicaMessage> messages, TimeSpan now)
    {
        Begin(now);
        if (messages is null) Reject(null, RejectReason.Malformed, "null message list");
        else if (messages.Count > Encoding.MessageLimits.MaxMessagesPerDelivery)
            Reject(null, RejectReason.Malformed, $"{messages.Count} messages in one delivery (at most {Encoding.MessageLimits.MaxMessagesPerDelivery})");
        else foreach (var message in messages) HandleMessage(message);
        return End();
    }

    private void HandleMessage(ReplicaMessage message)
    {
        switch (message)
        {
            case null:
                Reject(null, RejectReason.Malformed, "null message");
                break;
            case CertifiedMessage certified:
                HandleCertified(certified);
                break;
            case RetransmitRequest retransmit:
                HandleRetransmitRequest(retransmit);
                break;
            case ReqViewChange reqViewChange:
                HandleReqViewChange(reqViewChange);
                break;
            case StateRequest stateRequest:
                HandleStateRequest(stateRequest);
                break;
            case StateChunk stateChunk:
                HandleStateChunk(stateChunk);
                break;
            case ViewChangeFetch fetch:
                HandleViewChangeFetch(fetch);
                break;
            case ViewChangeRelay relay:
                HandleViewChangeRelay(relay);
                break;
            default:
                Reject(SafeSender(message), RejectReason.Unsupported, message.GetType().Name);
                break;
        }
    }

    /// <summary>This replica's USIG certified the batch of the last <see cref="CertifyUis"/>: the UIs,
    /// in counter order. The messages are now complete: they are sent and take effect here.</summary>
    public Ready OnUisIssued(IReadOnlyList<UniqueIdentifier> uis, TimeSpan now)
    {
        Begin(now);
        foreach (var (certified, digest) in _own.OnCertified(uis)) HandleOwnCertified(certified, digest);
        // The VIEW-CHANGE's log must end right before its own counter: it waited for these.
        if (_viewChangeDeferred && _own.Uncertified == 0) SendViewChange();
        return End();
    }

    /// <summary>The last <see cref="WriteLog"/> is durable.</summary>
    public Ready OnLogWritten(TimeSpan now)
    {
        Begin(now);
        OnOwnIntentsDurable(_own.OnWritten());
        return End();
    }

    /// <summary>The last <see cref="StoreCheckpoint"/> is durable.</summary>
    public Ready OnCheckpointStored(TimeSpan now)
    {
        Begin(now);
        CheckpointStored();
        return End();
    }

    /// <summary>Time passed: batch deadlines, retransmission and forwarding.</summary>
    public Ready OnTick(TimeSpan now)
    {
        Begin(now);
        HandleTick();
        return End();
    }

    // ----- step plumbing -----

    private void Begin(TimeSpan now)
    {
        ProtocolInvariantException.Check(_effects.Count == 0, "no step runs inside another");
        // Time never runs backwards inside the core, even if the host clock does.
        if (now > _now) _now = now;
    }

    private Ready End()
    {
        // Whatever this step changed may have made a buffered message next-in-order.
        Drain();
        TryPropose();
        TrackBusy();
        ScheduleDurableWork();
        var effects = _effects.ToArray();
        _effects.Clear();
        return new Ready(effects, NextTick());
    }

    /// <summary>A signed message from another replica: within bounds, from a replica that is not this
    /// one, signed by it over <paramref name="signedBytes"/>. Otherwise rejected (counted) and false.</summary>
    private bool AuthenticFromPeer(ReplicaMessage message, int from, Func<byte[]> signedBytes, byte[] signature, string what)
    {
        if (MessageLimits.Check(message) is { } malformed)
        {
            Reject(SafeSender(message), RejectReason.Malformed, malformed);
            return false;
        }
        if (!IsReplica(from) || from == Id)
        {
            Reject(from, RejectReason.UnknownSender, $"{what} from {from}");
            return false;
        }
        if (!_crypto.Replicas.Verify(from, signedBytes(), signature))
        {
            Reject(from, RejectReason.InvalidSignature, what);
            return false;
        }
        return true;
    }

    // A NEW-VIEW leaves by reference, whoever sends it and why (broadcast, retransmission, relay):
    // its VIEW-CHANGEs reach peers in their senders' streams, or one by one when fetched.
    private void Emit(Effect effect) =>
        _effects.Add(effect is Send { Message: NewView newView } send ? send with { Message = newView.ByReference() } : effect);

    /// <summary>The host's durable work, at most one of each kind in flight: everything produced
    /// while one is in flight goes into the next (group commit), and the USIG certifies durable
    /// intents in batches.</summary>
    private void ScheduleDurableWork()
    {
        if (_own.TakeWrite(View, _now, _tuning.LazyUiWait) is { } write) Emit(new WriteLog(write));
        if (_own.TakeCertifyBatch() is { } batch) Emit(new CertifyUis(batch.FirstCounter, batch.Digests, batch.Kept));
        if (_checkpointStoring is null && _checkpointToStore is { } store)
        {
            _checkpointStoring = store;
            _checkpointToStore = null;
            Emit(store);
        }
    }

    private void Reject(int? from, RejectReason reason, string detail)
    {
        _rejections[reason] = _rejections.GetValueOrDefault(reason) + 1;
        Emit(new Rejected(from, reason, detail));
    }

    private static int? SafeSender(ReplicaMessage message)
    {
        try { return message.Sender; }
        catch (NullReferenceException) { return null; }
    }

    private bool IsReplica(int id) => id >= 0 && id < N;

    /// <summary>
    /// A digest of the replicated protocol state (view, streams, ordering, execution, clients,
    /// application). Tests compare it around a rejected input: rejection must change nothing.
    /// </summary>
    public string StateFingerprint()
    {
        var w = new CanonicalWriter(512).I64(View).U64(ExecutedSequence).U64(_lastPrepareCounter);
        foreach (var stream in _streams) w.U64(stream.LastAccepted);
        foreach (var committed in _lastCommitted) w.U64(committed);
        foreach (var (counter, batch) in _prepares)
        {
            // Executed batches are history (ExecutedSequence and the application's digest hold
            // them); a verified CHECKPOINT's vote may garbage-collect them even when its message
            // is refused for a full reorder buffer.
            if (batch.Executed) continue;
            w.U64(counter).I32(batch.Committers.Count).U8(batch.Executed ? (byte)1 : (byte)0);
            foreach (var c in batch.Committers.Order()) w.I32(c);
        }
        foreach (var (client, seq) in _highestOrderedSeq.OrderBy(p => p.Key, StringComparer.Ordinal)) w.Text(client).U64(seq);
        foreach (var (client, record) in _clients.Records) w.Text(client).U64(record.LastExecutedSeq).U64(record.LastActive);
        w.U64(_clients.ExpiryHorizon);
        w.Raw(_app.Digest());
        return Convert.ToHexString(SHA256.HashData(w.WrittenSpan));
    }
}
