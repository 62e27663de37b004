using MinBft.Crypto;
using Xunit.Abstractions;

namespace MinBft.Tests.Crypto;

public sealed class ReplicaKeyRingTests(ITestOutputHelper output)
{
    [Fact]
    public void SignatureByReplica_VerifiesForThatReplicaOnly()
    {
        var random = TestRandom.Create(output);
        var keys = Enumerable.Range(0, 3).Select(_ => Ed25519KeyPair.Generate(random.SecureRandom())).ToArray();
        var ring = new ReplicaKeyRing(keys.Select(k => k.PublicKey).ToArray());
        var message = random.Bytes(40);
        var signature = new Ed25519ReplicaSigner(keys[1]).Sign(message);

        Assert.Equal(3, ring.Count);
        Assert.True(ring.Verify(1, message, signature));
        Assert.False(ring.Verify(0, message, signature));
        Assert.False(ring.Verify(2, message, signature));
    }

    [Fact]
    public void UnknownReplicaOrMalformedSignature_ReturnsFalse_NeverThrows()
    {
        var random = TestRandom.Create(output);
        var key = Ed25519KeyPair.Generate(random.SecureRandom());
        var ring = new ReplicaKeyRing(new Dictionary<int, byte[]> { [5] = key.PublicKey });
        var message = random.Bytes(10);
        var signature = key.Sign(message);

        Assert.True(ring.Contains(5));
        Assert.True(ring.Verify(5, message, signature));
        Assert.False(ring.Verify(0, message, signature));
        Assert.False(ring.Verify(-1, message, signature));
        Assert.False(ring.Verify(int.MaxValue, message, signature));
        Assert.False(ring.Verify(5, message, []));
        Assert.False(ring.Verify(5, message, signature.AsSpan(1)));
        Assert.False(ring.Verify(5, [.. message, 1], signature));
    }

    [Fact]
    public void InvalidConfiguredKey_ThrowsAtConstruction()
    {
        Assert.Throws<ArgumentException>(() => new ReplicaKeyRing([new byte[31]]));
        Assert.Throws<ArgumentException>(() => new ReplicaKeyRing(new Dictionary<int, byte[]> { [0] = null! }));
    }

    [Fact]
    public void ReplicaSigner_ExposesThePublicKeyPeersVerifyWith()
    {
        var key = Ed25519KeyPair.Generate(new Random(2).SecureRandom());
        var signer = new Ed25519ReplicaSigner(key);
        Assert.Equal(key.PublicKey, signer.PublicKey);
        Assert.True(Ed25519.Verify(signer.PublicKey, [1, 2, 3], signer.Sign([1, 2, 3])));
    }
}
