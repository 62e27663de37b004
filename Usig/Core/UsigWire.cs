using System.Buffers.Binary;
using System.Text;

namespace MinBft.Usig;

/// <summary>
/// The USIG's wire protocol: length-prefixed binary frames (u32 big-endian length, 1..<see cref="MaxFrame"/>,
/// then the body), one response per request, in order. Integers are big-endian.
/// <code>
/// request  := op:u8 body                 response := 0 body | 1 utf8-error-message
/// 1 CreateUis   first:u64 n:u8 (1..32) n×digest[32] kept   -> n:u8 n×ui
/// 2 ReissueUi   counter:u64 digest[32]                     -> present:u8 [ui]
/// 3 GetIdentity                                            -> replica:i32 epoch:u64 counter:u64 window:i32 batch:i32 scheme:str key:bytes
///                                                             maxKept:i32 kept
/// 4 VerifyUis   n:u16 (1..4096) n×(replica:i32 epoch:u64 counter:u64 digest[32] cert:bytes)  -> n:u16 n×valid:u8
/// ui := epoch:u64 counter:u64 cert:bytes     bytes/str := length:u8 data (at most 64 bytes)
/// kept := k:u8 k×(length:u16 data)           at most UsigCore.MaxKeptBytes of data in all
/// </code>
/// In CreateUis, k is 0 (the batch keeps nothing) or n (one message per digest, kept by the USIG
/// with the counter, in place of the last batch's). In GetIdentity, maxKept is the USIG's limit
/// (<see cref="UsigCore.MaxKeptBytes"/>) and k the messages the last batch kept, certified at
/// counters counter-k+1..counter. Every count and length is checked against its bound and against
/// the bytes left before anything is allocated; a frame with trailing bytes is refused. The
/// largest request, a VerifyUis of 4096 claims, is under 0.5 MiB; a CreateUis with kept messages
/// under 3 KiB: <see cref="MaxFrame"/> bounds both.
/// </summary>
public static class UsigWire
{
    public const int MaxFrame = 1 << 20;
    public const int MaxVerify = 4096;
    public const int MaxBytes = 64;
    public const byte CreateUis = 1, ReissueUi = 2, GetIdentity = 3, VerifyUis = 4;
    public const byte Ok = 0, Error = 1;

    /// <summary>One frame's body; null at a clean end of stream. Throws InvalidDataException for a
    /// length out of bounds (before allocating) and EndOfStreamException for a truncated frame.</summary>
    public static async Task<byte[]?> ReadFrameAsync(Stream stream, CancellationToken cancellationToken)
    {
        var prefix = new byte[4];
        var got = await stream.ReadAtLeastAsync(prefix, 4, throwOnEndOfStream: false, cancellationToken).ConfigureAwait(false);
        if (BodyFor(prefix, got) is not { } body) return null;
        await stream.ReadExactlyAsync(body, cancellationToken).ConfigureAwait(false);
        return body;
    }

    /// <summary><see cref="ReadFrameAsync"/> on the calling thread, which blocks until the frame is in.</summary>
    public static byte[]? ReadFrame(Stream stream)
    {
        Span<byte> prefix = stackalloc byte[4];
        var got = stream.ReadAtLeast(prefix, 4, throwOnEndOfStream: false);
        if (BodyFor(prefix, got) is not { } body) return null;
        stream.ReadExactly(body);
        return body;
    }

    public static async Task WriteFrameAsync(Stream stream, byte[] body, CancellationToken cancellationToken)
    {
        await stream.WriteAsync(Frame(body), cancellationToken).ConfigureAwait(false);
        await stream.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary><see cref="WriteFrameAsync"/> on the calling thread.</summary>
    public static void WriteFrame(Stream stream, byte[] body)
    {
        stream.Write(Frame(body));
        stream.Flush();
    }

    // The body buffer a length prefix announces (null: a clean end of stream), checked before allocating.
    private static byte[]? BodyFor(ReadOnlySpan<byte> prefix, int got)
    {
        if (got == 0) return null;
        if (got < 4) throw new EndOfStreamException("truncated frame length");
        var length = BinaryPrimitives.ReadUInt32BigEndian(prefix);
        if (length is 0 or > MaxFrame) throw new InvalidDataException($"frame length {length} outside 1..{MaxFrame}");
        return new byte[length];
    }

    private static byte[] Frame(byte[] body)
    {
        var frame = new byte[4 + body.Length];
        BinaryPrimitives.WriteUInt32BigEndian(frame, (uint)body.Length);
        body.CopyTo(frame, 4);
        return frame;
    }

    public static byte[] ErrorBody(string message) => [Error, .. Encoding.UTF8.GetBytes(message.Length > 1000 ? message[..1000] : message)];
}

/// <summary>Reads a frame body; any shortfall or bound violation throws InvalidDataException.</summary>
public sealed class WireReader(byte[] body)
{
    private int _at;

    public int Left => body.Length - _at;

    public byte U8() => Take(1)[0];
    public ushort U16() => BinaryPrimitives.ReadUInt16BigEndian(Take(2));
    public int I32() => BinaryPrimitives.ReadInt32BigEndian(Take(4));
    public ulong U64() => BinaryPrimitives.ReadUInt64BigEndian(Take(8));
    public byte[] Raw(int length) => Take(length).ToArray();
    public byte[] Bytes() => U8() is var n && n <= UsigWire.MaxBytes ? Raw(n) : throw new InvalidDataException($"field of {n} bytes, at most {UsigWire.MaxBytes}");
    public string Str() => Encoding.UTF8.GetString(Bytes());
    public UsigUi Ui() => new(U64(), U64(), Bytes());

    /// <summary>Kept messages (<c>k:u8 k×(length:u16 data)</c>): at most <paramref name="maxCount"/>,
    /// at most <see cref="UsigCore.MaxKeptBytes"/> in all, each length checked against the limit and
    /// the bytes left before it is allocated.</summary>
    public byte[][] KeptMessages(int maxCount)
    {
        var count = U8();
        if (count > maxCount || count * 2 > Left) throw new InvalidDataException($"{count} kept messages, at most {maxCount}, or beyond the frame");
        var kept = new byte[count][];
        var total = 0;
        for (var i = 0; i < count; i++)
        {
            var length = U16();
            total += length;
            if (total > UsigCore.MaxKeptBytes) throw new InvalidDataException($"kept messages of more than {UsigCore.MaxKeptBytes} bytes in all");
            kept[i] = Raw(length);
        }
        return kept;
    }

    /// <summary>A count within 1..<paramref name="max"/> whose items (at least <paramref name="itemSize"/> bytes each) fit in what is left.</summary>
    public int Count(int value, int max, int itemSize) =>
        value >= 1 && value <= max && (long)value * itemSize <= Left ? value : throw new InvalidDataException($"count {value} outside 1..{max} or beyond the frame");

    public void End()
    {
        if (Left != 0) throw new InvalidDataException($"{Left} bytes after the end of the message");
    }

    private ReadOnlySpan<byte> Take(int length)
    {
        if (length > Left) throw new InvalidDataException("truncated message");
        _at += length;
        return body.AsSpan(_at - length, length);
    }
}

/// <summary>Writes a frame body.</summary>
public sealed class WireWriter
{
    private readonly MemoryStream _buffer = new();

    public WireWriter U8(byte value) => Put([value]);
    public WireWriter U16(ushort value) => Put(Big(w => BinaryPrimitives.WriteUInt16BigEndian(w, value), 2));
    public WireWriter I32(int value) => Put(Big(w => BinaryPrimitives.WriteInt32BigEndian(w, value), 4));
    public WireWriter U64(ulong value) => Put(Big(w => BinaryPrimitives.WriteUInt64BigEndian(w, value), 8));
    public WireWriter Raw(ReadOnlySpan<byte> value) => Put(value);
    public WireWriter Bytes(ReadOnlySpan<byte> value) => value.Length <= UsigWire.MaxBytes ? U8((byte)value.Length).Put(value) : throw new ArgumentException("field too long");
    public WireWriter Str(string value) => Bytes(Encoding.UTF8.GetBytes(value));
    public WireWriter Ui(UsigUi ui) => U64(ui.Epoch).U64(ui.Counter).Bytes(ui.Certificate);

    /// <summary>Kept messages (none: null or empty) as <see cref="WireReader.KeptMessages"/> reads them.</summary>
    public WireWriter KeptMessages(IReadOnlyList<byte[]>? kept)
    {
        U8(checked((byte)(kept?.Count ?? 0)));
        foreach (var message in kept ?? []) U16(checked((ushort)message.Length)).Raw(message);
        return this;
    }
    public byte[] ToArray() => _buffer.ToArray();

    private static byte[] Big(Action<Span<byte>> write, int length)
    {
        var bytes = new byte[length];
        write(bytes);
        return bytes;
    }

    private WireWriter Put(ReadOnlySpan<byte> bytes)
    {
        _buffer.Write(bytes);
        return this;
    }
}

/// <summary>Answers one request frame with one response frame. Never throws for bad input: every
/// malformed or refused request gets an error response, and changes nothing.</summary>
public sealed class UsigServer(UsigCore core)
{
    private const int ClaimSize = 4 + 8 + 8 + 32 + 1;

    public async Task<byte[]> HandleAsync(byte[] request, CancellationToken cancellationToken)
    {
        try
        {
            var r = new WireReader(request);
            var w = new WireWriter().U8(UsigWire.Ok);
            switch (r.U8())
            {
                case UsigWire.CreateUis:
                    var first = r.U64();
                    var digests = Enumerable.Range(0, r.Count(r.U8(), UsigCore.MaxBatch, 32)).Select(_ => (ReadOnlyMemory<byte>)r.Raw(32)).ToArray();
                    var kept = r.KeptMessages(digests.Length);
                    r.End();
                    if (kept.Length is not 0 && kept.Length != digests.Length)
                        throw new InvalidDataException($"{kept.Length} kept messages for {digests.Length} digests: none or one each");
                    var keep = kept.Length == 0 ? null : kept.Select(m => (ReadOnlyMemory<byte>)m).ToArray();
                    var uis = await core.CreateUisAsync(first, digests, keep, cancellationToken).ConfigureAwait(false);
                    w.U8((byte)uis.Count);
                    foreach (var ui in uis) w.Ui(ui);
                    break;
                case UsigWire.ReissueUi:
                    var counter = r.U64();
                    var digest = r.Raw(32);
                    r.End();
                    var again = await core.ReissueUiAsync(counter, digest, cancellationToken).ConfigureAwait(false);
                    if (again is null) w.U8(0);
                    else w.U8(1).Ui(again);
                    break;
                case UsigWire.GetIdentity:
                    r.End();
                    var state = await core.LoadAsync(cancellationToken).ConfigureAwait(false);
                    w.I32(core.ReplicaId).U64(core.Epoch).U64(state.Counter).I32(UsigCore.RecentWindow).I32(UsigCore.MaxBatch)
                        .Str(core.Certifier.Scheme).Bytes(core.Certifier.PublicKey)
                        .I32(UsigCore.MaxKeptBytes).KeptMessages(state.KeptMessages);
                    break;
                case UsigWire.VerifyUis:
                    var claims = Enumerable.Range(0, r.Count(r.U16(), UsigWire.MaxVerify, ClaimSize))
                        .Select(_ => new UsigClaim(r.I32(), r.U64(), r.U64(), r.Raw(32), r.Bytes())).ToArray();
                    r.End();
                    var valid = core.VerifyUis(claims);
                    w.U16((ushort)valid.Length);
                    foreach (var v in valid) w.U8(v ? (byte)1 : (byte)0);
                    break;
                case var op:
                    throw new InvalidDataException($"unknown operation {op}");
            }
            return w.ToArray();
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Refused, malformed, or a store that failed: the core issued nothing it did not make durable.
            return UsigWire.ErrorBody(e.GetType().Name + ": " + e.Message);
        }
    }
}
