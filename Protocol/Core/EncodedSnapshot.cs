using System.Buffers.Binary;
using MinBft.Encoding;

namespace MinBft.Protocol;

/// <summary>
/// A <see cref="StateSnapshot"/> in its wire layout, held as three arrays in order: the envelope
/// before the application's bytes (format, position, history, their length), the application's
/// snapshot as the service returned it, and the client table after it. The middle part is by far
/// the largest (about 10 MB at 100,000 keys) and is never copied into a second array: storage
/// writes the parts as they are, and state transfer cuts its chunks across them.
/// </summary>
/// <remarks>Nobody writes into these arrays once encoded; the service hands its snapshot over for
/// good (<see cref="MinBft.Application.IStateMachine.Snapshot"/> returns a copy of its own).</remarks>
public sealed class EncodedSnapshot
{
    /// <summary>Bytes before the application's: magic, sequence, history digest, application length.</summary>
    public const int HeadLength = 8 + 8 + MessageLimits.DigestLength + 4;

    /// <param name="head">The envelope up to and including the application's length.</param>
    /// <param name="application">The application's snapshot.</param>
    /// <param name="tail">The expiry horizon and the client table.</param>
    public EncodedSnapshot(byte[] head, byte[] application, byte[] tail)
    {
        Head = head;
        Application = application;
        Tail = tail;
    }

    public byte[] Head { get; }
    public byte[] Application { get; }
    public byte[] Tail { get; }

    /// <summary>Length of the whole encoding, as one array would hold it.</summary>
    public long Length => (long)Head.Length + Application.Length + Tail.Length;

    /// <summary>Bytes <paramref name="offset"/> up to <paramref name="offset"/> + <paramref name="count"/>
    /// of the whole encoding, in a new array.</summary>
    public byte[] Slice(long offset, int count)
    {
        if (offset < 0 || count < 0 || offset > Length - count) throw new ArgumentOutOfRangeException(nameof(offset), $"bytes {offset}+{count} of a {Length}-byte snapshot");
        var slice = new byte[count];
        var written = 0;
        foreach (var part in (byte[][])[Head, Application, Tail])
        {
            if (written == count) break;
            if (offset >= part.Length)
            {
                offset -= part.Length;
                continue;
            }
            var take = (int)Math.Min(part.Length - offset, count - written);
            part.AsSpan((int)offset, take).CopyTo(slice.AsSpan(written));
            written += take;
            offset = 0;
        }
        return slice;
    }

    /// <summary>The whole encoding in one array (tests, and callers that need it contiguous).</summary>
    public byte[] ToArray() => Slice(0, checked((int)Length));

    /// <summary>Splits a contiguous encoding (a checkpoint stored before the parts were kept apart)
    /// at the application length its envelope states; null when that length does not fit.
    /// Nothing else is checked here: <see cref="StateSnapshot.TryDecode(EncodedSnapshot)"/> does.</summary>
    public static EncodedSnapshot? TrySplit(ReadOnlySpan<byte> contiguous)
    {
        if (contiguous.Length < HeadLength) return null;
        var applicationLength = BinaryPrimitives.ReadInt32BigEndian(contiguous[(HeadLength - 4)..]);
        if (applicationLength < 0 || applicationLength > contiguous.Length - HeadLength) return null;
        return new EncodedSnapshot(contiguous[..HeadLength].ToArray(),
            contiguous.Slice(HeadLength, applicationLength).ToArray(),
            contiguous[(HeadLength + applicationLength)..].ToArray());
    }
}
