using System.Security.Cryptography;
using MinBft.Messages;

namespace MinBft.Encoding;

/// <summary>
/// The canonical bytes each signature or UI covers. A message's own UI or signature is never
/// part of its own bytes; a message that refers to another (COMMIT to PREPARE, VIEW-CHANGE to
/// its log) covers the other's digest and UI, so the reference cannot be swapped.
/// </summary>
public static class MessageEncoding
{
    public static byte[] Request(Request r) => Request(r.ClientId, r.ClientPublicKey, r.Seq, r.Operation, r.Incarnation);

    public static byte[] Request(string clientId, ReadOnlySpan<byte> publicKey, ulong seq, ReadOnlySpan<byte> operation, ulong incarnation = 0) =>
        new CanonicalWriter(TagLength + 28 + clientId.Length + publicKey.Length + operation.Length)
            .Tag(MessageTag.Request).Text(clientId).Bytes(publicKey).U64(seq).Bytes(operation).U64(incarnation)
            .ToArray();

    private static void WritePrepare(CanonicalWriter w, Prepare p)
    {
        w.Tag(MessageTag.Prepare).I64(p.View).I32(p.PrimaryId).U64(p.Sequence).I32(p.Batch.Length);
        foreach (var request in p.Batch) WriteRequest(w, request);
        if (p.ViewStart is null) w.U8(0);
        else WriteCheckpointCertificate(w.U8(1), p.ViewStart);
    }

    private static void WriteCommit(CanonicalWriter w, Commit c, ReadOnlySpan<byte> prepareDigest)
    {
        w.Tag(MessageTag.Commit).I64(c.View).I32(c.ReplicaId);
        WriteCertifiedReference(w, c.Prepare, prepareDigest);
    }

    /// <summary>The leaf a REPLY is in its batch's reply tree: everything but the proof.</summary>
    public static byte[] ReplyLeaf(Reply r) => ReplyLeaf(r.View, r.ReplicaId, r.ClientId, r.Seq, r.RequestDigest, r.Result, r.Status, r.Position);

    public static byte[] ReplyLeaf(long view, int replicaId, string clientId, ulong seq, ReadOnlySpan<byte> requestDigest, ReadOnlySpan<byte> result,
        ReplyStatus status = ReplyStatus.Executed, ulong position = 0) =>
        WriteReplyLeaf(new CanonicalWriter(ReplyLeafLength(clientId, requestDigest, result)), view, replicaId, clientId, seq, requestDigest, result, status, position)
            .ToArray();

    /// <summary>SHA-256 of <see cref="ReplyLeaf(Reply)"/>, encoded on a pooled buffer.</summary>
    public static byte[] ReplyLeafDigest(Reply r)
    {
        using var w = CanonicalWriter.Rent(ReplyLeafLength(r.ClientId, r.RequestDigest, r.Result));
        return WriteReplyLeaf(w, r.View, r.ReplicaId, r.ClientId, r.Seq, r.RequestDigest, r.Result, r.Status, r.Position).Sha256();
    }

    private static CanonicalWriter WriteReplyLeaf(CanonicalWriter w, long view, int replicaId, string clientId, ulong seq, ReadOnlySpan<byte> requestDigest,
        ReadOnlySpan<byte> result, ReplyStatus status, ulong position) =>
        w.Tag(MessageTag.Reply).I64(view).I32(replicaId).Text(clientId).U64(seq).Bytes(requestDigest).Bytes(result).U8((byte)status).U64(position);

    private static int ReplyLeafLength(string clientId, ReadOnlySpan<byte> requestDigest, ReadOnlySpan<byte> result) =>
        TagLength + 41 + (clientId?.Length ?? 0) + requestDigest.Length + result.Length;

    /// <summary>What a client's MAC for replica <paramref name="replicaId"/> covers: the request's digest.</summary>
    public static byte[] RequestAuthenticator(int replicaId, ReadOnlySpan<byte> requestDigest) =>
        WriteRequestAuthenticator(new CanonicalWriter(64), replicaId, requestDigest).ToArray();

    /// <summary><see cref="RequestAuthenticator(int, ReadOnlySpan{byte})"/> into <paramref name="w"/> (a pooled one, per request and replica).</summary>
    public static CanonicalWriter WriteRequestAuthenticator(CanonicalWriter w, int replicaId, ReadOnlySpan<byte> requestDigest) =>
        w.Tag(MessageTag.RequestAuthenticator).I32(replicaId).Bytes(requestDigest);

    /// <summary>What a replica's MAC on a REPLY covers (<see cref="Reply.Mac"/>): the reply's leaf digest, which
    /// names the replica, the client, the request and the outcome. Its own tag keeps it apart from request MACs
    /// under the same session key.</summary>
    public static CanonicalWriter WriteReplyAuthenticator(CanonicalWriter w, ReadOnlySpan<byte> replyLeafDigest) =>
        w.Tag(MessageTag.ReplyAuthenticator).Bytes(replyLeafDigest);

    public static byte[] ClientSessionOffer(string clientId, ReadOnlySpan<byte> clientPublicKey, long epoch, ReadOnlySpan<byte> agreementKey) =>
        new CanonicalWriter(160).Tag(MessageTag.ClientSessionOffer).Text(clientId).Bytes(clientPublicKey).I64(epoch).Bytes(agreementKey).ToArray();

    public static byte[] ClientSessionAccept(int replicaId, string clientId, long epoch, ReadOnlySpan<byte> clientAgreementKey, ReadOnlySpan<byte> replicaAgreementKey) =>
        new CanonicalWriter(192).Tag(MessageTag.ClientSessionAccept).I32(replicaId).Text(clientId).I64(epoch)
            .Bytes(clientAgreementKey).Bytes(replicaAgreementKey).ToArray();

    /// <summary>What a replica signs for a batch of replies: the tree's root and size. The
    /// replica id is covered too, so a root signed by one replica never passes for another's.</summary>
    public static byte[] ReplyBatch(int replicaId, int count, ReadOnlySpan<byte> root) =>
        new CanonicalWriter(64).Tag(MessageTag.ReplyBatch).I32(replicaId).I32(count).Bytes(root).ToArray();

    public static byte[] Checkpoint(Checkpoint c) =>
        new CanonicalWriter(96).Tag(MessageTag.Checkpoint).I32(c.ReplicaId).I64(c.View).U64(c.Sequence).Bytes(c.StateDigest)
            .U8(c.IsViewStart ? (byte)1 : (byte)0).ToArray();

    public static byte[] ReqViewChange(ReqViewChange r) =>
        new CanonicalWriter(48).Tag(MessageTag.ReqViewChange).I32(r.ReplicaId).I64(r.CurrentView).I64(r.NewView).ToArray();

    public static byte[] ViewChange(ViewChange v)
    {
        var w = new CanonicalWriter(128 + v.Log.Length * 80)
            .Tag(MessageTag.ViewChange).I32(v.ReplicaId).I64(v.NewView);
        WriteCheckpointCertificate(w, v.CheckpointCertificate);
        w.I32(v.Log.Length);
        foreach (var entry in v.Log) WriteCertifiedReference(w, entry);
        w.I32(v.ViewStarts.Length);
        foreach (var start in v.ViewStarts) WriteCheckpointCertificate(w, start);
        return w.ToArray();
    }

    public static byte[] NewView(NewView n)
    {
        var w = new CanonicalWriter(64 + n.ViewChanges.Length * 80)
            .Tag(MessageTag.NewView).I32(n.PrimaryId).I64(n.View).I32(n.ViewChanges.Length);
        foreach (var vc in n.ViewChanges) WriteCertifiedReference(w, vc);
        return w.ToArray();
    }

    public static byte[] ViewChangeFetch(ViewChangeFetch f)
    {
        var w = new CanonicalWriter(16 + f.Wanted.Length * 96).Tag(MessageTag.ViewChangeFetch).I32(f.ReplicaId).I32(f.Wanted.Length);
        foreach (var stub in f.Wanted) WriteCertifiedReference(w, stub);
        return w.ToArray();
    }

    public static byte[] RetransmitRequest(RetransmitRequest r) =>
        new CanonicalWriter(48).Tag(MessageTag.RetransmitRequest).I32(r.ReplicaId).I32(r.TargetId).U64(r.FromCounter).ToArray();

    public static byte[] StateRequest(StateRequest r) =>
        new CanonicalWriter(48).Tag(MessageTag.StateRequest).I32(r.ReplicaId).U64(r.MinSequence).U64(r.Sequence).I32(r.Chunk).ToArray();

    /// <summary>The bytes a USIG certifies for a UI-certified message (its UI excluded).</summary>
    public static byte[] Certified(CertifiedMessage m) => m switch
    {
        Messages.Prepare p => EncodeCertified(new CanonicalWriter(CertifiedLength(p)), p).ToArray(),
        Messages.Commit c => EncodeCertified(new CanonicalWriter(CertifiedLength(c)), c, CertifiedDigest(c.Prepare)).ToArray(),
        Checkpoint c => Checkpoint(c),
        ViewChange v => ViewChange(v),
        NewView n => NewView(n),
        _ => throw new ArgumentException($"unknown certified message type {m.GetType().Name}", nameof(m)),
    };

    /// <summary>SHA-256 of the bytes a USIG certifies: what CreateUi and VerifyUi take.</summary>
    public static byte[] CertifiedDigest(CertifiedMessage m) => m switch
    {
        CertifiedStub stub => (byte[])stub.CertifiedDigest.Clone(),
        Messages.Commit c => CommitDigest(c, CertifiedDigest(c.Prepare)),
        Messages.Prepare p => PrepareDigest(p),
        _ => SHA256.HashData(Certified(m)),
    };

    /// <summary>
    /// The certified digest of <paramref name="c"/> given the certified digest of the PREPARE it
    /// carries, for callers that hold it already (the PREPARE is the costly part: a whole batch).
    /// </summary>
    public static byte[] CommitDigest(Messages.Commit c, ReadOnlySpan<byte> prepareDigest)
    {
        using var w = CanonicalWriter.Rent(CertifiedLength(c));
        return EncodeCertified(w, c, prepareDigest).Sha256();
    }

    // The hot path (every PREPARE, once per copy a replica meets): encoded on a pooled buffer
    // sized up front, so a batch's bytes are neither copied nor kept.
    private static byte[] PrepareDigest(Messages.Prepare p)
    {
        PreparesHashed++;
        using var w = CanonicalWriter.Rent(CertifiedLength(p));
        return EncodeCertified(w, p).Sha256();
    }

    /// <summary>PREPAREs encoded for a digest on this thread so far (tests check that a replica
    /// hashes each PREPARE it meets once).</summary>
    [ThreadStatic]
    internal static long PreparesHashed;

    private static CanonicalWriter EncodeCertified(CanonicalWriter w, Messages.Prepare p)
    {
        WritePrepare(w, p);
        return w;
    }

    private static CanonicalWriter EncodeCertified(CanonicalWriter w, Messages.Commit c, ReadOnlySpan<byte> prepareDigest)
    {
        WriteCommit(w, c, prepareDigest);
        return w;
    }

    // Exact for a PREPARE without a view-start certificate and for a COMMIT (ASCII client ids); a
    // writer grows past an estimate that falls short, it only costs a copy.
    private static int CertifiedLength(CertifiedMessage m) => m switch
    {
        Messages.Prepare p => TagLength + 25 + RequestsLength(p.Batch) + (p.ViewStart is null ? 0 : 512),
        _ => TagLength + 12 + ReferenceLength,
    };

    // The domain prefix and the message tag (CanonicalWriter.Tag).
    private static int TagLength => MessageTags.Domain.Length + 1;
    // Sender, digest, and a UI (epoch, counter, a certificate of up to a signature's length).
    private const int ReferenceLength = 4 + MessageLimits.DigestLength + 20 + 64;

    private static int RequestsLength(Request[]? batch)
    {
        if (batch is null) return 0;
        var length = 0;
        foreach (var r in batch) length += RequestLength(r);
        return length;
    }

    private static int RequestLength(Request? r) =>
        r is null ? 0 : 32 + (r.ClientId?.Length ?? 0) + (r.ClientPublicKey?.Length ?? 0) + (r.Operation?.Length ?? 0) + (r.Signature?.Length ?? 0);

    /// <summary>The form a message takes in a VIEW-CHANGE log: whole, or a stub for messages
    /// that carry other replicas' messages (VIEW-CHANGE, NEW-VIEW).</summary>
    public static CertifiedMessage ForLog(CertifiedMessage m) =>
        m is Messages.ViewChange or Messages.NewView ? new CertifiedStub(m.Sender, CertifiedDigest(m), m.Ui) : m;

    /// <summary>
    /// A VIEW-CHANGE's log: each message in its log form (<see cref="ForLog"/>), and each batch
    /// that repeats an earlier one in the log as that same array. A batch is repeated whenever a
    /// view change carries it (the next primary proposes it again and every replica commits to it
    /// again), so without sharing a log would grow by every carried batch in every view installed
    /// without checkpoint progress. Orleans' serializer keeps object identity within a message, so
    /// a shared batch travels once; the certified bytes are unchanged (the arrays are equal).
    /// </summary>
    public static CertifiedMessage[] LogForm(IEnumerable<CertifiedMessage> messages)
    {
        var batches = new Dictionary<string, Request[]>(StringComparer.Ordinal);
        Request[] Share(Request[] batch)
        {
            var key = BatchKey(batch);
            if (batches.TryGetValue(key, out var shared)) return shared;
            batches[key] = batch;
            return batch;
        }
        return messages.Select(ForLog).Select(entry => entry switch
        {
            Prepare p => p with { Batch = Share(p.Batch) },
            Commit c => c with { Prepare = c.Prepare with { Batch = Share(c.Prepare.Batch) } },
            _ => entry,
        }).ToArray();
    }

    // Every field of every request, the ones no signature covers (reply-to, authenticator) too:
    // a shared array must be equal to the one it replaces in full, not only in what is certified.
    private static string BatchKey(Request[] batch)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var r in batch)
        {
            hash.AppendData(RequestDigest(r));
            var unsigned = new CanonicalWriter(64).U8(r.ReplyTo is null ? (byte)0 : (byte)1).Text(r.ReplyTo ?? "").Bytes(r.Authenticator ?? []);
            hash.AppendData(unsigned.WrittenSpan);
        }
        return Convert.ToHexString(hash.GetHashAndReset()) + ":" + batch.Length;
    }

    /// <summary>SHA-256 identifying a request (its signed content and signature).</summary>
    public static byte[] RequestDigest(Request r)
    {
        using var w = CanonicalWriter.Rent(RequestLength(r));
        WriteRequest(w, r);
        return w.Sha256();
    }

    private static void WriteRequest(CanonicalWriter w, Request r) =>
        w.Text(r.ClientId).Bytes(r.ClientPublicKey).U64(r.Seq).Bytes(r.Operation).U64(r.Incarnation).Bytes(r.Signature);

    private static void WriteUi(CanonicalWriter w, UniqueIdentifier ui) =>
        w.U64(ui.Epoch).U64(ui.Counter).Bytes(ui.Certificate);

    /// <summary>A reference to another certified message: its sender, digest and UI.</summary>
    private static void WriteCertifiedReference(CanonicalWriter w, CertifiedMessage m) => WriteCertifiedReference(w, m, CertifiedDigest(m));

    private static void WriteCertifiedReference(CanonicalWriter w, CertifiedMessage m, ReadOnlySpan<byte> digest)
    {
        w.I32(m.Sender).Raw(digest);
        WriteUi(w, m.Ui);
    }

    private static void WriteCheckpointCertificate(CanonicalWriter w, CheckpointCertificate c)
    {
        w.U64(c.Sequence).Bytes(c.StateDigest).I32(c.Checkpoints.Length);
        foreach (var cp in c.Checkpoints) WriteCertifiedReference(w, cp);
    }
}
