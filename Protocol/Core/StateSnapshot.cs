using System.Buffers.Binary;
using MinBft.Encoding;

namespace MinBft.Protocol;

/// <summary>One client's exactly-once record inside a snapshot: its last executed request (seq
/// and digest, which the reply covers), result, and the position it executed at.</summary>
public readonly record struct SnapshotClient(string ClientId, ulong Seq, long View, byte[] RequestDigest, byte[] Result, ulong LastActive);

/// <summary>
/// Everything a checkpoint covers (PROTOCOL.md section 8): the application's snapshot, the
/// client table (records and expiry horizon) and the digest chain of the executed batches, at position <see cref="Sequence"/>. Encoded as plain length-prefixed bytes so it
/// can travel in bounded chunks; decoding checks every length, since the bytes come from a peer
/// that may be Byzantine (the digest is checked only after a successful decode).
/// </summary>
public sealed record StateSnapshot(ulong Sequence, byte[] History, byte[] Application, IReadOnlyList<SnapshotClient> Clients, ulong ExpiryHorizon = 0)
{
    private static ReadOnlySpan<byte> Magic => "MBSNAP4\0"u8;

    // Per client: id length, seq, view, last active, request digest, result length.
    private const int FixedClientBytes = 1 + 8 + 8 + 8 + MessageLimits.DigestLength + 4;

    /// <summary>The wire layout in three parts; the application's part is <see cref="Application"/>
    /// itself, not a copy.</summary>
    public EncodedSnapshot Encode()
    {
        if (History.Length != MessageLimits.DigestLength) throw new ArgumentException("history digest length");
        var head = new byte[EncodedSnapshot.HeadLength];
        Magic.CopyTo(head);
        var at = Magic.Length;
        BinaryPrimitives.WriteUInt64BigEndian(head.AsSpan(at), Sequence); at += 8;
        History.CopyTo(head.AsSpan(at)); at += History.Length;
        BinaryPrimitives.WriteInt32BigEndian(head.AsSpan(at), Application.Length); at += 4;
        ProtocolInvariantException.Check(at == head.Length, "a snapshot's envelope fills its fixed length");

        var tailLength = 8L + 4;
        foreach (var c in Clients) tailLength += FixedClientBytes + System.Text.Encoding.ASCII.GetByteCount(c.ClientId) + c.Result.Length;
        // The whole must still fit one array: a peer assembles it from chunks.
        if (head.Length + Application.Length + tailLength > Array.MaxLength)
            throw new InvalidOperationException($"A snapshot of {head.Length + Application.Length + tailLength} bytes is too large.");
        var tail = new byte[tailLength];
        var span = tail.AsSpan();
        at = 0;
        BinaryPrimitives.WriteUInt64BigEndian(span[at..], ExpiryHorizon); at += 8;
        BinaryPrimitives.WriteInt32BigEndian(span[at..], Clients.Count); at += 4;
        foreach (var c in Clients)
        {
            var id = System.Text.Encoding.ASCII.GetBytes(c.ClientId);
            span[at++] = checked((byte)id.Length);
            id.CopyTo(span[at..]); at += id.Length;
            BinaryPrimitives.WriteUInt64BigEndian(span[at..], c.Seq); at += 8;
            BinaryPrimitives.WriteInt64BigEndian(span[at..], c.View); at += 8;
            BinaryPrimitives.WriteUInt64BigEndian(span[at..], c.LastActive); at += 8;
            if (c.RequestDigest.Length != MessageLimits.DigestLength) throw new ArgumentException("request digest length");
            c.RequestDigest.CopyTo(span[at..]); at += c.RequestDigest.Length;
            BinaryPrimitives.WriteInt32BigEndian(span[at..], c.Result.Length); at += 4;
            c.Result.CopyTo(span[at..]); at += c.Result.Length;
        }
        ProtocolInvariantException.Check(at == tail.Length, "a snapshot's client table fills exactly the size computed for it");
        return new EncodedSnapshot(head, Application, tail);
    }

    /// <summary>Null when the bytes (one array: chunks a peer sent, assembled) are not a well-formed
    /// snapshot. The application's bytes are copied out of them.</summary>
    public static StateSnapshot? TryDecode(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length < EncodedSnapshot.HeadLength || !TryDecodeHead(bytes[..EncodedSnapshot.HeadLength], out var sequence, out var history, out var appLength)
            || appLength > bytes.Length - EncodedSnapshot.HeadLength)
            return null;
        return TryDecodeTail(bytes[(EncodedSnapshot.HeadLength + appLength)..], sequence, history, bytes.Slice(EncodedSnapshot.HeadLength, appLength).ToArray());
    }

    /// <summary>Null when the parts (a stored checkpoint) are not a well-formed snapshot. The
    /// application's part is used as it is.</summary>
    public static StateSnapshot? TryDecode(EncodedSnapshot encoded) =>
        encoded.Head.Length == EncodedSnapshot.HeadLength && TryDecodeHead(encoded.Head, out var sequence, out var history, out var appLength)
            && appLength == encoded.Application.Length
            ? TryDecodeTail(encoded.Tail, sequence, history, encoded.Application)
            : null;

    private static bool TryDecodeHead(ReadOnlySpan<byte> head, out ulong sequence, out byte[] history, out int appLength)
    {
        sequence = 0;
        history = [];
        appLength = 0;
        if (!head[..Magic.Length].SequenceEqual(Magic)) return false;
        var at = Magic.Length;
        sequence = BinaryPrimitives.ReadUInt64BigEndian(head[at..]); at += 8;
        history = head.Slice(at, MessageLimits.DigestLength).ToArray(); at += MessageLimits.DigestLength;
        appLength = BinaryPrimitives.ReadInt32BigEndian(head[at..]);
        return appLength >= 0;
    }

    private static StateSnapshot? TryDecodeTail(ReadOnlySpan<byte> bytes, ulong sequence, byte[] history, byte[] app)
    {
        if (bytes.Length < 12) return null;
        var at = 0;
        var expiryHorizon = BinaryPrimitives.ReadUInt64BigEndian(bytes[at..]); at += 8;
        var count = BinaryPrimitives.ReadInt32BigEndian(bytes[at..]); at += 4;
        // Each client takes at least its fixed fields: a count beyond that is a lie, not an allocation.
        if (count < 0 || count > (bytes.Length - at) / FixedClientBytes) return null;
        var clients = new List<SnapshotClient>(count);
        string? previous = null;
        for (var i = 0; i < count; i++)
        {
            if (bytes.Length - at < 1) return null;
            int idLength = bytes[at++];
            if (idLength != MessageLimits.ClientIdLength || bytes.Length - at < idLength + FixedClientBytes - 1) return null;
            var id = System.Text.Encoding.ASCII.GetString(bytes.Slice(at, idLength)); at += idLength;
            // Sorted and unique: one encoding per state, as the digest assumes.
            if (previous is not null && string.CompareOrdinal(previous, id) >= 0) return null;
            previous = id;
            var seq = BinaryPrimitives.ReadUInt64BigEndian(bytes[at..]); at += 8;
            var view = BinaryPrimitives.ReadInt64BigEndian(bytes[at..]); at += 8;
            var lastActive = BinaryPrimitives.ReadUInt64BigEndian(bytes[at..]); at += 8;
            // A record is active at or below its snapshot's position (the digest check comes later).
            if (lastActive > sequence) return null;
            var requestDigest = bytes.Slice(at, MessageLimits.DigestLength).ToArray(); at += MessageLimits.DigestLength;
            var resultLength = BinaryPrimitives.ReadInt32BigEndian(bytes[at..]); at += 4;
            if (resultLength < 0 || resultLength > MessageLimits.MaxResultLength || resultLength > bytes.Length - at) return null;
            clients.Add(new SnapshotClient(id, seq, view, requestDigest, bytes.Slice(at, resultLength).ToArray(), lastActive)); at += resultLength;
        }
        return at == bytes.Length && expiryHorizon <= sequence + 1 ? new StateSnapshot(sequence, history, app, clients, expiryHorizon) : null;
    }
}
