using System.Buffers.Binary;
using MinBft.Crypto;
using MinBft.Tests.Crypto;
using MinBft.Usig;
using Xunit.Abstractions;

namespace MinBft.Tests.Usig;

/// <summary>
/// The USIG program's request handling (<see cref="UsigServer"/>) and framing (<see cref="UsigWire"/>)
/// against malformed input, over a real counter file: every bad request gets an error response and
/// leaves the durable counter where it was, and the server keeps serving.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class UsigWireTests(ITestOutputHelper output) : IDisposable
{
    private const int ReplicaId = 1;
    private const ulong Epoch = 3;
    private readonly string _directory = Directory.CreateTempSubdirectory("usig-wire-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    public static TheoryData<string, byte[]> BadRequests()
    {
        var digest = new byte[32];
        // A CreateUis request: its digests, then `extra` in place of its kept part (default: none kept).
        byte[] Create(ulong first, int count, int digests, params byte[] extra)
        {
            var w = new WireWriter().U8(UsigWire.CreateUis).U64(first).U8((byte)count);
            for (var i = 0; i < digests; i++) w.Raw(digest);
            return [.. w.ToArray(), .. extra.Length == 0 ? [0] : extra];
        }
        byte[] Kept(params int[] lengths)
        {
            var w = new WireWriter().U8((byte)lengths.Length);
            foreach (var n in lengths) w.U16((ushort)n).Raw(new byte[n]);
            return w.ToArray();
        }
        return new TheoryData<string, byte[]>
        {
            { "empty request", [] },
            { "unknown operation 0", [0] },
            { "unknown operation 5", [5, 0, 0, 0] },
            { "unknown operation 255", [255] },
            { "CreateUis truncated in its counter", [UsigWire.CreateUis, 0, 0, 0, 0] },
            { "CreateUis without its count", new WireWriter().U8(UsigWire.CreateUis).U64(4).ToArray() },
            { "CreateUis count 0", Create(4, 0, 0) },
            { "CreateUis count 33 (over MaxBatch) with 33 digests", Create(4, 33, 33) },
            { "CreateUis count 255 with one digest", Create(4, 255, 1) },
            { "CreateUis count 2 with one digest", Create(4, 2, 1) },
            { "CreateUis digest cut short", [.. Create(4, 1, 0)[..^1], .. new byte[31]] },
            { "CreateUis trailing byte", Create(4, 1, 1, 0, 7) },
            { "CreateUis without its kept count", Create(4, 1, 1)[..^1] },
            { "CreateUis keeping 2 messages for 1 digest", Create(4, 1, 1, Kept(1, 1)) },
            { "CreateUis keeping 1 message for 2 digests", Create(4, 2, 2, Kept(1)) },
            { "CreateUis keeping 255 messages with nothing after", Create(4, 1, 1, 255) },
            { "CreateUis kept length past the frame", Create(4, 1, 1, [.. Kept(10)[..3], 0, 0, 0]) },
            { "CreateUis kept length 65535 with nothing after", Create(4, 1, 1, 1, 255, 255) },
            { "CreateUis kept bytes over the limit", Create(4, 2, 2, Kept(UsigCore.MaxKeptBytes, 1)) },
            { "CreateUis one kept message over the limit", Create(4, 1, 1, Kept(UsigCore.MaxKeptBytes + 1)) },
            { "CreateUis trailing byte after kept messages", Create(4, 1, 1, [.. Kept(2), 0]) },
            { "CreateUis skipping a counter", Create(5, 1, 1) },
            { "CreateUis at counter 0", Create(0, 1, 1) },
            { "CreateUis at an issued counter for another digest", Create(3, 1, 1) },
            { "CreateUis at counter 2^64-1", Create(ulong.MaxValue, 1, 1) },
            { "ReissueUi digest cut short", [.. new WireWriter().U8(UsigWire.ReissueUi).U64(3).ToArray(), .. new byte[31]] },
            { "ReissueUi trailing bytes", [.. new WireWriter().U8(UsigWire.ReissueUi).U64(3).Raw(digest).ToArray(), 1, 2] },
            { "GetIdentity trailing byte", [UsigWire.GetIdentity, 0] },
            { "VerifyUis count 65535 with nothing after it", new WireWriter().U8(UsigWire.VerifyUis).U16(ushort.MaxValue).ToArray() },
            { "VerifyUis count 0", new WireWriter().U8(UsigWire.VerifyUis).U16(0).ToArray() },
            { "VerifyUis on an Ed25519 USIG", new WireWriter().U8(UsigWire.VerifyUis).U16(1).I32(1).U64(Epoch).U64(1).Raw(digest).Bytes(new byte[64]).ToArray() },
            { "VerifyUis certificate length over 64", [.. new WireWriter().U8(UsigWire.VerifyUis).U16(1).I32(1).U64(Epoch).U64(1).Raw(digest).ToArray(), 200, .. new byte[200]] },
        };
    }

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task A_bad_request_gets_an_error_and_leaves_the_counter_unchanged(string what, byte[] request)
    {
        var random = TestRandom.Create(output);
        var path = Path.Combine(_directory, "usig.state");
        using (var init = FileCounterStore.Open(path, ReplicaId, create: true)) Assert.True(await UsigCore.InitializeAsync(init, Epoch, default));
        using var store = FileCounterStore.Open(path, ReplicaId, create: false);
        var core = new UsigCore(ReplicaId, Epoch, new Ed25519UsigCertifier(random.Bytes(32)), store);
        var server = new UsigServer(core);
        var issued = await core.CreateUisAsync(1, [random.Bytes(32), random.Bytes(32), random.Bytes(32)], [new byte[] { 7 }, new byte[] { 8 }, new byte[] { 9 }], default);

        var response = await server.HandleAsync(request, default);

        output.WriteLine($"{what}: {System.Text.Encoding.UTF8.GetString(response.AsSpan(1))}");
        Assert.Equal(UsigWire.Error, response[0]);
        Assert.True(response.Length > 1, "the error says why");
        Assert.Equal(3UL, (await store.ReadAsync(default))!.Counter);
        // What the last good batch kept is kept still: a refused request changes none of it either.
        Assert.Equal([[7], [8], [9]], (await store.ReadAsync(default))!.KeptMessages);
        // Still serving, from where it was: the next counter is 4, and counter 3 keeps its UI.
        var next = await server.HandleAsync(new WireWriter().U8(UsigWire.CreateUis).U64(4).U8(1).Raw(random.Bytes(32)).KeptMessages(null).ToArray(), default);
        var r = new WireReader(next);
        Assert.Equal(UsigWire.Ok, r.U8());
        Assert.Equal(1, r.U8());
        Assert.Equal(4UL, r.Ui().Counter);
        Assert.Equal(4UL, (await store.ReadAsync(default))!.Counter);
        Assert.Empty((await store.ReadAsync(default))!.KeptMessages); // that batch kept none
        Assert.Equal(issued[2].Certificate, (await core.ReissueUiAsync(3, (await ReadDigestAt(store, 3)), default))!.Certificate);
    }

    [Fact]
    public async Task Valid_requests_round_trip_through_the_server()
    {
        var random = TestRandom.Create(output);
        var path = Path.Combine(_directory, "usig.state");
        using (var init = FileCounterStore.Open(path, ReplicaId, create: true)) await UsigCore.InitializeAsync(init, Epoch, default);
        using var store = FileCounterStore.Open(path, ReplicaId, create: false);
        var secret = random.Bytes(32);
        var server = new UsigServer(new UsigCore(ReplicaId, Epoch, new HmacUsigCertifier(secret), store));
        var digests = Enumerable.Range(0, UsigCore.MaxBatch).Select(_ => random.Bytes(32)).ToArray();

        var create = new WireWriter().U8(UsigWire.CreateUis).U64(1).U8((byte)digests.Length);
        foreach (var d in digests) create.Raw(d);
        create.KeptMessages(null);
        var r = new WireReader(await server.HandleAsync(create.ToArray(), default));
        Assert.Equal(UsigWire.Ok, r.U8());
        var uis = Enumerable.Range(0, r.U8()).Select(_ => r.Ui()).ToArray();
        r.End();
        Assert.Equal(Enumerable.Range(1, UsigCore.MaxBatch).Select(i => (ulong)i), uis.Select(u => u.Counter));

        var verify = new WireWriter().U8(UsigWire.VerifyUis).U16(2)
            .I32(ReplicaId).U64(Epoch).U64(5).Raw(digests[4]).Bytes(uis[4].Certificate)
            .I32(ReplicaId).U64(Epoch).U64(5).Raw(digests[5]).Bytes(uis[4].Certificate);
        r = new WireReader(await server.HandleAsync(verify.ToArray(), default));
        Assert.Equal(UsigWire.Ok, r.U8());
        Assert.Equal(2, r.U16());
        Assert.Equal((1, 0), (r.U8(), r.U8()));
        r.End();

        r = new WireReader(await server.HandleAsync([UsigWire.GetIdentity], default));
        Assert.Equal(UsigWire.Ok, r.U8());
        Assert.Equal((ReplicaId, Epoch, (ulong)UsigCore.MaxBatch), (r.I32(), r.U64(), r.U64()));
    }

    [Fact]
    public async Task Kept_messages_go_through_the_server_into_the_counter_file_and_come_back_in_the_identity()
    {
        var random = TestRandom.Create(output);
        var path = Path.Combine(_directory, "usig.state");
        using (var init = FileCounterStore.Open(path, ReplicaId, create: true)) await UsigCore.InitializeAsync(init, Epoch, default);
        using var store = FileCounterStore.Open(path, ReplicaId, create: false);
        var certifier = new Ed25519UsigCertifier(random.Bytes(32));
        var server = new UsigServer(new UsigCore(ReplicaId, Epoch, certifier, store));

        // The largest CreateUis: a full batch keeping the limit's bytes, one message empty.
        var digests = Enumerable.Range(0, UsigCore.MaxBatch).Select(_ => random.Bytes(32)).ToArray();
        var kept = digests.Select((_, i) => random.Bytes(i == 0 ? 0 : i == 1 ? UsigCore.MaxKeptBytes - 30 * 2 : 2)).ToArray();
        Assert.Equal(UsigCore.MaxKeptBytes, kept.Sum(m => m.Length));
        var request = CreateRequest(1, digests, kept);
        Assert.InRange(request.Length + 4, 1, UsigWire.MaxFrame);
        var first = Uis(await server.HandleAsync(request, default));
        Assert.Equal(Enumerable.Range(1, UsigCore.MaxBatch).Select(i => (ulong)i), first.Select(u => u.Counter));
        Assert.Equal(kept.Select(Convert.ToHexString), (await store.ReadAsync(default))!.KeptMessages.Select(Convert.ToHexString));
        AssertIdentity(await server.HandleAsync([UsigWire.GetIdentity], default), 32, kept);

        // A retry of that batch, keeping other bytes or none: the same UIs, nothing kept changes.
        foreach (var other in new[] { kept.Select(_ => random.Bytes(3)).ToArray(), null })
        {
            var again = Uis(await server.HandleAsync(CreateRequest(1, digests, other), default));
            Assert.Equal(first.Select(u => Convert.ToHexString(u.Certificate)), again.Select(u => Convert.ToHexString(u.Certificate)));
            AssertIdentity(await server.HandleAsync([UsigWire.GetIdentity], default), 32, kept);
        }

        // The next batch replaces them; one that keeps none clears them.
        var next = new[] { random.Bytes(5), random.Bytes(6) };
        Uis(await server.HandleAsync(CreateRequest(33, [random.Bytes(32), random.Bytes(32)], next), default));
        AssertIdentity(await server.HandleAsync([UsigWire.GetIdentity], default), 34, next);
        Uis(await server.HandleAsync(CreateRequest(35, [random.Bytes(32)], null), default));
        AssertIdentity(await server.HandleAsync([UsigWire.GetIdentity], default), 35, []);

        void AssertIdentity(byte[] response, ulong counter, byte[][] expected)
        {
            var r = new WireReader(response);
            Assert.Equal(UsigWire.Ok, r.U8());
            Assert.Equal((ReplicaId, Epoch, counter, UsigCore.RecentWindow, UsigCore.MaxBatch), (r.I32(), r.U64(), r.U64(), r.I32(), r.I32()));
            Assert.Equal(certifier.Scheme, r.Str());
            Assert.Equal(certifier.PublicKey, r.Bytes());
            Assert.Equal(UsigCore.MaxKeptBytes, r.I32());
            Assert.Equal(expected.Select(Convert.ToHexString), r.KeptMessages(UsigCore.MaxBatch).Select(Convert.ToHexString));
            r.End();
        }
    }

    [Fact]
    public void Kept_messages_round_trip_and_counts_or_lengths_beyond_the_bounds_or_the_frame_are_refused()
    {
        var random = TestRandom.Create(output);
        var kept = Enumerable.Range(0, random.Next(1, UsigCore.MaxBatch + 1)).Select(_ => random.Bytes(random.Next(0, 40))).ToArray();
        var encoded = new WireWriter().KeptMessages(kept).U8(0xEE).ToArray();
        Assert.Equal(1 + kept.Sum(m => 2 + m.Length) + 1, encoded.Length);
        var r = new WireReader(encoded);
        Assert.Equal(kept.Select(Convert.ToHexString), r.KeptMessages(UsigCore.MaxBatch).Select(Convert.ToHexString));
        Assert.Equal(0xEE, r.U8());
        Assert.Equal([0], new WireWriter().KeptMessages(null).ToArray());
        Assert.Empty(new WireReader([0]).KeptMessages(UsigCore.MaxBatch));

        byte[][] refused =
        [
            [3, 0, 0, 0, 0, 0, 0],                  // 3 messages, at most 2 below
            [2, 0, 0],                               // 2 announced, room for 1 length
            [1, 0, 5, 1, 2, 3],                      // 5 bytes announced, 3 there
            [1, 0xFF, 0xFF],                         // 65535 bytes announced, none there
            [.. new WireWriter().U8(2).U16(UsigCore.MaxKeptBytes).Raw(new byte[UsigCore.MaxKeptBytes]).U16(1).Raw([1]).ToArray()],
            [],                                      // no count at all
        ];
        foreach (var bad in refused) Assert.Throws<InvalidDataException>(() => new WireReader(bad).KeptMessages(2));
    }

    [Fact]
    public async Task The_silos_client_refuses_kept_messages_of_the_wrong_shape_without_sending_them()
    {
        // No program listens there: a request that were sent would fail with a socket error instead.
        using var client = new MinBft.Hosting.UsigClient(Path.Combine(_directory, "nobody.sock"), TimeSpan.FromSeconds(5));
        byte[][] digests = [new byte[32], new byte[32]];
        await Assert.ThrowsAsync<ArgumentException>(() => client.CreateUisAsync(1, digests, [new byte[1]], default));
        await Assert.ThrowsAsync<ArgumentException>(() => client.CreateUisAsync(1, digests, [new byte[1], null!], default));
        await Assert.ThrowsAsync<ArgumentException>(() => client.CreateUisAsync(1, digests, [new byte[UsigCore.MaxKeptBytes], new byte[1]], default));
        await Assert.ThrowsAnyAsync<System.Net.Sockets.SocketException>(() => client.CreateUisAsync(1, digests, [new byte[UsigCore.MaxKeptBytes], []], default));
    }

    private static byte[] CreateRequest(ulong first, byte[][] digests, byte[][]? kept)
    {
        var w = new WireWriter().U8(UsigWire.CreateUis).U64(first).U8((byte)digests.Length);
        foreach (var d in digests) w.Raw(d);
        return w.KeptMessages(kept).ToArray();
    }

    private static UsigUi[] Uis(byte[] response)
    {
        var r = new WireReader(response);
        Assert.True(r.U8() == UsigWire.Ok, System.Text.Encoding.UTF8.GetString(response.AsSpan(1)));
        var uis = Enumerable.Range(0, r.U8()).Select(_ => r.Ui()).ToArray();
        r.End();
        return uis;
    }

    [Fact]
    public async Task Frames_out_of_bounds_or_cut_short_are_refused_before_allocating()
    {
        await Assert.ThrowsAsync<InvalidDataException>(() => UsigWire.ReadFrameAsync(new MemoryStream(Prefix(0)), default));
        await Assert.ThrowsAsync<InvalidDataException>(() => UsigWire.ReadFrameAsync(new MemoryStream(Prefix(UsigWire.MaxFrame + 1)), default));
        await Assert.ThrowsAsync<InvalidDataException>(() => UsigWire.ReadFrameAsync(new MemoryStream(Prefix(uint.MaxValue)), default));
        await Assert.ThrowsAsync<EndOfStreamException>(() => UsigWire.ReadFrameAsync(new MemoryStream([0, 0]), default));
        await Assert.ThrowsAsync<EndOfStreamException>(() => UsigWire.ReadFrameAsync(new MemoryStream([.. Prefix(10), 1, 2, 3]), default));
        Assert.Null(await UsigWire.ReadFrameAsync(new MemoryStream([]), default));
        Assert.Equal(new byte[] { 9, 8 }, await UsigWire.ReadFrameAsync(new MemoryStream([.. Prefix(2), 9, 8, .. Prefix(1)]), default));
    }

    private static byte[] Prefix(uint length)
    {
        var prefix = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(prefix, length);
        return prefix;
    }

    private static async Task<byte[]> ReadDigestAt(IUsigCounterStore store, ulong counter) => (await store.ReadAsync(default))!.DigestAt(counter).ToArray();
}
