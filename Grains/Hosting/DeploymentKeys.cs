using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using MinBft.Crypto;
using MinBft.Usig;
using Org.BouncyCastle.Security;

namespace MinBft.Hosting;

/// <summary>
/// A deployment's key material on disk: <c>manifest.json</c> (public, for every silo and client)
/// and one directory per fault domain, each file mode 600, with the replica's key and the USIG's
/// key in directories of their own, so that a deployment can give them different owners:
/// <code>
/// manifest.json
/// domain-0/replica/signing.key   replica 0's Ed25519 signing key (REPLY, REQ-VIEW-CHANGE, ...): the silo
/// domain-0/usig/usig.key         USIG 0's Ed25519 key (ed25519 scheme), or
/// domain-0/usig/usig-hmac.key    the USIGs' shared HMAC key (hmac scheme, one copy per domain): the USIG
/// domain-0/tls/tls.crt, tls.key  the silo's TLS certificate (deployments made with TLS: DeploymentCertificates)
/// domain-1/...
/// ca/, gateway/tls/, clients/NAME/ the TLS CA (its key stays here), the gateway silo's and clients' certificates
/// </code>
/// Copy <c>domain-i</c> only to the machines of fault domain i: whoever holds a replica's keys
/// can act as that replica. With an isolated USIG, <c>domain-i/usig/</c> belongs to the USIG
/// program's user alone, and the silo never reads it.
/// </summary>
public static class DeploymentKeys
{
    public const string ManifestFileName = "manifest.json";
    public const string SigningKeyFileName = "signing.key";
    public const string UsigKeyFileName = "usig.key";
    public const string HmacUsigKeyFileName = "usig-hmac.key";
    public const string ReplicaKeyDirectoryName = "replica";
    public const string UsigKeyDirectoryName = "usig";

    /// <summary>The first epoch of a fresh USIG.</summary>
    public const ulong InitialEpoch = 1;

    /// <summary>Where fault domain <paramref name="faultDomain"/>'s private keys live inside a deployment directory.</summary>
    public static string DomainDirectory(string deploymentDirectory, int faultDomain)
    {
        ArgumentNullException.ThrowIfNull(deploymentDirectory);
        ArgumentOutOfRangeException.ThrowIfNegative(faultDomain);
        return Path.Combine(deploymentDirectory, string.Create(CultureInfo.InvariantCulture, $"domain-{faultDomain}"));
    }

    /// <summary>The file of the USIG key inside a domain directory (what the USIG program reads), for the manifest's scheme.</summary>
    public static string UsigKeyPath(ClusterManifest manifest, string domainDirectory)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        return Path.Combine(domainDirectory, UsigKeyDirectoryName, manifest.UsigScheme == UsigScheme.Hmac ? HmacUsigKeyFileName : UsigKeyFileName);
    }

    /// <summary>
    /// Generates fresh keys for a cluster of n = 2f+1 replicas into <paramref name="directory"/>
    /// (created if missing) and returns the manifest it wrote. Refuses to run over an existing
    /// manifest or key file: regenerating would silently replace every replica's identity.
    /// </summary>
    public static ClusterManifest Generate(int f, string directory, UsigScheme scheme = UsigScheme.Ed25519) =>
        Generate(f, directory, scheme, ClusterManifest.DefaultCheckpointInterval, ClusterManifest.DefaultWatermark);

    /// <summary>As <see cref="Generate(int, string, UsigScheme)"/>, with the cluster's protocol constants. No TLS material
    /// (local development and test clusters, which run plaintext); <c>keygen</c> uses the overload with <c>tls</c>.</summary>
    public static ClusterManifest Generate(int f, string directory, UsigScheme scheme, int checkpointInterval, int watermark,
        int maxClientRecords = ClusterManifest.DefaultMaxClientRecords) =>
        Generate(f, directory, scheme, checkpointInterval, watermark, tls: false, maxClientRecords);

    /// <summary>
    /// As <see cref="Generate(int, string, UsigScheme, int, int, int)"/>; with <paramref name="tls"/>, also
    /// the deployment's TLS CA (in <c>ca/</c>, its certificate in the manifest), one silo
    /// certificate per fault domain (<c>domain-i/tls/</c>), one for a gateway silo
    /// (<c>gateway/tls/</c>) and one client certificate (<c>clients/client/</c>); see
    /// <see cref="DeploymentCertificates"/>.
    /// </summary>
    public static ClusterManifest Generate(int f, string directory, UsigScheme scheme, int checkpointInterval, int watermark, bool tls,
        int maxClientRecords = ClusterManifest.DefaultMaxClientRecords)
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
        var now = DateTimeOffset.UtcNow;
        // Named apart from every other deployment's CA, so an operator can tell them apart.
        using var authority = tls ? DeploymentCertificates.CreateAuthority("minbft-ca-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4)), now) : null;
        // Validates before anything is written.
        var manifest = ClusterManifest.Create(f, scheme, identities, checkpointInterval, watermark,
            authority is null ? null : [authority.RawData], maxClientRecords);

        CreatePrivateDirectory(directory);
        for (var i = 0; i < n; i++)
        {
            var domain = DomainDirectory(directory, i);
            CreatePrivateDirectory(domain);
            CreatePrivateDirectory(Path.Combine(domain, ReplicaKeyDirectoryName));
            CreatePrivateDirectory(Path.Combine(domain, UsigKeyDirectoryName));
            KeyFiles.SavePrivateKey(Path.Combine(domain, ReplicaKeyDirectoryName, SigningKeyFileName), signing[i]);
            if (usig[i] is { } usigKeys) KeyFiles.SavePrivateKey(Path.Combine(domain, UsigKeyDirectoryName, UsigKeyFileName), usigKeys);
            if (hmacKey is not null) KeyFiles.SaveHmacKey(Path.Combine(domain, UsigKeyDirectoryName, HmacUsigKeyFileName), hmacKey);
        }
        if (authority is not null)
        {
            var caDirectory = Path.Combine(directory, DeploymentCertificates.AuthorityDirectoryName);
            CreatePrivateDirectory(caDirectory);
            DeploymentCertificates.Save(authority, Path.Combine(caDirectory, DeploymentCertificates.AuthorityCertificateFileName),
                Path.Combine(caDirectory, DeploymentCertificates.AuthorityKeyFileName), replace: false);
            for (var i = 0; i < n; i++) IssueSiloCertificate(directory, authority, DeploymentCertificates.DomainName(i), now, replace: false);
            IssueSiloCertificate(directory, authority, DeploymentCertificates.GatewayDirectoryName, now, replace: false);
            IssueClientCertificate(directory, authority, DeploymentCertificates.DefaultClientName, now, replace: false);
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
        var path = Path.Combine(keyDirectory, ReplicaKeyDirectoryName, SigningKeyFileName);
        CheckLayout(keyDirectory, path);
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
        var path = UsigKeyPath(manifest, keyDirectory);
        CheckLayout(keyDirectory, path);
        // The USIG library's reader: the same code the USIG program loads its key with.
        var certifier = UsigKeyFile.Load(path);
        if (certifier.Scheme != ClusterManifest.SchemeName(manifest.UsigScheme))
            throw new InvalidDataException($"{path}: a {certifier.Scheme} key, but the manifest's USIG scheme is {ClusterManifest.SchemeName(manifest.UsigScheme)}");
        if (manifest.UsigScheme == UsigScheme.Ed25519 && !certifier.PublicKey.AsSpan().SequenceEqual(identity.UsigPublicKey))
            throw new InvalidDataException($"{path}: this USIG key is not USIG {replicaId}'s key in the cluster manifest");
        return certifier;
    }

    /// <summary>
    /// <c>keygen --rotate-usig</c>: USIG <paramref name="replicaId"/> lost its state (or its state
    /// is corrupted), so it must never issue under its old identity again. Writes a new epoch (the
    /// old one + 1) into the manifest and, for the ed25519 scheme, a new key into
    /// <c>domain-i/usig/usig.key</c> (the old key is deleted: nothing may certify under it again);
    /// with the hmac scheme the key is the shared secret and stays, the epoch alone changes the
    /// identity. The old identity is kept as retired: it still verifies what it certified (checkpoint
    /// certificates, logged PREPAREs). The new one leads views from <paramref name="firstView"/> on,
    /// and its VIEW-CHANGEs count towards a NEW-VIEW once they carry a stable checkpoint at or above
    /// <paramref name="firstCheckpoint"/> (Protocol/Core/USIG-ROTATION-DESIGN.md). The manifest is
    /// replaced atomically (written aside, then renamed over), after the key. Returns the new
    /// manifest; it must then be rolled out to every silo (see the README).
    /// </summary>
    /// <param name="directory">The deployment directory keygen wrote (manifest and <c>domain-i/</c>).</param>
    /// <param name="replicaId">The replica whose USIG lost its state.</param>
    /// <param name="firstView">Above every view the cluster used: the highest in <c>status</c> plus n.</param>
    /// <param name="firstCheckpoint">At or above every position the old identity can have committed:
    /// the highest executed position in <c>status</c> plus the watermark.</param>
    public static ClusterManifest RotateUsig(string directory, int replicaId, long firstView, ulong firstCheckpoint)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        var manifestPath = Path.Combine(directory, ManifestFileName);
        var manifest = ClusterManifest.Load(manifestPath);
        var old = manifest.Replica(replicaId);
        if (firstView <= old.UsigFirstView)
            throw new ArgumentException($"the first view ({firstView}) must be above the current identity's ({old.UsigFirstView}) and every view the cluster used", nameof(firstView));
        var usigDirectory = Path.Combine(DomainDirectory(directory, replicaId), UsigKeyDirectoryName);
        var identity = old with
        {
            UsigEpoch = checked(old.UsigEpoch + 1),
            UsigFirstView = firstView,
            UsigFirstCheckpoint = firstCheckpoint,
            RetiredUsigs = [.. old.RetiredUsigs ?? [], new RetiredUsig(old.UsigEpoch, old.UsigPublicKey, old.UsigFirstView, old.UsigFirstCheckpoint)],
        };
        if (manifest.UsigScheme == UsigScheme.Ed25519)
        {
            var keys = Ed25519KeyPair.Generate(new SecureRandom());
            identity = identity with { UsigPublicKey = keys.PublicKey };
            CreatePrivateDirectory(usigDirectory);
            KeyFiles.SavePrivateKey(Path.Combine(usigDirectory, UsigKeyFileName), keys, overwrite: true);
        }
        var rotated = ClusterManifest.Create(manifest.F, manifest.UsigScheme,
            manifest.Replicas.Select(r => r.Id == replicaId ? identity : r), manifest.CheckpointInterval, manifest.Watermark, manifest.TlsCertificateAuthorities,
            manifest.MaxClientRecords);
        var aside = manifestPath + ".new";
        rotated.Save(aside, overwrite: true);
        File.Move(aside, manifestPath, overwrite: true);
        return rotated;
    }

    /// <summary>
    /// <c>keygen --silo-cert NAME</c>: a new certificate for silo NAME (<c>domain-i</c>, <c>gateway</c>,
    /// or another gateway's name) from the deployment's CA in <c>ca/</c>, into <c>NAME/tls/</c>. An
    /// existing one is replaced (renewal): peers accept old and new alike, since both come from the
    /// same CA, so silos can be restarted with their new certificate one at a time. Returns the path.
    /// </summary>
    public static string IssueSiloCertificate(string directory, string name)
    {
        using var authority = LoadTlsAuthority(directory);
        return IssueSiloCertificate(directory, authority, name, DateTimeOffset.UtcNow, replace: true);
    }

    /// <summary><c>keygen --client-cert NAME</c>: a client certificate into <c>clients/NAME/</c>; refuses to replace one. Returns the path.</summary>
    public static string IssueClientCertificate(string directory, string name)
    {
        using var authority = LoadTlsAuthority(directory);
        return IssueClientCertificate(directory, authority, name, DateTimeOffset.UtcNow, replace: false);
    }

    /// <summary>The CA in <c>ca/</c>, checked to be one the manifest lists (else its certificates would be refused everywhere).</summary>
    private static X509Certificate2 LoadTlsAuthority(string directory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        var manifest = ClusterManifest.Load(Path.Combine(directory, ManifestFileName));
        var authority = DeploymentCertificates.LoadAuthority(directory);
        if (!manifest.TlsCertificateAuthorities.Any(a => a.AsSpan().SequenceEqual(authority.RawData)))
        {
            authority.Dispose();
            throw new InvalidDataException($"{Path.Combine(directory, DeploymentCertificates.AuthorityDirectoryName)}: this CA is not one the manifest lists; its certificates would be refused");
        }
        return authority;
    }

    private static string IssueSiloCertificate(string directory, X509Certificate2 authority, string name, DateTimeOffset now, bool replace)
    {
        var path = DeploymentCertificates.SiloCertificatePath(directory, name);
        CreatePrivateDirectory(Path.Combine(directory, name));
        CreatePrivateDirectory(Path.GetDirectoryName(path)!);
        using var certificate = DeploymentCertificates.Issue(authority, DeploymentCertificates.SiloCommonName(name), TlsPeer.Silo, now, DeploymentCertificates.DefaultCertificateLifetime);
        DeploymentCertificates.Save(certificate, path, DeploymentTls.DefaultKeyPath(path), replace);
        return path;
    }

    private static string IssueClientCertificate(string directory, X509Certificate2 authority, string name, DateTimeOffset now, bool replace)
    {
        var path = DeploymentCertificates.ClientCertificatePath(directory, name);
        CreatePrivateDirectory(Path.Combine(directory, DeploymentCertificates.ClientsDirectoryName));
        CreatePrivateDirectory(Path.GetDirectoryName(path)!);
        using var certificate = DeploymentCertificates.Issue(authority, "minbft-client-" + name, TlsPeer.SiloOrClient, now, DeploymentCertificates.DefaultCertificateLifetime);
        DeploymentCertificates.Save(certificate, path, DeploymentTls.DefaultKeyPath(path), replace);
        return path;
    }

    /// <summary>Keys of the layout before replica and USIG keys had directories of their own: say how to move them.</summary>
    private static void CheckLayout(string keyDirectory, string path)
    {
        if (!File.Exists(path) && File.Exists(Path.Combine(keyDirectory, SigningKeyFileName)))
        {
            throw new InvalidDataException(
                $"{path} not found, but {keyDirectory} holds keys in the old flat layout: move {SigningKeyFileName} into {ReplicaKeyDirectoryName}/ " +
                $"and {UsigKeyFileName} or {HmacUsigKeyFileName} into {UsigKeyDirectoryName}/ (each mode 700), or generate the keys again");
        }
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
