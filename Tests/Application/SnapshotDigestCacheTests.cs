using System.Security.Cryptography;
using MinBft.Application;

namespace MinBft.Tests.Application;

/// <summary>
/// Both sample services encode their state once for a digest followed by a snapshot of the same
/// state (what a checkpoint asks for), and never hand one array to two callers.
/// </summary>
public sealed class SnapshotDigestCacheTests
{
    /// <summary>A service, how many snapshots it encoded, a write and a read that changes nothing.</summary>
    private sealed record Service(IStateMachine Machine, Func<long> Encodings, Func<int, byte[]> Write, byte[] Read);

    public static TheoryData<string> Services => new() { "key-value", "ledger" };

    private static Service Make(string kind)
    {
        if (kind == "key-value")
        {
            var kv = new KeyValueStateMachine();
            return new Service(kv, () => kv.SnapshotEncodings,
                i => KeyValueOperation.EncodePut("k" + i, [(byte)i]), KeyValueOperation.EncodeGet("k1"));
        }
        var ledger = new LedgerStateMachine();
        return new Service(ledger, () => ledger.SnapshotEncodings,
            i => LedgerOperation.EncodeOpen("a" + i, i), LedgerOperation.EncodeBalance("a1"));
    }

    private static Service Populated(string kind)
    {
        var s = Make(kind);
        for (var i = 1; i <= 5; i++) s.Machine.Apply(s.Write(i));
        return s;
    }

    [Theory, MemberData(nameof(Services))]
    public void A_digest_then_a_snapshot_of_the_same_state_encode_it_once(string kind)
    {
        var s = Populated(kind);
        var digest = s.Machine.Digest();
        var snapshot = s.Machine.Snapshot();
        Assert.Equal(1, s.Encodings());
        Assert.Equal(SHA256.HashData(snapshot), digest);

        // A read changes nothing, so the digest stays known.
        s.Machine.Apply(s.Read);
        Assert.Equal(digest, s.Machine.Digest());
        Assert.Equal(1, s.Encodings());
    }

    [Theory, MemberData(nameof(Services))]
    public void A_kept_snapshot_is_handed_out_once(string kind)
    {
        var s = Populated(kind);
        var digest = s.Machine.Digest();
        var first = s.Machine.Snapshot();
        var second = s.Machine.Snapshot();
        Assert.NotSame(first, second);
        Assert.Equal(first, second);
        Assert.Equal(2, s.Encodings());

        // A caller that scribbles on its copy changes neither the state nor the next snapshot.
        Array.Fill(first, (byte)0xEE);
        Assert.Equal(second, s.Machine.Snapshot());
        Assert.Equal(digest, s.Machine.Digest());
    }

    [Theory, MemberData(nameof(Services))]
    public void A_write_between_the_digest_and_the_snapshot_is_in_the_snapshot(string kind)
    {
        var s = Populated(kind);
        var before = s.Machine.Digest();
        s.Machine.Apply(s.Write(6));
        var snapshot = s.Machine.Snapshot();

        var restored = Make(kind).Machine;
        Assert.True(restored.TryRestore(snapshot));
        Assert.NotEqual(before, restored.Digest());
        Assert.Equal(s.Machine.Digest(), restored.Digest());
    }

    [Theory, MemberData(nameof(Services))]
    public void A_restored_state_knows_its_digest_without_encoding(string kind)
    {
        var source = Populated(kind);
        var snapshot = source.Machine.Snapshot();
        var target = Make(kind);
        Assert.True(target.Machine.TryRestore(snapshot));
        Assert.Equal(SHA256.HashData(snapshot), target.Machine.Digest());
        Assert.Equal(0, target.Encodings());
        Assert.Equal(snapshot, target.Machine.Snapshot());
    }
}
