using MinBft.Hosting;

namespace MinBft.Tests.Usig;

/// <summary>
/// A silo takes an isolated USIG program only if it is USIG i of the silo's manifest (replica,
/// epoch, scheme and key): otherwise its UIs would be rejected by every peer. This is what stops a
/// half-rolled USIG rotation, or a wrong socket, instead of letting it run.
/// </summary>
public sealed class UsigIdentityCheckTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("minbft-usig-identity-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private static UsigProgramIdentity IdentityOf(ClusterManifest manifest, int replica) =>
        new(replica, manifest.Replica(replica).UsigEpoch, LastCounter: 5, ReissueWindow: 64, MaxBatch: 32,
            ClusterManifest.SchemeName(manifest.UsigScheme), manifest.Replica(replica).UsigPublicKey ?? [], MaxKeptBytes: 1536, KeptMessages: []);

    [Fact]
    public void The_manifests_own_USIG_is_taken_and_every_other_identity_is_refused_with_the_reason()
    {
        var manifest = DeploymentKeys.Generate(1, _directory);
        var own = IdentityOf(manifest, 0);
        Assert.Null(UsigGrain.IdentityMismatch(manifest, 0, own));

        var cases = new (string What, UsigProgramIdentity Identity, string Expected)[]
        {
            ("another replica's USIG", IdentityOf(manifest, 1), "is replica 1's"),
            ("another epoch", own with { Epoch = own.Epoch + 1 }, $"epoch {own.Epoch + 1}"),
            ("another scheme", own with { Scheme = ClusterManifest.SchemeName(UsigScheme.Hmac) }, $"scheme {ClusterManifest.SchemeName(UsigScheme.Hmac)}"),
            ("another key", own with { PublicKey = manifest.Replica(1).UsigPublicKey! }, "with its key"),
        };
        foreach (var (what, identity, expected) in cases)
        {
            var reason = UsigGrain.IdentityMismatch(manifest, 0, identity);
            Assert.True(reason is not null, $"{what} was taken");
            Assert.Contains(expected, reason, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void After_keygen_rotate_usig_the_old_identity_is_refused_and_the_new_one_taken()
    {
        var before = DeploymentKeys.Generate(1, _directory);
        var old = IdentityOf(before, 2);
        var after = DeploymentKeys.RotateUsig(_directory, 2, firstView: 3, firstCheckpoint: 64);

        // A silo with the new manifest refuses the USIG still running under the old identity...
        Assert.Contains($"epoch {old.Epoch}", UsigGrain.IdentityMismatch(after, 2, old), StringComparison.Ordinal);
        // ...and a silo still on the old manifest refuses the re-initialised one: a half-rolled
        // manifest stops instead of forking.
        var rotated = IdentityOf(after, 2);
        Assert.Equal(old.Epoch + 1, rotated.Epoch);
        Assert.NotNull(UsigGrain.IdentityMismatch(before, 2, rotated));
        Assert.Null(UsigGrain.IdentityMismatch(after, 2, rotated));
        // The other USIGs are untouched by the rotation.
        Assert.Null(UsigGrain.IdentityMismatch(after, 0, IdentityOf(before, 0)));
    }
}
