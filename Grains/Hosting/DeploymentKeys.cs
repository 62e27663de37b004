using System.Globalization;
using MinBft.Crypto;
using MinBft.Usig;
using Org.BouncyCastle.Security;

namespace MinBft.Hosting;

/// <summary>
/// A deployment's key material on disk: <c>manifest.json</c> (public, for every silo and client)
/// and one directory per fault domain holding that domain's private keys, each file mode 600:
/// <code>
/// manifest.json
/// domain-0/signing.key    replica 0's Ed25519 signing key (REPLY, REQ-VIEW-CHANGE, ...)
/// domain-0/usig.key       USIG 0's Ed25519 key (ed25519 scheme), or
/// domain-0/usig-hmac.key  the USIGs' shared HMAC key (hmac scheme, one copy per domain)
/// domain-1/...
/// </code>
/// Copy <c>domain-i</c> only to the machines of fault domain i: whoever holds a replica's keys
/// can act as that replica.
/// </summary>
public static class DeploymentKeys
{
    public const string ManifestFileName = "manifest.json";
    public const string SigningKeyFileName = "signing.key";
    public const string UsigKeyFileName = "usig.key";
    public const string HmacUsigKeyFileName = "usig-hmac.key";

    /// <summary>The first epoch of a fresh USIG.</summary>
    public const ulong InitialEpoch = 1;

    /// <summary>Where fault domain <paramref name="faultDomain"/>'s private keys live inside a deployment directory.</summary>
    public static string DomainDirectory(string deploymentDirectory, int faultDomain)
    {
        ArgumentNullException.ThrowIfNull(deploymentDirectory);
        ArgumentOutOfRangeException.ThrowIfNegative(faultDomain);
        return Path.Combine(deploymentDirectory, string.Create(CultureInfo.InvariantCulture, $"domain-{faultDomain}"));
    }

    /// <summary>
    /// Generates fresh keys for a cluster of n = 2f+1 replicas into <paramref name="directory"/>
    /// (created if missing) and returns the manifest it wrote. Refuses to run over an existing
    /// manifest or key file: regenerating would silently replace every replica's identity.
    /// </summary>
    public static ClusterManifest Generate(int f, string directory, UsigScheme scheme = UsigScheme.Ed25519) =>
        Generate(f, directory, scheme, ClusterManifest.DefaultCheckpointInterval, ClusterManifest.DefaultWatermark);

    /// <summary>As <see cref="Generate(int, string, UsigScheme)"/>, with the cluster's protocol constants.</summary>
    public static ClusterManifest Generate(int f, string directory, UsigScheme scheme, int checkpointInterval, int watermark)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(f);
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        var manifestPath = Path.Combine(directory, ManifestFileName);
        if (File.Exists(manifestPath))
            throw new IOException($"{manifestPath} already exists; refusing to replace a deployment's keys");

        var n = 2 * f + 1;
        var random = new SecureRandom();
        var signing = new Ed25519KeyPair[n];
        var usig = new Ed25519KeyPair?[n];
        byte[]? hmacKey = null;
        if (scheme == UsigScheme.Hmac)
        {
            hmacKey = new byte[KeyFiles.HmacKeyLength];
            random.NextBytes(hmacKey);
        }
        var identities = new ReplicaIdentity[n];
        for (var i = 0; i < n; i++)
        {
            signing[i] = Ed25519KeyPair.Generate(random);
            usig[i] = scheme == UsigScheme.Ed25519 ? Ed25519KeyPair.Generate(random) : null;
            identities[i] = new ReplicaIdentity(i, signing[i].PublicKey, usig[i]?.PublicKey, InitialEpoch);
        }
        // Validates before anything is written.
        var manifest = ClusterManifest.Create(f, scheme, identities, checkpointInterval, watermark);

        CreatePrivateDirectory(directory);
        for (var i = 0; i < n; i++)
        {
            var domain = DomainDirectory(directory, i);
            CreatePrivateDirectory(domain);
            KeyFiles.SavePrivateKey(Path.Combine(domain, SigningKeyFileName), signing[i]);
            if (usig[i] is { } usigKeys) KeyFiles.SavePrivateKey(Path.Combine(domain, UsigKeyFileName), usigKeys);
            if (hmacKey is not null) KeyFiles.SaveHmacKey(Path.Combine(domain, HmacUsigKeyFileName), hmacKey);
        }
        // Written last: a manifest on disk means the deployment's keys are complete.
        manifest.Save(manifestPath);
        return manifest;
    }

    /// <summary>
    /// Replica <paramref name="replicaId"/>'s signing key from its domain directory, checked
    /// against the manifest: a key that does not match would sign REPLYs nobody accepts.
    /// </summary>
    public static Ed25519KeyPair LoadSigningKey(ClusterManifest manifest, int replicaId, string keyDirectory)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        var expected = manifest.Replica(replicaId).SigningPublicKey;
        var path = Path.Combine(keyDirectory, SigningKeyFileName);
        var keys = KeyFiles.LoadPrivateKey(path);
        if (!keys.PublicKey.AsSpan().SequenceEqual(expected))
            throw new InvalidDataException($"{path}: this signing key is not replica {replicaId}'s key in the cluster manifest");
        return keys;
    }

    /// <summary>
    /// The certifier of USIG <paramref name="replicaId"/> from its domain directory. For the
    /// signature scheme the key must match the manifest's USIG public key: a USIG certifying
    /// under another key would issue UIs every peer rejects.
    /// </summary>
    public static IUsigCertifier LoadUsigCertifier(ClusterManifest manifest, int replicaId, string keyDirectory)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        var identity = manifest.Replica(replicaId);
        if (manifest.UsigScheme == UsigScheme.Hmac) return new HmacUsigCertifier(LoadHmacUsigKey(keyDirectory));
        var path = Path.Combine(keyDirectory, UsigKeyFileName);
        var keys = KeyFiles.LoadPrivateKey(path);
        if (!keys.PublicKey.AsSpan().SequenceEqual(identity.UsigPublicKey))
            throw new InvalidDataException($"{path}: this USIG key is not USIG {replicaId}'s key in the cluster manifest");
        return new Ed25519UsigCertifier(keys.PrivateKey);
    }

    /// <summary>The shared HMAC USIG key (HMAC scheme only). Part of the trusted computing base.</summary>
    public static byte[] LoadHmacUsigKey(string keyDirectory)
    {
        ArgumentNullException.ThrowIfNull(keyDirectory);
        return KeyFiles.LoadHmacKey(Path.Combine(keyDirectory, HmacUsigKeyFileName));
    }

    private static void CreatePrivateDirectory(string path)
    {
        if (OperatingSystem.IsWindows())
        {
            Directory.CreateDirectory(path);
            return;
        }
        // Owner-only from creation (the key files inside are 600 as well).
        Directory.CreateDirectory(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
    }
}
