using MinBft.Messages;

namespace MinBft.Encoding;

/// <summary>
/// Hard bounds on every variable-length field. A message over any bound is rejected before
/// anything is hashed, verified or stored, so a Byzantine sender cannot exhaust memory or CPU.
/// </summary>
public static class MessageLimits
{
    public const int ClientIdLength = 64;          // hex SHA-256
    public const int PublicKeyLength = 32;         // Ed25519
    public const int SignatureLength = 64;         // Ed25519
    public const int MaxCertificateLength = 64;    // Ed25519 signature or HMAC-SHA256 tag
    public const int DigestLength = 32;            // SHA-256
    public const int MaxOperationLength = 64 * 1024;
    public const int MaxResultLength = 64 * 1024;
    public const int MaxBatchSize = 1024;
    public const int MaxViewChangeLog = 64 * 1024;
    public const int MaxCheckpointsInCertificate = 64;
    public const int MaxViewChangesInNewView = 64;
    public const int MaxViewStartsInViewChange = 64;
    public const int MaxStateChunkLength = 1024 * 1024;   // one STATE-CHUNK's data
    public const int MaxStateChunks = 64 * 1024;          // chunks per snapshot (64 GiB at the largest chunk)
    public const int MaxMessagesPerDelivery = 1024;       // messages one replica hands another in one call
    public const int RequestMacLength = 16;               // HMAC-SHA256 truncated to 128 bits, one per replica
    public const int MaxAuthenticatorLength = RequestMacLength * 256;
    public const int ReplyMacLength = 16;                 // HMAC-SHA256 truncated to 128 bits, under the client's session key
    public const int AgreementKeyLength = 32;             // X25519
    public const int MaxReplyProofDepth = 32;
    public const int MaxReplyToLength = 128;              // a client proxy's grain key
    public const int MaxRepliesPerDelivery = 4096;
    // Requests in one PREPARE, in bytes (RequestBytes summed). It bounds every message that
    // carries PREPAREs: a COMMIT embeds one, a VIEW-CHANGE logs its distinct batches since its
    // anchor (a NEW-VIEW carries VIEW-CHANGEs by reference); see MaxWireMessageBytes.
    public const int MaxBatchBytes = 256 * 1024;
    // What one Orleans message may carry, set deliberately on silos and clients (Orleans' own
    // default is 100 MB): room for one VIEW-CHANGE whose log is full of distinct max-size
    // batches at the default watermark (a NEW-VIEW refers to its VIEW-CHANGEs, it does not carry
    // them), and every delivery call is split to fit below MaxDeliveryBytes.
    public const int MaxWireMessageBytes = 128 * 1024 * 1024;
    // Bytes one delivery call (replica to replica, proxy to replica, replica to proxy) carries
    // at most; larger runs are split into several calls.
    public const int MaxDeliveryBytes = 4 * 1024 * 1024;

    /// <summary>
    /// Null when one view's VIEW-CHANGE fits one message at this watermark and checkpoint
    /// interval, else why not. Its log spans the positions from its anchor (at least W below the
    /// stable checkpoint, which lags by up to K) to what it executed plus W: at most 2(W + K)
    /// distinct batches of <see cref="MaxBatchBytes"/> in one view (VIEW-CHANGE-DESIGN.md,
    /// "How big the messages get"). They may fill three quarters of a message; the rest is for
    /// the entries' headers and for views installed without checkpoint progress. A cluster-wide
    /// constant that breaks this could fail a view change under full batches, so it is refused.
    /// </summary>
    public static string? CheckViewChangeSpan(int watermark, int checkpointInterval)
    {
        const long budget = MaxWireMessageBytes / 4 * 3;
        var span = 2L * (watermark + (long)checkpointInterval);
        return span * MaxBatchBytes <= budget ? null
            : $"watermark + checkpointInterval must be at most {budget / MaxBatchBytes / 2} (got {watermark} + {checkpointInterval}): " +
              $"a VIEW-CHANGE logs up to 2(watermark + checkpointInterval) batches of {MaxBatchBytes / 1024} KiB, which must fit one message of {MaxWireMessageBytes / (1024 * 1024)} MiB";
    }

    /// <summary>Null when every field of <paramref name="m"/> is within bounds, else why not.</summary>
    public static string? Check(ReplicaMessage? m) => m switch
    {
        null => "null message",
        Prepare p => CheckPrepare(p),
        Commit c => c.Prepare is null ? "commit without prepare" : CheckUi(c.CommitUi) ?? CheckPrepare(c.Prepare),
        Checkpoint c => CheckUi(c.CheckpointUi) ?? CheckCheckpoint(c),
        ReqViewChange r => CheckSignature(r.Signature),
        RetransmitRequest r => CheckSignature(r.Signature),
        StateRequest r => r.Chunk < 0 || r.Chunk >= MaxStateChunks ? "chunk index" : CheckSignature(r.Signature),
        StateChunk c => CheckStateChunk(c),
        ViewChange v => CheckViewChange(v),
        CertifiedStub s => CheckUi(s.StubUi) ?? (s.CertifiedDigest is { Length: DigestLength } ? null : "stub digest length"),
        NewView n => CheckNewView(n),
        ViewChangeFetch f => CheckViewChangeFetch(f),
        ViewChangeRelay r => r.ViewChange is null ? "null view change" : CheckViewChange(r.ViewChange),
        _ => $"unknown message type {m.GetType().Name}",
    };

    /// <summary>What a request costs to hold and to send, in bytes: its variable fields plus a fixed
    /// allowance for the rest. Buffers and batches are bounded in these bytes, not only in count.</summary>
    public static int RequestBytes(Request r) =>
        128 + ClientIdLength + PublicKeyLength + SignatureLength
        + (r.Operation?.Length ?? 0) + (r.Authenticator?.Length ?? 0) + (r.ReplyTo?.Length ?? 0);

    /// <summary>An estimate (from above, for bounded fields) of what a protocol message takes in
    /// memory, for byte-bounded buffers. Cheap: lengths only, nothing is encoded or hashed.</summary>
    public static long ApproximateBytes(ReplicaMessage m) => m switch
    {
        Prepare p => 256 + BatchBytes(p.Batch),
        Commit c => 256 + (c.Prepare is null ? 0 : ApproximateBytes(c.Prepare)),
        ViewChange v => 512 + (v.Log?.Sum(e => e is null ? 0 : ApproximateBytes(e)) ?? 0)
            + 4096L * ((v.ViewStarts?.Length ?? 0) + 1),
        NewView n => 256 + (n.ViewChanges?.Sum(v => v is null ? 0 : ApproximateBytes(v)) ?? 0),
        ViewChangeRelay r => 256 + (r.ViewChange is null ? 0 : ApproximateBytes(r.ViewChange)),
        StateChunk c => 4096 + (c.Data?.Length ?? 0),
        _ => 512,
    };

    /// <summary>The bytes of a batch's requests (<see cref="RequestBytes"/> summed).</summary>
    public static long BatchBytes(Request[]? batch)
    {
        long bytes = 0;
        if (batch is null) return 0;
        foreach (var r in batch) bytes += r is null ? 0 : RequestBytes(r);
        return bytes;
    }

    public static string? CheckRequest(Request? r)
    {
        if (r is null) return "null request";
        if (r.ClientId is null || r.ClientId.Length != ClientIdLength) return "client id length";
        if (r.ClientPublicKey is null || r.ClientPublicKey.Length != PublicKeyLength) return "client public key length";
        if (r.Operation is null) return "null operation";
        if (r.Operation.Length > MaxOperationLength) return "operation too large";
        if (r.Authenticator is { } a && (a.Length > MaxAuthenticatorLength || a.Length % RequestMacLength != 0)) return "authenticator length";
        if (r.ReplyTo is { Length: 0 or > MaxReplyToLength }) return "reply-to length";
        return CheckSignature(r.Signature);
    }

    public static string? CheckSessionOffer(ClientSessionOffer? o)
    {
        if (o is null) return "null session offer";
        if (o.ClientId is null || o.ClientId.Length != ClientIdLength) return "client id length";
        if (o.ClientPublicKey is null || o.ClientPublicKey.Length != PublicKeyLength) return "client public key length";
        if (o.AgreementKey is null || o.AgreementKey.Length != AgreementKeyLength) return "agreement key length";
        return CheckSignature(o.Signature);
    }

    public static string? CheckSessionAccept(ClientSessionAccept? a)
    {
        if (a is null) return "null session accept";
        if (a.ClientId is null || a.ClientId.Length != ClientIdLength) return "client id length";
        if (a.ClientAgreementKey is null || a.ClientAgreementKey.Length != AgreementKeyLength) return "client agreement key length";
        if (a.ReplicaAgreementKey is null || a.ReplicaAgreementKey.Length != AgreementKeyLength) return "replica agreement key length";
        return CheckSignature(a.Signature);
    }

    public static string? CheckReply(Reply? r)
    {
        if (r is null) return "null reply";
        if (r.ClientId is null || r.ClientId.Length != ClientIdLength) return "client id length";
        if (r.Result is null) return "null result";
        if (r.Result.Length > MaxResultLength) return "result too large";
        if (r.Status is not (ReplyStatus.Executed or ReplyStatus.Expired)) return "unknown reply status";
        if (r.Status == ReplyStatus.Expired && r.Result.Length != 0) return "an Expired reply has no result";
        if (r.RequestDigest is null || r.RequestDigest.Length != DigestLength) return "request digest length";
        if (r.Mac is { Length: not ReplyMacLength }) return "reply mac length";
        var proof = r.Proof;
        if (proof is null) return "null reply proof";
        if (proof.Count < 1 || proof.Index < 0 || proof.Index >= proof.Count) return "reply proof position";
        if (proof.Path is null || proof.Path.Length > MaxReplyProofDepth) return "reply proof depth";
        foreach (var sibling in proof.Path)
            if (sibling is null || sibling.Length != DigestLength) return "reply proof hash length";
        return CheckSignature(proof.RootSignature);
    }

    public static string? CheckUi(UniqueIdentifier? ui)
    {
        if (ui is null) return "null ui";
        if (ui.Certificate is null) return "null certificate";
        if (ui.Certificate.Length > MaxCertificateLength) return "certificate too large";
        return null;
    }

    public static string? CheckCheckpointCertificate(CheckpointCertificate? c)
    {
        if (c is null) return "null checkpoint certificate";
        if (c.StateDigest is null || (c.StateDigest.Length != DigestLength && c.Sequence != 0)) return "checkpoint digest length";
        if (c.Checkpoints is null) return "null checkpoint list";
        if (c.Checkpoints.Length > MaxCheckpointsInCertificate) return "too many checkpoints";
        foreach (var cp in c.Checkpoints)
            if ((cp is null ? "null checkpoint" : CheckUi(cp.CheckpointUi) ?? CheckCheckpoint(cp)) is { } why) return why;
        return null;
    }

    private static string? CheckStateChunk(StateChunk c)
    {
        if (c.Count < 1 || c.Count > MaxStateChunks || c.Index < 0 || c.Index >= c.Count) return "chunk index or count";
        if (c.Data is null) return "null chunk data";
        if (c.Data.Length > MaxStateChunkLength) return "chunk too large";
        if (c.ViewStart is { } start && CheckCheckpointCertificate(start) is { } badStart) return badStart;
        return CheckCheckpointCertificate(c.Certificate);
    }

    private static string? CheckSignature(byte[]? signature) =>
        signature is null || signature.Length != SignatureLength ? "signature length" : null;

    private static string? CheckPrepare(Prepare p)
    {
        if (CheckUi(p.PrepareUi) is { } why) return why;
        if (p.Batch is null) return "null batch";
        if (p.Batch.Length == 0) return "empty batch";
        if (p.Batch.Length > MaxBatchSize) return "batch too large";
        foreach (var r in p.Batch)
            if (CheckRequest(r) is { } bad) return bad;
        if (BatchBytes(p.Batch) > MaxBatchBytes) return "batch too large in bytes";
        return p.ViewStart is null ? null : CheckCheckpointCertificate(p.ViewStart);
    }

    private static string? CheckCheckpoint(Checkpoint c) =>
        c.StateDigest is null || c.StateDigest.Length != DigestLength ? "checkpoint digest length" : null;

    private static string? CheckViewChange(ViewChange v)
    {
        if (CheckUi(v.ViewChangeUi) is { } why) return why;
        if (CheckCheckpointCertificate(v.CheckpointCertificate) is { } bad) return bad;
        if (v.Log is null) return "null log";
        if (v.ViewStarts is null) return "null view-start list";
        if (v.ViewStarts.Length > MaxViewStartsInViewChange) return "too many view starts";
        foreach (var start in v.ViewStarts)
            if (CheckCheckpointCertificate(start) is { } badStart) return badStart;
        if (v.Log.Length > MaxViewChangeLog) return "log too long";
        foreach (var entry in v.Log)
        {
            // A log holds the sender's own certified messages; its view changes and new views
            // travel as stubs, which bounds the nesting depth to one.
            if (entry is null or ViewChange or NewView) return "bad log entry";
            if (entry.Sender != v.ReplicaId) return "log entry from another replica";
            if (Check(entry) is { } badEntry) return badEntry;
        }
        return null;
    }

    private static string? CheckNewView(NewView n)
    {
        if (CheckUi(n.NewViewUi) is { } why) return why;
        if (n.ViewChanges is null) return "null view-change list";
        if (n.ViewChanges.Length > MaxViewChangesInNewView) return "too many view changes";
        foreach (var vc in n.ViewChanges)
        {
            // Whole, or by reference (a stub naming one by digest and UI).
            var bad = vc switch
            {
                ViewChange whole => CheckViewChange(whole),
                CertifiedStub stub => Check(stub),
                null => "null view change",
                _ => "bad view change entry",
            };
            if (bad is not null) return bad;
        }
        return null;
    }

    private static string? CheckViewChangeFetch(ViewChangeFetch f)
    {
        if (f.Wanted is null) return "null wanted list";
        if (f.Wanted.Length is 0 or > MaxViewChangesInNewView) return "wanted list length";
        foreach (var stub in f.Wanted)
            if ((stub is null ? "null stub" : Check(stub)) is { } bad) return bad;
        return CheckSignature(f.Signature);
    }
}
