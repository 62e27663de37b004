using Microsoft.Extensions.DependencyInjection;
using MinBft.Application;
using MinBft.Crypto;
using MinBft.Encoding;
using MinBft.Messages;
using MinBft.ReplicaHost;
using MinBft.Usig;
using Org.BouncyCastle.Security;
using Orleans.Serialization;

namespace MinBft.Tests.Hosting;

/// <summary>
/// The silo's encoding of the messages a USIG keeps (USIG-KEPT-MESSAGES-DESIGN.md): a message comes
/// back exactly, certified digest included, and a one-request batch fits what the USIG keeps, which
/// is what takes one client's journal write off the path.
/// </summary>
public sealed class KeptMessageCodecTests
{
    private static readonly ServiceProvider Services = new ServiceCollection().AddSerializer().BuildServiceProvider();
    private static readonly SerializerKeptMessageCodec Codec = new(Services.GetRequiredService<Serializer>());

    private static Request NewRequest(ulong seq) =>
        new ClientSigner(Ed25519KeyPair.Generate(new SecureRandom())).CreateRequest(seq, KeyValueOperation.EncodePut("key", new byte[32]));

    [Fact]
    public void A_prepare_and_a_commit_decode_to_messages_with_the_same_certified_digest()
    {
        var prepare = new Prepare(3, 0, 17, [NewRequest(1), NewRequest(2)], UniqueIdentifier.None);
        var commit = new Commit(3, 1, prepare with { PrepareUi = new UniqueIdentifier(1, 5, new byte[64]) }, UniqueIdentifier.None);
        foreach (CertifiedMessage message in new CertifiedMessage[] { prepare, commit })
        {
            var decoded = Codec.Decode(Codec.Encode(message));
            Assert.Equal(message.GetType(), decoded.GetType());
            Assert.Equal(MessageEncoding.CertifiedDigest(message), MessageEncoding.CertifiedDigest(decoded));
            Assert.True(decoded.Ui.IsNone);
        }
    }

    [Fact]
    public void A_one_request_prepare_and_its_commit_fit_what_the_usig_keeps()
    {
        var prepare = new Prepare(0, 0, 1, [NewRequest(1)], UniqueIdentifier.None);
        var commit = new Commit(0, 1, prepare with { PrepareUi = new UniqueIdentifier(1, 1, new byte[64]) }, UniqueIdentifier.None);
        Assert.InRange(Codec.Encode(prepare).Length, 1, UsigCore.MaxKeptBytes);
        Assert.InRange(Codec.Encode(commit).Length, 1, UsigCore.MaxKeptBytes);
    }

    [Fact]
    public void Bytes_that_are_not_a_message_are_refused()
    {
        Assert.ThrowsAny<Exception>(() => Codec.Decode([1, 2, 3, 4, 5]));
    }
}
