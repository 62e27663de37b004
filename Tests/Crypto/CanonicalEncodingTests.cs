using System.Security.Cryptography;
using MinBft.Crypto;
using MinBft.Encoding;
using MinBft.Messages;

namespace MinBft.Tests.Crypto;

/// <summary>
/// The canonical bytes that UIs and signatures cover. They must never change by accident: a
/// replica of another build, a stored journal and a stored certificate all rely on them. The
/// golden digests below were computed before the encoder moved to pooled, pre-sized buffers.
/// </summary>
public sealed class CanonicalEncodingTests
{
    private static byte[] Bytes(int length, byte seed) => Enumerable.Range(0, length).Select(i => (byte)(seed + i * 7)).ToArray();

    private static Request SampleRequest(string clientId, int operationLength, byte seed) =>
        new(clientId, Bytes(32, seed), 7UL + seed, Bytes(operationLength, (byte)(seed + 1)), Bytes(64, (byte)(seed + 2)),
            Authenticator: Bytes(16, 3), ReplyTo: "proxy", Incarnation: 5);

    private static UniqueIdentifier SampleUi(ulong counter) => new(1, counter, Bytes(64, (byte)counter));

    // A non-ASCII client id and a view-start certificate take the encoder past its size estimate.
    private static Prepare SamplePrepare() => new(3, 0, 42,
        [SampleRequest(new string('a', 64), 10, 1), SampleRequest("ключ-клиента-ü", 3000, 9)],
        SampleUi(11),
        new CheckpointCertificate(40, Bytes(32, 4), [new Checkpoint(1, 3, 40, Bytes(32, 4), SampleUi(9), IsViewStart: true)]));

    private static string Hex(byte[] bytes) => Convert.ToHexString(bytes);

    [Fact]
    public void Digests_of_requests_prepares_commits_reply_leaves_and_request_macs_are_unchanged()
    {
        var prepare = SamplePrepare();
        var commit = new Commit(3, 2, prepare, SampleUi(12));
        var reply = new Reply(3, 1, new string('b', 64), 8, Bytes(32, 5), Bytes(100, 6), new ReplyProof(0, 1, [], []));
        Assert.Equal("40922CA54452D95B6EDAC4CCF574FB4D45491982C5FD7746318F77EFECCC5DAE", Hex(MessageEncoding.RequestDigest(prepare.Batch[1])));
        Assert.Equal("4C6AC02A5379AF1A2F427BE76A8E5655ADBF525B0779D685BE4F94CC633563D4", Hex(MessageEncoding.CertifiedDigest(prepare)));
        Assert.Equal("E41E0E4C16EE4CADE444DD5558580CB4C6C56ED2C10EB463F9973D68248C7E53", Hex(MessageEncoding.CertifiedDigest(commit)));
        Assert.Equal("525F5E86410D97574D3A048ECC760D7230445671DB1370BE88ED7484147B01C1", Hex(ReplyTree.Leaf(reply)));
        var mac = new byte[MessageLimits.RequestMacLength];
        SessionKeys.Mac(Bytes(32, 8), 2, MessageEncoding.RequestDigest(prepare.Batch[0]), mac);
        Assert.Equal("0239613BEDFA31A86B7041E535BBD284", Hex(mac));
        // The digest is the hash of the bytes the USIG certifies, whichever path computed it.
        Assert.Equal(SHA256.HashData(MessageEncoding.Certified(prepare)), MessageEncoding.CertifiedDigest(prepare));
        Assert.Equal(SHA256.HashData(MessageEncoding.Certified(commit)), MessageEncoding.CertifiedDigest(commit));
        Assert.Equal(SHA256.HashData(MessageEncoding.ReplyLeaf(reply)), ReplyTree.Leaf(reply));
    }

    [Fact]
    public void A_pooled_writer_that_outgrows_its_buffer_writes_what_a_plain_writer_writes_and_is_unusable_once_returned()
    {
        var payload = Bytes(5000, 1);
        var plain = new CanonicalWriter(16).Tag(MessageTag.Prepare).U64(9).Text("ключ").Bytes(payload).ToArray();
        var pooled = CanonicalWriter.Rent(16);
        pooled.Tag(MessageTag.Prepare).U64(9).Text("ключ").Bytes(payload);
        Assert.Equal(plain, pooled.ToArray());
        Assert.Equal(SHA256.HashData(plain), pooled.Sha256());
        pooled.Dispose();
        Assert.Equal(0, pooled.Length);
        Assert.Throws<ObjectDisposedException>(() => pooled.Bytes(payload));
    }
}
