using MinBft.Crypto;
using Org.BouncyCastle.Security;
using Xunit.Abstractions;

namespace MinBft.Tests.Crypto;

public sealed class Ed25519Tests(ITestOutputHelper output)
{
    // RFC 8032 section 7.1, TEST 2: pins the exact algorithm (pure Ed25519), not just self-consistency.
    private static readonly byte[] RfcSecret = Convert.FromHexString("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb");
    private static readonly byte[] RfcPublic = Convert.FromHexString("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c");
    private static readonly byte[] RfcMessage = [0x72];
    private static readonly byte[] RfcSignature = Convert.FromHexString(
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00");

    [Fact]
    public void KeyPairFromRfc8032Secret_DerivesTheRfcPublicKeyAndSignature()
    {
        var keys = Ed25519KeyPair.FromPrivateKey(RfcSecret);
        Assert.Equal(RfcPublic, keys.PublicKey);
        Assert.Equal(RfcSecret, keys.PrivateKey);
        Assert.Equal(RfcSignature, keys.Sign(RfcMessage));
        Assert.True(Ed25519.Verify(RfcPublic, RfcMessage, RfcSignature));
    }

    [Fact]
    public void GeneratedKeys_HaveRfcLengths_AndSignaturesVerify()
    {
        var keys = Ed25519KeyPair.Generate(new SecureRandom());
        Assert.Equal(32, keys.PrivateKey.Length);
        Assert.Equal(32, keys.PublicKey.Length);
        var message = "hello"u8.ToArray();
        var signature = keys.Sign(message);
        Assert.Equal(64, signature.Length);
        Assert.True(Ed25519.Verify(keys.PublicKey, message, signature));
    }

    [Fact]
    public void SameSeededRandom_GeneratesSameKeys()
    {
        var a = Ed25519KeyPair.Generate(new Random(7).SecureRandom());
        var b = Ed25519KeyPair.Generate(new Random(7).SecureRandom());
        Assert.Equal(a.PublicKey, b.PublicKey);
    }

    [Fact]
    public void AnyTamperedMessageBitOrSignatureBit_FailsVerification()
    {
        var random = TestRandom.Create(output);
        var keys = Ed25519KeyPair.Generate(random.SecureRandom());
        for (var round = 0; round < 20; round++)
        {
            var message = random.Bytes(random.Next(1, 200));
            var signature = keys.Sign(message);
            Assert.True(Ed25519.Verify(keys.PublicKey, message, signature));

            var badMessage = (byte[])message.Clone();
            badMessage[random.Next(badMessage.Length)] ^= (byte)(1 << random.Next(8));
            Assert.False(Ed25519.Verify(keys.PublicKey, badMessage, signature));

            var badSignature = (byte[])signature.Clone();
            badSignature[random.Next(badSignature.Length)] ^= (byte)(1 << random.Next(8));
            Assert.False(Ed25519.Verify(keys.PublicKey, message, badSignature));
        }
    }

    [Fact]
    public void SignatureUnderAnotherKey_FailsVerification()
    {
        var random = TestRandom.Create(output);
        var signer = Ed25519KeyPair.Generate(random.SecureRandom());
        var other = Ed25519KeyPair.Generate(random.SecureRandom());
        var message = random.Bytes(50);
        Assert.False(Ed25519.Verify(other.PublicKey, message, signer.Sign(message)));
    }

    [Fact]
    public void MalformedLengthsAndGarbage_ReturnFalse_NeverThrow()
    {
        var random = TestRandom.Create(output);
        var keys = Ed25519KeyPair.Generate(random.SecureRandom());
        var message = random.Bytes(10);
        var signature = keys.Sign(message);

        Assert.False(Ed25519.Verify([], message, signature));
        Assert.False(Ed25519.Verify(keys.PublicKey.AsSpan(0, 31), message, signature));
        Assert.False(Ed25519.Verify([.. keys.PublicKey, 0], message, signature));
        Assert.False(Ed25519.Verify(keys.PublicKey, message, []));
        Assert.False(Ed25519.Verify(keys.PublicKey, message, signature.AsSpan(0, 63)));
        Assert.False(Ed25519.Verify(keys.PublicKey, message, [.. signature, 0]));
        // All-ones is not a curve point encoding (y >= p).
        Assert.False(Ed25519.Verify(Enumerable.Repeat((byte)0xff, 32).ToArray(), message, signature));
        Assert.False(Ed25519.Verify(new byte[32], message, new byte[64]));
        for (var i = 0; i < 200; i++)
        {
            Assert.False(Ed25519.Verify(random.Bytes(random.Next(0, 40)), random.Bytes(random.Next(0, 40)), random.Bytes(random.Next(0, 80))));
            Assert.False(Ed25519.Verify(keys.PublicKey, message, random.Bytes(64)));
        }
    }

    [Fact]
    public void NonCanonicalSignature_SPlusGroupOrder_IsRejected()
    {
        // Malleability: S and S + L verify the same equation; RFC 8032 requires rejecting S >= L,
        // otherwise one request would have two valid signatures (and two digests).
        var keys = Ed25519KeyPair.FromPrivateKey(RfcSecret);
        var signature = keys.Sign(RfcMessage);
        var s = new System.Numerics.BigInteger(signature.AsSpan(32), isUnsigned: true, isBigEndian: false);
        var l = System.Numerics.BigInteger.Pow(2, 252) + System.Numerics.BigInteger.Parse("27742317777372353535851937790883648493");
        var sPlusL = (s + l).ToByteArray(isUnsigned: true, isBigEndian: false);
        Assert.True(sPlusL.Length <= 32);
        var malleated = (byte[])signature.Clone();
        Array.Clear(malleated, 32, 32);
        sPlusL.CopyTo(malleated, 32);
        Assert.False(Ed25519.Verify(keys.PublicKey, RfcMessage, malleated));
    }

    [Fact]
    public void FromPrivateKeyOfWrongLength_Throws()
    {
        Assert.Throws<ArgumentException>(() => Ed25519KeyPair.FromPrivateKey(new byte[31]));
        Assert.Throws<ArgumentException>(() => Ed25519KeyPair.FromPrivateKey(new byte[33]));
    }

    [Fact]
    public void ConcurrentSigningWithOneKeyPair_GivesValidDeterministicSignatures()
    {
        var keys = Ed25519KeyPair.Generate(new Random(1).SecureRandom());
        var messages = Enumerable.Range(0, 64).Select(i => BitConverter.GetBytes(i)).ToArray();
        var expected = messages.Select(m => keys.Sign(m)).ToArray();
        var actual = new byte[messages.Length][];
        Parallel.For(0, messages.Length, i => actual[i] = keys.Sign(messages[i]));
        Assert.Equal(expected, actual);
    }

    [Fact]
    public void PublicKeyCreate_RejectsInvalidKeys_TryCreateReturnsFalse()
    {
        Assert.Throws<ArgumentException>(() => Ed25519PublicKey.Create(new byte[5]));
        Assert.False(Ed25519PublicKey.TryCreate(Enumerable.Repeat((byte)0xff, 32).ToArray(), out _));
        Assert.True(Ed25519PublicKey.TryCreate(RfcPublic, out var key));
        Assert.Equal(RfcPublic, key.Encoded);
        Assert.True(key.Verify(RfcMessage, RfcSignature));
    }
}
