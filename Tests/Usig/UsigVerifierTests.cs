using MinBft.Encoding;
using MinBft.Messages;
using MinBft.Tests.Crypto;
using MinBft.Usig;
using Xunit.Abstractions;
using static MinBft.Tests.Usig.UsigTestKit;

namespace MinBft.Tests.Usig;

/// <summary>VerifyUI rejects everything but a UI that replica r's current USIG issued for this digest.</summary>
public sealed class UsigVerifierTests(ITestOutputHelper output)
{
    private const int ReplicaId = 1;
    private const ulong Epoch = 4;

    private sealed record Fixture(Setup Setup, UsigVerifier Verifier, UniqueIdentifier Ui, byte[] Digest, Random Random);

    private async Task<Fixture> Issue(string scheme)
    {
        var random = TestRandom.Create(output);
        var setup = Scheme(scheme, random, Epoch);
        var usig = new UsigCore(ReplicaId, Epoch, setup.Certifier, new InMemoryUsigCounterStore(UsigState.Fresh(Epoch)));
        await usig.Create(random.Bytes(32));
        var digest = random.Bytes(32);
        var ui = await usig.Create(digest);
        return new Fixture(setup, VerifierFor(ReplicaId, setup.Key), ui, digest, random);
    }

    [Theory]
    [MemberData(nameof(Schemes), MemberType = typeof(UsigTestKit))]
    public async Task IssuedUi_Verifies(string scheme)
    {
        var f = await Issue(scheme);
        Assert.Equal(2UL, f.Ui.Counter);
        Assert.Equal(f.Setup.Certifier.Scheme == HmacScheme ? 32 : 64, f.Ui.Certificate.Length);
        Assert.True(f.Ui.Certificate.Length <= MessageLimits.MaxCertificateLength);
        Assert.True(f.Verifier.Verify(ReplicaId, f.Ui, f.Digest));
    }

    [Theory]
    [MemberData(nameof(Schemes), MemberType = typeof(UsigTestKit))]
    public async Task WrongKey_IsRejected(string scheme)
    {
        var f = await Issue(scheme);
        var other = Scheme(scheme, f.Random, Epoch);
        Assert.False(VerifierFor(ReplicaId, other.Key).Verify(ReplicaId, f.Ui, f.Digest));
    }

    [Theory]
    [MemberData(nameof(Schemes), MemberType = typeof(UsigTestKit))]
    public async Task WrongEpoch_IsRejected_EitherInTheUiOrInTheVerifiersKnowledge(string scheme)
    {
        var f = await Issue(scheme);
        Assert.False(f.Verifier.Verify(ReplicaId, f.Ui with { Epoch = Epoch + 1 }, f.Digest));
        Assert.False(f.Verifier.Verify(ReplicaId, f.Ui with { Epoch = Epoch - 1 }, f.Digest));
        // The replica's USIG moved to a new epoch: UIs of its old identity are no longer accepted.
        Assert.False(VerifierFor(ReplicaId, f.Setup.KeyForEpoch(Epoch + 1)).Verify(ReplicaId, f.Ui, f.Digest));
        Assert.False(VerifierFor(ReplicaId, f.Setup.KeyForEpoch(Epoch + 1)).Verify(ReplicaId, f.Ui with { Epoch = Epoch + 1 }, f.Digest));
    }

    [Theory]
    [MemberData(nameof(Schemes), MemberType = typeof(UsigTestKit))]
    public async Task WrongDigest_IsRejected(string scheme)
    {
        var f = await Issue(scheme);
        for (var i = 0; i < 32; i++)
        {
            var digest = (byte[])f.Digest.Clone();
            digest[i] ^= (byte)(1 << f.Random.Next(8));
            Assert.False(f.Verifier.Verify(ReplicaId, f.Ui, digest));
        }
        Assert.False(f.Verifier.Verify(ReplicaId, f.Ui, f.Digest.AsSpan(0, 31)));
        Assert.False(f.Verifier.Verify(ReplicaId, f.Ui, [.. f.Digest, 0]));
        Assert.False(f.Verifier.Verify(ReplicaId, f.Ui, []));
    }

    [Theory]
    [MemberData(nameof(Schemes), MemberType = typeof(UsigTestKit))]
    public async Task AlteredCounter_IsRejected_AndCounterZeroIsRejectedEvenWhenCertified(string scheme)
    {
        var f = await Issue(scheme);
        Assert.False(f.Verifier.Verify(ReplicaId, f.Ui with { Counter = f.Ui.Counter + 1 }, f.Digest));
        Assert.False(f.Verifier.Verify(ReplicaId, f.Ui with { Counter = f.Ui.Counter - 1 }, f.Digest));
        Assert.False(f.Verifier.Verify(ReplicaId, f.Ui with { Counter = 0 }, f.Digest));
        // Counter 0 certified by the genuine key (no USIG issues it): still invalid.
        var zero = new UniqueIdentifier(Epoch, 0, f.Setup.Certifier.Certify(UsigCertificateInput.Encode(ReplicaId, Epoch, 0, f.Digest)));
        Assert.False(f.Verifier.Verify(ReplicaId, zero, f.Digest));
        Assert.False(f.Verifier.Verify(ReplicaId, UniqueIdentifier.None, f.Digest));
    }

    [Theory]
    [MemberData(nameof(Schemes), MemberType = typeof(UsigTestKit))]
    public async Task EveryTamperedCertificateBit_IsRejected(string scheme)
    {
        var f = await Issue(scheme);
        for (var bit = 0; bit < f.Ui.Certificate.Length * 8; bit++)
        {
            var certificate = (byte[])f.Ui.Certificate.Clone();
            certificate[bit / 8] ^= (byte)(1 << (bit % 8));
            Assert.False(f.Verifier.Verify(ReplicaId, f.Ui with { Certificate = certificate }, f.Digest));
        }
    }

    [Theory]
    [MemberData(nameof(Schemes), MemberType = typeof(UsigTestKit))]
    public async Task CertificateOfWrongLength_IsRejected_WithoutThrowing(string scheme)
    {
        var f = await Issue(scheme);
        var c = f.Ui.Certificate;
        byte[][] wrong = [[], c[..^1], [.. c, 0], new byte[MessageLimits.MaxCertificateLength + 1], new byte[1 << 16]];
        foreach (var certificate in wrong)
            Assert.False(f.Verifier.Verify(ReplicaId, f.Ui with { Certificate = certificate }, f.Digest));
        Assert.False(f.Verifier.Verify(ReplicaId, f.Ui with { Certificate = null! }, f.Digest));
        Assert.False(f.Verifier.Verify(ReplicaId, null!, f.Digest));
    }

    [Theory]
    [MemberData(nameof(Schemes), MemberType = typeof(UsigTestKit))]
    public async Task UiOfOneReplica_IsRejectedAsAnotherReplicas_EvenWithTheSameKey(string scheme)
    {
        // HMAC deployments may share one secret among all USIGs: only the replica id in the
        // certified bytes stops replica 1's UI from being presented as replica 2's.
        var f = await Issue(scheme);
        var sameKeyEverywhere = new UsigVerifier(new Dictionary<int, UsigVerificationKey>
        {
            [0] = f.Setup.Key, [ReplicaId] = f.Setup.Key, [2] = f.Setup.Key,
        });
        Assert.True(sameKeyEverywhere.Verify(ReplicaId, f.Ui, f.Digest));
        Assert.False(sameKeyEverywhere.Verify(0, f.Ui, f.Digest));
        Assert.False(sameKeyEverywhere.Verify(2, f.Ui, f.Digest));
        Assert.False(f.Verifier.Verify(7, f.Ui, f.Digest));   // unknown replica
        Assert.False(f.Verifier.Verify(-1, f.Ui, f.Digest));
    }

    [Fact]
    public async Task CertificateOfOneScheme_IsRejectedByTheOther()
    {
        var ed = await Issue(Ed25519Scheme);
        var hmac = await Issue(HmacScheme);
        Assert.False(hmac.Verifier.Verify(ReplicaId, ed.Ui, ed.Digest));
        Assert.False(ed.Verifier.Verify(ReplicaId, hmac.Ui, hmac.Digest));
        // Same length as an HMAC tag but from the Ed25519 certificate: still rejected.
        Assert.False(hmac.Verifier.Verify(ReplicaId, ed.Ui with { Certificate = ed.Ui.Certificate[..32] }, ed.Digest));
    }

    [Theory]
    [MemberData(nameof(Schemes), MemberType = typeof(UsigTestKit))]
    public async Task RandomGarbageUis_AreRejected_NeverThrow(string scheme)
    {
        var f = await Issue(scheme);
        for (var i = 0; i < 300; i++)
        {
            var ui = new UniqueIdentifier(
                f.Random.Next(3) == 0 ? Epoch : (ulong)f.Random.NextInt64(),
                (ulong)f.Random.NextInt64(0, 5),
                f.Random.Bytes(f.Random.Next(3) == 0 ? f.Ui.Certificate.Length : f.Random.Next(0, 100)));
            Assert.False(f.Verifier.Verify(f.Random.Next(-1, 3), ui, f.Random.Bytes(f.Random.Next(3) == 0 ? 32 : f.Random.Next(0, 40))));
        }
    }

    [Fact]
    public void CertificateInput_IsDomainSeparated_AndBindsEveryField()
    {
        var digest = Enumerable.Range(0, 32).Select(i => (byte)i).ToArray();
        var input = UsigCertificateInput.Encode(1, 2, 3, digest);
        Assert.True(input.AsSpan().StartsWith([.. MessageTags.Domain, (byte)MessageTag.UsigCertificate]));
        var other = (byte[])digest.Clone();
        other[0] = 99;
        byte[][] variants =
        [
            UsigCertificateInput.Encode(2, 2, 3, digest),
            UsigCertificateInput.Encode(1, 3, 3, digest),
            UsigCertificateInput.Encode(1, 2, 4, digest),
            UsigCertificateInput.Encode(1, 2, 3, other),
        ];
        Assert.All(variants, v => Assert.False(v.AsSpan().SequenceEqual(input)));
        Assert.Throws<ArgumentException>(() => UsigCertificateInput.Encode(1, 2, 3, new byte[31]));
    }

    [Fact]
    public void ShortHmacKey_IsRefused()
    {
        Assert.Throws<ArgumentException>(() => new HmacUsigCertifier(new byte[31]));
        Assert.Throws<ArgumentException>(() => UsigVerificationKey.Ed25519(1, new byte[31]));
    }
}
