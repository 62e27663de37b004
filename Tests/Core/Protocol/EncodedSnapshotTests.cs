using MinBft.Protocol;

namespace MinBft.Tests.Protocol;

/// <summary>
/// A checkpoint's snapshot is encoded in three parts so the application's bytes are never copied
/// into a second array. The parts must still be, byte for byte, the one-array layout peers
/// assemble from chunks and checkpoints were stored in before.
/// </summary>
public sealed class EncodedSnapshotTests
{
    private static StateSnapshot Sample(int applicationLength)
    {
        var clients = Enumerable.Range(0, 3)
            .Select(i => new SnapshotClient(new string((char)('a' + i), 64), (ulong)i + 1, 2, Enumerable.Repeat((byte)i, 32).ToArray(), [(byte)i, 9], LastActive: 5))
            .ToList();
        var application = Enumerable.Range(0, applicationLength).Select(i => (byte)(i * 7)).ToArray();
        return new StateSnapshot(9, Enumerable.Repeat((byte)3, 32).ToArray(), application, clients, ExpiryHorizon: 4);
    }

    [Fact]
    public void The_application_part_is_the_services_own_array_not_a_copy()
    {
        var snapshot = Sample(1000);

        var encoded = snapshot.Encode();

        Assert.Same(snapshot.Application, encoded.Application);
        Assert.Equal(EncodedSnapshot.HeadLength, encoded.Head.Length);
        Assert.Same(snapshot.Application, StateSnapshot.TryDecode(encoded)!.Application);
    }

    [Fact]
    public void Parts_and_one_array_decode_to_the_same_snapshot()
    {
        var snapshot = Sample(300);
        var encoded = snapshot.Encode();

        foreach (var decoded in new[] { StateSnapshot.TryDecode(encoded), StateSnapshot.TryDecode(encoded.ToArray()) })
        {
            Assert.NotNull(decoded);
            Assert.Equal(snapshot.Sequence, decoded.Sequence);
            Assert.Equal(snapshot.History, decoded.History);
            Assert.Equal(snapshot.Application, decoded.Application);
            Assert.Equal(snapshot.ExpiryHorizon, decoded.ExpiryHorizon);
            Assert.Equal(snapshot.Clients.Select(c => (c.ClientId, c.Seq, c.View, c.LastActive)), decoded.Clients.Select(c => (c.ClientId, c.Seq, c.View, c.LastActive)));
            Assert.Equal(encoded.ToArray(), decoded.Encode().ToArray());
        }
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(77)]
    public void Every_slice_across_the_parts_is_that_slice_of_the_whole(int applicationLength)
    {
        var encoded = Sample(applicationLength).Encode();
        var whole = encoded.ToArray();
        Assert.Equal(encoded.Length, whole.LongLength);

        // Chunk sizes that start and end inside each part and on every boundary between them.
        foreach (var size in new[] { 1, 5, EncodedSnapshot.HeadLength, EncodedSnapshot.HeadLength + 1, 64, whole.Length })
            for (var offset = 0; offset < whole.Length; offset += size)
            {
                var count = Math.Min(size, whole.Length - offset);
                Assert.Equal(whole.AsSpan(offset, count).ToArray(), encoded.Slice(offset, count));
            }
        Assert.Throws<ArgumentOutOfRangeException>(() => encoded.Slice(whole.Length - 1, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => encoded.Slice(-1, 1));
    }

    [Fact]
    public void A_checkpoint_stored_in_one_array_splits_into_the_same_parts()
    {
        var encoded = Sample(123).Encode();

        var split = EncodedSnapshot.TrySplit(encoded.ToArray());

        Assert.NotNull(split);
        Assert.Equal(encoded.Head, split.Head);
        Assert.Equal(encoded.Application, split.Application);
        Assert.Equal(encoded.Tail, split.Tail);
    }

    [Fact]
    public void A_one_array_snapshot_whose_stated_length_does_not_fit_is_not_split()
    {
        var whole = Sample(10).Encode().ToArray();

        Assert.Null(EncodedSnapshot.TrySplit(whole.AsSpan(0, EncodedSnapshot.HeadLength - 1)));
        var tooLong = whole.ToArray();
        tooLong[EncodedSnapshot.HeadLength - 4] = 0x7F; // application length far beyond the bytes
        Assert.Null(EncodedSnapshot.TrySplit(tooLong));
        var negative = whole.ToArray();
        negative[EncodedSnapshot.HeadLength - 4] = 0x80;
        Assert.Null(EncodedSnapshot.TrySplit(negative));
    }

    [Fact]
    public void Stored_parts_that_disagree_with_each_other_do_not_decode()
    {
        var encoded = Sample(10).Encode();

        // The application part is not the length the envelope states (a store that lost bytes).
        Assert.Null(StateSnapshot.TryDecode(new EncodedSnapshot(encoded.Head, encoded.Application[..9], encoded.Tail)));
        // An envelope of the wrong length, or of another format.
        Assert.Null(StateSnapshot.TryDecode(new EncodedSnapshot(encoded.Head[..^1], encoded.Application, encoded.Tail)));
        var otherFormat = encoded.Head.ToArray();
        otherFormat[0] ^= 1;
        Assert.Null(StateSnapshot.TryDecode(new EncodedSnapshot(otherFormat, encoded.Application, encoded.Tail)));
        // A client table cut short.
        Assert.Null(StateSnapshot.TryDecode(new EncodedSnapshot(encoded.Head, encoded.Application, encoded.Tail[..^1])));
        Assert.Null(StateSnapshot.TryDecode(new EncodedSnapshot(encoded.Head, encoded.Application, [])));
    }
}
