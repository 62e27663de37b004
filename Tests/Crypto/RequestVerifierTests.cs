using MinBft.Crypto;
using MinBft.Encoding;
using MinBft.Messages;
using Xunit.Abstractions;

namespace MinBft.Tests.Crypto;

public sealed class RequestVerifierTests(ITestOutputHelper output)
{
    private readonly RequestVerifier _verifier = new();

    private static ClientSigner NewClient(Random random) => new(Ed25519KeyPair.Generate(random.SecureRandom()));

    [Fact]
    public void ClientId_IsLowercaseHexOf64Chars_AndDeterministicPerKey()
    {
        var random = TestRandom.Create(output);
        var keys = Ed25519KeyPair.Generate(random.SecureRandom());
        var id = ClientIdentity.FromPublicKey(keys.PublicKey);
        Assert.Equal(MessageLimits.ClientIdLength, id.Length);
        Assert.Matches("^[0-9a-f]{64}$", id);
        Assert.Equal(id, ClientIdentity.FromPublicKey(keys.PublicKey));
        Assert.Equal(id, new ClientSigner(keys).ClientId);
        Assert.True(ClientIdentity.Matches(id, keys.PublicKey));
        Assert.False(ClientIdentity.Matches(id.ToUpperInvariant(), keys.PublicKey));
        Assert.False(ClientIdentity.Matches(null, keys.PublicKey));
        Assert.NotEqual(id, ClientIdentity.FromPublicKey(Ed25519KeyPair.Generate(random.SecureRandom()).PublicKey));
    }

    [Fact]
    public void ClientId_IsDomainSeparated_NotThePlainSha256OfTheKey()
    {
        var keys = Ed25519KeyPair.Generate(new Random(3).SecureRandom());
        var plain = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(keys.PublicKey));
        Assert.NotEqual(plain, ClientIdentity.FromPublicKey(keys.PublicKey));
    }

    [Fact]
    public void SignedRequest_Verifies_AndCarriesTheClientsIdentity()
    {
        var random = TestRandom.Create(output);
        var client = NewClient(random);
        var operation = random.Bytes(100);
        var request = client.CreateRequest(42, operation);
        Assert.Equal(client.ClientId, request.ClientId);
        Assert.Equal(client.PublicKey, request.ClientPublicKey);
        Assert.Equal(42UL, request.Seq);
        Assert.Equal(operation, request.Operation);
        Assert.True(_verifier.Verify(request));
        Assert.Null(RequestVerifier.Explain(request));
        Assert.True(_verifier.Verify(client.CreateRequest(0, [])));
    }

    [Fact]
    public void CreateRequest_CopiesTheOperation_SoLaterMutationCannotAlterASignedRequest()
    {
        var client = NewClient(new Random(5));
        var operation = new byte[] { 1, 2, 3 };
        var request = client.CreateRequest(1, operation);
        operation[0] = 9;
        Assert.Equal(1, request.Operation[0]);
        Assert.True(_verifier.Verify(request));
    }

    [Fact]
    public void TamperedSeqIncarnationOperationOrSignature_IsRejected()
    {
        var random = TestRandom.Create(output);
        var request = NewClient(random).CreateRequest(7, random.Bytes(20));

        Assert.False(_verifier.Verify(request with { Seq = 8 }));
        // The incarnation is signed: a relay cannot lift an old request above the expiry horizon.
        Assert.False(_verifier.Verify(request with { Incarnation = 1 }));
        var incarnated = NewClient(random).CreateRequest(7, random.Bytes(20), incarnation: 42);
        Assert.True(_verifier.Verify(incarnated));
        Assert.False(_verifier.Verify(incarnated with { Incarnation = 43 }));

        var op = (byte[])request.Operation.Clone();
        op[random.Next(op.Length)] ^= 1;
        Assert.False(_verifier.Verify(request with { Operation = op }));
        Assert.False(_verifier.Verify(request with { Operation = [.. request.Operation, 0] }));

        var sig = (byte[])request.Signature.Clone();
        sig[random.Next(sig.Length)] ^= 0x80;
        Assert.False(_verifier.Verify(request with { Signature = sig }));
    }

    [Fact]
    public void RequestUnderAnotherClientsId_IsRejected()
    {
        // A Byzantine client signs correctly with its own key but claims the victim's id.
        var random = TestRandom.Create(output);
        var victim = NewClient(random);
        var attackerKeys = Ed25519KeyPair.Generate(random.SecureRandom());
        var op = random.Bytes(8);
        var signature = attackerKeys.Sign(MessageEncoding.Request(victim.ClientId, attackerKeys.PublicKey, 1, op));
        var forged = new Request(victim.ClientId, attackerKeys.PublicKey, 1, op, signature);
        Assert.False(_verifier.Verify(forged));
        Assert.Equal("client id is not the hash of the public key", RequestVerifier.Explain(forged));
    }

    [Fact]
    public void VictimsKeyWithAttackersSignature_IsRejected()
    {
        var random = TestRandom.Create(output);
        var victim = NewClient(random);
        var attacker = NewClient(random);
        var genuine = attacker.CreateRequest(1, [1]);
        Assert.False(_verifier.Verify(genuine with { ClientId = victim.ClientId, ClientPublicKey = victim.PublicKey }));
    }

    [Fact]
    public void MalformedRequests_ReturnFalse_NeverThrow()
    {
        var random = TestRandom.Create(output);
        var good = NewClient(random).CreateRequest(1, [1, 2]);
        Request?[] bad =
        [
            null,
            good with { ClientId = null! },
            good with { ClientId = "" },
            good with { ClientId = good.ClientId[..63] },
            good with { ClientId = good.ClientId + "0" },
            good with { ClientId = good.ClientId.ToUpperInvariant() },
            good with { ClientPublicKey = null! },
            good with { ClientPublicKey = [] },
            good with { ClientPublicKey = good.ClientPublicKey[..31] },
            good with { ClientPublicKey = Enumerable.Repeat((byte)0xff, 32).ToArray() },
            good with { Operation = null! },
            good with { Operation = new byte[MessageLimits.MaxOperationLength + 1] },
            good with { Signature = null! },
            good with { Signature = [] },
            good with { Signature = good.Signature[..63] },
            good with { Signature = [.. good.Signature, 0] },
        ];
        foreach (var request in bad)
        {
            Assert.False(_verifier.Verify(request!));
            Assert.NotNull(RequestVerifier.Explain(request));
        }
        for (var i = 0; i < 100; i++)
        {
            var garbage = new Request(
                Convert.ToHexStringLower(random.Bytes(32)), random.Bytes(32), (ulong)random.NextInt64(),
                random.Bytes(random.Next(0, 64)), random.Bytes(64));
            Assert.False(_verifier.Verify(garbage));
        }
    }

    [Fact]
    public void OversizedOperation_IsRefusedByTheSigner()
    {
        var client = NewClient(new Random(9));
        Assert.Throws<ArgumentException>(() => client.CreateRequest(1, new byte[MessageLimits.MaxOperationLength + 1]));
        Assert.True(_verifier.Verify(client.CreateRequest(1, new byte[MessageLimits.MaxOperationLength])));
    }
}
