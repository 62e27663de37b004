using MinBft.Crypto;
using MinBft.Encoding;
using MinBft.Messages;
using MinBft.Tests.Crypto;
using MinBft.Usig;
using Xunit.Abstractions;
using static MinBft.Tests.Usig.UsigTestKit;

namespace MinBft.Tests.Usig;

/// <summary>A replica's USIG identities after rotations (USIG-ROTATION-DESIGN.md): which epoch is
/// current, which may lead a view, whose VIEW-CHANGE vouches, and that retired keys verify history.</summary>
public sealed class UsigEpochsTests(ITestOutputHelper output)
{
    private static readonly UsigEpochs Rotated = new(new Dictionary<int, IReadOnlyList<UsigEpoch>>
    {
        [0] = [new UsigEpoch(1, 0)],
        [1] = [new UsigEpoch(1, 0), new UsigEpoch(2, 5, 40), new UsigEpoch(3, 9, 70)],
    });

    [Fact]
    public void The_last_identity_is_current_and_every_listed_one_is_known()
    {
        Assert.Equal(1UL, Rotated.Current(0));
        Assert.Equal(3UL, Rotated.Current(1));
        Assert.True(Rotated.IsKnown(1, 1));
        Assert.True(Rotated.IsKnown(1, 2));
        Assert.False(Rotated.IsKnown(1, 4));
        Assert.False(Rotated.IsKnown(0, 2));
        Assert.False(Rotated.IsKnown(7, 1));
        Assert.Equal(0UL, Rotated.Current(7));
        Assert.True(Rotated.AnyRotated);
    }

    [Theory]
    [InlineData(0, 1UL)]
    [InlineData(4, 1UL)]
    [InlineData(5, 2UL)]
    [InlineData(8, 2UL)]
    [InlineData(9, 3UL)]
    [InlineData(1000, 3UL)]
    public void One_identity_leads_each_view(long view, ulong epoch) => Assert.Equal(epoch, Rotated.LeaderEpoch(1, view));

    [Fact]
    public void A_view_older_than_every_listed_identity_has_no_leader()
    {
        var pruned = new UsigEpochs(new Dictionary<int, IReadOnlyList<UsigEpoch>> { [0] = [new UsigEpoch(2, 5)] });
        Assert.Equal(0UL, pruned.LeaderEpoch(0, 4));
        Assert.Equal(2UL, pruned.LeaderEpoch(0, 5));
    }

    [Theory]
    [InlineData(1UL, 0UL, true)]
    [InlineData(2UL, 39UL, false)]
    [InlineData(2UL, 40UL, true)]
    [InlineData(3UL, 69UL, false)]
    [InlineData(3UL, 70UL, true)]
    [InlineData(4UL, 1000UL, false)]
    public void A_view_change_vouches_from_its_identitys_first_checkpoint_on(ulong epoch, ulong checkpoint, bool vouches) =>
        Assert.Equal(vouches, Rotated.Vouches(1, epoch, checkpoint));

    [Theory]
    [InlineData("no USIG identity")]
    [InlineData("epoch 0")]
    [InlineData("not increasing")]
    [InlineData("first view")]
    [InlineData("negative")]
    public void An_inconsistent_history_is_refused(string problem)
    {
        IReadOnlyList<UsigEpoch> list = problem switch
        {
            "no USIG identity" => [],
            "epoch 0" => [new UsigEpoch(0, 0)],
            "not increasing" => [new UsigEpoch(2, 0), new UsigEpoch(2, 3)],
            "first view" => [new UsigEpoch(1, 0), new UsigEpoch(2, 0)],
            _ => [new UsigEpoch(1, -1)],
        };
        var error = Assert.Throws<ArgumentException>(() => new UsigEpochs(new Dictionary<int, IReadOnlyList<UsigEpoch>> { [0] = list }));
        Assert.Contains(problem, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_retired_key_still_verifies_what_it_certified_and_nothing_else_verifies_under_its_epoch()
    {
        var random = TestRandom.Create(output);
        var oldKey = Ed25519KeyPair.Generate(random.SecureRandom());
        var newKey = Ed25519KeyPair.Generate(random.SecureRandom());
        var oldUsig = new UsigCore(1, 1, new Ed25519UsigCertifier(oldKey.PrivateKey), new InMemoryUsigCounterStore(UsigState.Fresh(1)));
        var newUsig = new UsigCore(1, 2, new Ed25519UsigCertifier(newKey.PrivateKey), new InMemoryUsigCounterStore(UsigState.Fresh(2)));
        var digest = random.Bytes(32);
        var oldUi = await oldUsig.Create(digest);
        var newUi = await newUsig.Create(digest);
        var verifier = new UsigVerifier(
            new Dictionary<int, IReadOnlyList<UsigVerificationKey>> { [1] = [UsigVerificationKey.Ed25519(1, oldKey.PublicKey), UsigVerificationKey.Ed25519(2, newKey.PublicKey)] },
            new UsigEpochs(new Dictionary<int, IReadOnlyList<UsigEpoch>> { [1] = [new UsigEpoch(1, 0), new UsigEpoch(2, 4)] }));

        Assert.True(verifier.Verify(1, oldUi, digest));
        Assert.True(verifier.Verify(1, newUi, digest));
        // A certificate is bound to its epoch: the new key's certificate claimed under the old epoch fails.
        Assert.False(verifier.Verify(1, newUi with { Epoch = 1 }, digest));
        Assert.False(verifier.Verify(1, oldUi with { Epoch = 3 }, digest));
        Assert.Equal(2UL, verifier.Epochs.Current(1));
    }

    [Fact]
    public void A_verifier_needs_a_key_for_each_identity_and_no_other()
    {
        var random = TestRandom.Create(output);
        var key = UsigVerificationKey.Ed25519(2, Ed25519KeyPair.Generate(random.SecureRandom()).PublicKey);
        var epochs = new UsigEpochs(new Dictionary<int, IReadOnlyList<UsigEpoch>> { [1] = [new UsigEpoch(1, 0)] });
        Assert.Throws<ArgumentException>(() => new UsigVerifier(new Dictionary<int, IReadOnlyList<UsigVerificationKey>> { [1] = [key] }, epochs));
    }

    [Fact]
    public void The_hmac_preverifier_records_claims_of_retired_epochs_and_refuses_unknown_ones()
    {
        var verifier = new PreverifiedUiVerifier(Rotated);
        var digest = new byte[32];
        var retired = new UiClaim(1, new UniqueIdentifier(2, 7, new byte[32]), digest);
        var unknown = new UiClaim(1, new UniqueIdentifier(4, 7, new byte[32]), digest);
        Assert.True(verifier.NeedsVerification(retired));
        Assert.False(verifier.NeedsVerification(unknown));
        verifier.Record(retired, valid: true);
        verifier.Record(unknown, valid: true);
        Assert.True(verifier.Verify(1, retired.Ui, digest));
        Assert.False(verifier.Verify(1, unknown.Ui, digest));
    }
}
