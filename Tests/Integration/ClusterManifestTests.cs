using System.Text.Json.Nodes;
using MinBft.Crypto;
using MinBft.Hosting;
using MinBft.Messages;
using MinBft.Protocol;
using MinBft.Usig;
using MinBft.Tests.Usig;

namespace MinBft.Tests.Integration;

/// <summary>The manifest format, its validation, and the key files a deployment is made of.</summary>
public sealed class ClusterManifestTests : IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "minbft-manifest-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_directory)) Directory.Delete(_directory, recursive: true);
    }

    [Theory]
    [InlineData(UsigScheme.Ed25519)]
    [InlineData(UsigScheme.Hmac)]
    public void Generate_writes_a_manifest_and_private_keys_that_match_it(UsigScheme scheme)
    {
        var manifest = DeploymentKeys.Generate(1, _directory, scheme);

        Assert.Equal(3, manifest.N);
        Assert.Equal(1, manifest.F);
        var loaded = ClusterManifest.Load(Path.Combine(_directory, DeploymentKeys.ManifestFileName));
        Assert.Equal(manifest.ToJson(), loaded.ToJson());
        for (var i = 0; i < 3; i++)
        {
            var domain = DeploymentKeys.DomainDirectory(_directory, i);
            var signing = DeploymentKeys.LoadSigningKey(loaded, i, domain);
            Assert.Equal(loaded.Replicas[i].SigningPublicKey, signing.PublicKey);
            var certifier = DeploymentKeys.LoadUsigCertifier(loaded, i, domain);
            // A UI made with the domain's key verifies under the manifest's identity.
            var digest = new byte[32];
            digest[0] = (byte)i;
            var ui = new UniqueIdentifier(1, 7, certifier.Certify(UsigCertificateInput.Encode(i, 1, 7, digest)));
            if (scheme == UsigScheme.Ed25519)
            {
                Assert.True(loaded.CreateUsigVerifier().Verify(i, ui, digest));
                Assert.False(loaded.CreateUsigVerifier().Verify((i + 1) % 3, ui, digest));
            }
            else
            {
                // HMAC UIs verify only inside a USIG (the shared secret never reaches a replica).
                var usig = new UsigCore(i, 1, certifier, new InMemoryUsigCounterStore());
                Assert.Equal([true, false], usig.VerifyUis([new(i, 1, 7, digest, ui.Certificate), new((i + 1) % 3, 1, 7, digest, ui.Certificate)]));
            }
            // Replica and USIG keys in directories of their own (a deployment may give them different owners).
            var replicaKeys = Path.Combine(domain, DeploymentKeys.ReplicaKeyDirectoryName);
            var usigKeys = Path.Combine(domain, DeploymentKeys.UsigKeyDirectoryName);
            Assert.Equal([Path.Combine(replicaKeys, DeploymentKeys.SigningKeyFileName)], Directory.GetFiles(replicaKeys));
            Assert.Equal([DeploymentKeys.UsigKeyPath(loaded, domain)], Directory.GetFiles(usigKeys));
            Assert.Empty(Directory.GetFiles(domain));
            Assert.Equal(scheme == UsigScheme.Hmac ? DeploymentKeys.HmacUsigKeyFileName : DeploymentKeys.UsigKeyFileName, Path.GetFileName(DeploymentKeys.UsigKeyPath(loaded, domain)));
            if (!OperatingSystem.IsWindows())
            {
                foreach (var directory in new[] { domain, replicaKeys, usigKeys })
                    Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(directory));
                foreach (var file in Directory.GetFiles(domain, "*", SearchOption.AllDirectories))
                    Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(file));
            }
        }
        Assert.Contains("\"usigScheme\": \"" + ClusterManifest.SchemeName(scheme) + "\"", manifest.ToJson(), StringComparison.Ordinal);
    }

    [Fact]
    public void Generate_refuses_to_replace_an_existing_deployment()
    {
        DeploymentKeys.Generate(1, _directory);
        var error = Assert.Throws<IOException>(() => DeploymentKeys.Generate(1, _directory));
        Assert.Contains("already exists", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_key_of_another_domain_is_refused()
    {
        var manifest = DeploymentKeys.Generate(1, _directory);
        var error = Assert.Throws<InvalidDataException>(
            () => DeploymentKeys.LoadSigningKey(manifest, 0, DeploymentKeys.DomainDirectory(_directory, 1)));
        Assert.Contains("not replica 0's key", error.Message, StringComparison.Ordinal);
        Assert.Throws<InvalidDataException>(
            () => DeploymentKeys.LoadUsigCertifier(manifest, 2, DeploymentKeys.DomainDirectory(_directory, 1)));
    }

    public static TheoryData<string, string> Corruptions => new()
    {
        { "n", "n must be 2f+1" },
        { "format", "format is" },
        { "scheme", "usigScheme must be" },
        { "count", "needs n=2f+1=3 replicas" },
        { "duplicate", "listed twice" },
        { "base64", "not valid base64" },
        { "badkey", "not a valid Ed25519 public key" },
        { "reused", "signingPublicKey reused" },
        { "epoch", "usigEpoch must be >= 1" },
        { "unknown", "not a valid manifest" },
        { "hmacwithkey", "must be absent with the hmac scheme" },
        { "nousigkey", "usigPublicKey is not a valid Ed25519 public key" },
        { "garbage", "not a valid manifest" },
        { "checkpoint", "checkpointInterval must be >= 1" },
        { "watermark", "watermark must be >= 1" },
        { "maxclientrecords", "maxClientRecords must be >= 1" },
        { "span", "watermark + checkpointInterval must be at most 192 (got 200 + 64)" },
    };

    [Theory]
    [MemberData(nameof(Corruptions))]
    public void Invalid_manifests_are_refused_with_a_clear_error(string corruption, string expected)
    {
        var manifest = DeploymentKeys.Generate(1, _directory);
        var json = JsonNode.Parse(manifest.ToJson())!.AsObject();
        var replicas = json["replicas"]!.AsArray();
        switch (corruption)
        {
            case "n": json["n"] = 4; break;
            case "format": json["format"] = "something/2"; break;
            case "scheme": json["usigScheme"] = "rsa"; break;
            case "count": replicas.RemoveAt(2); break;
            case "duplicate": replicas[2]!["id"] = 1; break;
            case "base64": replicas[1]!["signingPublicKey"] = "%%%"; break;
            case "badkey": replicas[1]!["signingPublicKey"] = Convert.ToBase64String(new byte[31]); break;
            case "reused": replicas[1]!["signingPublicKey"] = replicas[0]!["signingPublicKey"]!.GetValue<string>(); break;
            case "epoch": replicas[0]!["usigEpoch"] = 0; break;
            case "unknown": json["signingKeys"] = "typo"; break;
            case "hmacwithkey": json["usigScheme"] = "hmac"; break;
            case "nousigkey": replicas[0]!.AsObject().Remove("usigPublicKey"); break;
            case "checkpoint": json["checkpointInterval"] = 0; break;
            case "watermark": json["watermark"] = -1; break;
            case "maxclientrecords": json["maxClientRecords"] = 0; break;
            case "span": json["watermark"] = 200; break; // a VIEW-CHANGE could outgrow one message
        }
        var text = corruption == "garbage" ? "{ not json" : json.ToJsonString();
        var path = Path.Combine(_directory, "corrupt.json");
        File.WriteAllText(path, text);

        var error = Assert.Throws<InvalidDataException>(() => ClusterManifest.Load(path));

        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
        Assert.Contains(path, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Protocol_constants_are_written_and_default_when_absent()
    {
        var manifest = DeploymentKeys.Generate(1, _directory, UsigScheme.Ed25519, checkpointInterval: 16, watermark: 32);
        var reloaded = ClusterManifest.Parse(manifest.ToJson());
        Assert.Equal((16, 32), (reloaded.CheckpointInterval, reloaded.Watermark));
        var settings = new MinBftOptions { Manifest = reloaded }.ToProtocolSettings(reloaded, 2);
        Assert.Equal((3, 2, 16, 32), (settings.N, settings.ReplicaId, settings.CheckpointInterval, settings.Watermark));

        var json = JsonNode.Parse(manifest.ToJson())!.AsObject();
        json.Remove("checkpointInterval");
        json.Remove("watermark");
        var defaults = ClusterManifest.Parse(json.ToJsonString());
        Assert.Equal((ClusterManifest.DefaultCheckpointInterval, ClusterManifest.DefaultWatermark), (defaults.CheckpointInterval, defaults.Watermark));
    }

    [Fact]
    public void MaxClientRecords_round_trips_through_save_and_load()
    {
        var manifest = DeploymentKeys.Generate(1, _directory, UsigScheme.Ed25519, checkpointInterval: 16, watermark: 32, maxClientRecords: 5);
        Assert.Equal(5, manifest.MaxClientRecords);
        Assert.Contains("\"maxClientRecords\": 5", manifest.ToJson(), StringComparison.Ordinal);

        // As Generate wrote it, and saved again elsewhere.
        var written = ClusterManifest.Load(Path.Combine(_directory, DeploymentKeys.ManifestFileName));
        var copy = Path.Combine(_directory, "copy.json");
        written.Save(copy);
        var reloaded = ClusterManifest.Load(copy);
        Assert.Equal((16, 32, 5), (written.CheckpointInterval, written.Watermark, written.MaxClientRecords));
        Assert.Equal((16, 32, 5), (reloaded.CheckpointInterval, reloaded.Watermark, reloaded.MaxClientRecords));
        Assert.Equal(manifest.ToJson(), reloaded.ToJson());
    }

    [Fact]
    public void MaxClientRecords_is_kept_when_the_manifest_is_recreated()
    {
        var manifest = DeploymentKeys.Generate(1, _directory, UsigScheme.Ed25519, ClusterManifest.DefaultCheckpointInterval, ClusterManifest.DefaultWatermark, tls: true, maxClientRecords: 7);
        Assert.Equal(7, manifest.MaxClientRecords);
        Assert.Equal(7, manifest.WithTlsCertificateAuthorities([]).MaxClientRecords);
        Assert.Equal(7, manifest.WithTlsCertificateAuthorities(manifest.TlsCertificateAuthorities).MaxClientRecords);

        var rotated = DeploymentKeys.RotateUsig(_directory, 1, firstView: 3, firstCheckpoint: 64);
        Assert.Equal(7, rotated.MaxClientRecords);
        Assert.Equal(7, ClusterManifest.Load(Path.Combine(_directory, DeploymentKeys.ManifestFileName)).MaxClientRecords);
    }

    [Theory]
    [InlineData(UsigScheme.Ed25519)]
    [InlineData(UsigScheme.Hmac)]
    public void A_rotated_manifest_keeps_the_retired_identities_through_json_and_refuses_an_inconsistent_history(UsigScheme scheme)
    {
        var manifest = DeploymentKeys.Generate(1, _directory, scheme);
        DeploymentKeys.RotateUsig(_directory, 2, firstView: 3, firstCheckpoint: 64);
        var twice = DeploymentKeys.RotateUsig(_directory, 2, firstView: 7, firstCheckpoint: 200);
        var reloaded = ClusterManifest.Load(Path.Combine(_directory, DeploymentKeys.ManifestFileName));
        Assert.Equal(twice.ToJson(), reloaded.ToJson());
        Assert.Equal([1UL, 2UL], reloaded.Replica(2).RetiredUsigs!.Select(r => r.Epoch));
        Assert.Equal(3UL, reloaded.Replica(2).UsigEpoch);
        Assert.Equal(scheme == UsigScheme.Ed25519, reloaded.Replica(2).RetiredUsigs!.All(r => r.PublicKey is not null));
        var epochs = reloaded.UsigEpochs();
        Assert.Equal([1UL, 2UL, 3UL], new long[] { 2, 3, 7 }.Select(v => epochs.LeaderEpoch(2, v)));
        Assert.True(epochs.Vouches(2, 3, 200));
        Assert.False(epochs.Vouches(2, 3, 199));
        // A replica never rotated writes none of the new members: older readers see the same JSON.
        Assert.DoesNotContain("usigFirstView", JsonNode.Parse(manifest.ToJson())!.ToJsonString(), StringComparison.Ordinal);

        // A history whose first views do not increase is refused as a whole, naming the replica.
        var json = JsonNode.Parse(reloaded.ToJson())!.AsObject();
        json["replicas"]![2]!["usigFirstView"] = 3;
        var error = Assert.Throws<InvalidDataException>(() => ClusterManifest.Parse(json.ToJsonString()));
        Assert.Contains("replica 2", error.Message, StringComparison.Ordinal);
        Assert.Contains("first view", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_manifest_without_maxClientRecords_loads_with_the_default()
    {
        var manifest = DeploymentKeys.Generate(1, _directory);
        Assert.Equal(ClusterManifest.DefaultMaxClientRecords, manifest.MaxClientRecords);
        Assert.Equal(ProtocolSettings.DefaultMaxClientRecords, ClusterManifest.DefaultMaxClientRecords);

        var json = JsonNode.Parse(manifest.ToJson())!.AsObject();
        Assert.True(json.Remove("maxClientRecords"));
        var path = Path.Combine(_directory, "old.json");
        File.WriteAllText(path, json.ToJsonString());

        var old = ClusterManifest.Load(path);
        Assert.Equal(ClusterManifest.DefaultMaxClientRecords, old.MaxClientRecords);
        Assert.Equal(ClusterManifest.DefaultMaxClientRecords, new MinBftOptions().ToProtocolSettings(old, 0).MaxClientRecords);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    [InlineData(int.MinValue)]
    public void MaxClientRecords_below_one_is_refused_naming_the_field(int value)
    {
        var manifest = DeploymentKeys.Generate(1, _directory);
        var expected = "maxClientRecords must be >= 1, got " + value.ToString(System.Globalization.CultureInfo.InvariantCulture);

        var json = JsonNode.Parse(manifest.ToJson())!.AsObject();
        json["maxClientRecords"] = value;
        var parsed = Assert.Throws<InvalidDataException>(() => ClusterManifest.Parse(json.ToJsonString()));
        Assert.Contains(expected, parsed.Message, StringComparison.Ordinal);

        var created = Assert.Throws<ArgumentException>(() => ClusterManifest.Create(
            manifest.F, manifest.UsigScheme, manifest.Replicas, maxClientRecords: value));
        Assert.Contains(expected, created.Message, StringComparison.Ordinal);

        // Validated before anything is written.
        var elsewhere = Path.Combine(_directory, "other");
        var generated = Assert.Throws<ArgumentException>(() => DeploymentKeys.Generate(
            1, elsewhere, UsigScheme.Ed25519, ClusterManifest.DefaultCheckpointInterval, ClusterManifest.DefaultWatermark, maxClientRecords: value));
        Assert.Contains(expected, generated.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(elsewhere));
    }

    [Fact]
    public void ToProtocolSettings_carries_MaxClientRecords_from_the_manifest()
    {
        var manifest = DeploymentKeys.Generate(1, _directory, UsigScheme.Ed25519, checkpointInterval: 16, watermark: 32, maxClientRecords: 3);
        var settings = new MinBftOptions { Manifest = manifest }.ToProtocolSettings(manifest, 1);
        Assert.Equal((3, 1, 16, 32, 3), (settings.N, settings.ReplicaId, settings.CheckpointInterval, settings.Watermark, settings.MaxClientRecords));
        (settings with { UsigReissueWindow = 1, UsigMaxBatch = 1 }).Validate();
    }

    [Fact]
    public void Create_validates_and_copies_keys()
    {
        var keys = Enumerable.Range(0, 3).Select(_ => Ed25519KeyPair.Generate(new Org.BouncyCastle.Security.SecureRandom())).ToArray();
        var replicas = keys.Select((k, i) => new ReplicaIdentity(i, k.PublicKey, null, 1)).ToArray();
        var manifest = ClusterManifest.Create(1, UsigScheme.Hmac, replicas);
        replicas[0].SigningPublicKey[0] ^= 1;
        Assert.Equal(keys[0].PublicKey, manifest.Replicas[0].SigningPublicKey);
        Assert.Throws<ArgumentException>(() => ClusterManifest.Create(2, UsigScheme.Hmac, replicas));
        Assert.Throws<FileNotFoundException>(() => ClusterManifest.Load(Path.Combine(_directory, "missing.json")));
    }
}
