using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using System.Text.Json.Serialization;
using MinBft.Crypto;
using MinBft.Usig;

namespace MinBft.Hosting;

/// <summary>How USIG certificates are made and checked in a deployment.</summary>
public enum UsigScheme
{
    /// <summary>Ed25519 signatures: anyone with the USIG's public key verifies (the default).</summary>
    Ed25519,

    /// <summary>HMAC-SHA256 with a secret shared by all USIGs: cheaper, but verifying needs the secret.</summary>
    Hmac,
}

/// <summary>
/// The public identity of one replica: the key its REPLYs (and other signed messages) verify
/// with, and its USIG's identity (epoch, and for the signature scheme the public key). After a
/// USIG rotation (<c>keygen --rotate-usig</c>) also the first view it may lead and the first stable
/// checkpoint from which its VIEW-CHANGEs count under the current identity, and its retired
/// identities, which still verify history (Protocol/Core/USIG-ROTATION-DESIGN.md).
/// </summary>
public sealed record ReplicaIdentity(int Id, byte[] SigningPublicKey, byte[]? UsigPublicKey, ulong UsigEpoch,
    long UsigFirstView = 0, ulong UsigFirstCheckpoint = 0, IReadOnlyList<RetiredUsig>? RetiredUsigs = null)
{
    /// <summary>Every USIG identity, oldest first, the current one last.</summary>
    public IReadOnlyList<UsigEpoch> UsigIdentities =>
        [.. (RetiredUsigs ?? []).Select(r => new UsigEpoch(r.Epoch, r.FirstView, r.FirstCheckpoint)), new UsigEpoch(UsigEpoch, UsigFirstView, UsigFirstCheckpoint)];
}

/// <summary>A USIG identity a replica had before a rotation: it verifies what it certified then, and
/// may lead only the views from its first view to the next identity's.</summary>
public sealed record RetiredUsig(ulong Epoch, byte[]? PublicKey, long FirstView, ulong FirstCheckpoint);

/// <summary>
/// The cluster manifest: the public facts every replica, proxy and client of one deployment
/// must agree on (n, f, the USIG scheme, each replica's public keys and USIG epoch). It holds
/// no secret, so it can be handed to every silo and client. A replica trusts a message only
/// under the keys listed here, so a manifest that fails validation is refused as a whole rather
/// than partly used.
/// </summary>
/// <remarks>
/// JSON format (System.Text.Json, camelCase, unknown members rejected so a typo cannot silently
/// drop a key):
/// <code>
/// {
///   "format": "minbft-manifest/1",
///   "n": 3, "f": 1, "usigScheme": "ed25519",
///   "checkpointInterval": 64, "watermark": 64, "maxClientRecords": 100000,
///   "replicas": [ { "id": 0, "signingPublicKey": "base64", "usigPublicKey": "base64", "usigEpoch": 1 }, ... ]
/// }
/// </code>
/// <c>usigPublicKey</c> is absent with the HMAC scheme (its key is a shared secret).
/// A replica whose USIG was rotated also has <c>usigFirstView</c>, <c>usigFirstCheckpoint</c> and
/// <c>retiredUsigs</c>: <c>[ { "epoch": 1, "usigPublicKey": "base64", "firstView": 0, "firstCheckpoint": 0 } ]</c>,
/// oldest first (absent: never rotated, leading from view 0).
/// <c>tlsCertificateAuthorities</c> (base64 DER certificates, optional): the CAs whose certificates
/// silos and clients accept on the cluster's connections (mutual TLS, <see cref="DeploymentTls"/>).
/// Absent: the deployment has no TLS CA (generated before TLS, or for local development).
/// More than one: a CA roll-over, during which certificates of either are accepted.
/// <c>checkpointInterval</c>, <c>watermark</c> and <c>maxClientRecords</c> are protocol constants
/// every replica must share (see <see cref="Protocol.ProtocolSettings"/>); when absent (a manifest
/// written before the member existed) the first two default to 64 and <c>maxClientRecords</c> to
/// <see cref="DefaultMaxClientRecords"/>.
/// </remarks>
public sealed class ClusterManifest
{
    /// <summary>The value of the "format" member this version reads and writes.</summary>
    public const string FormatVersion = "minbft-manifest/1";

    /// <summary>A manifest is a few kilobytes; anything much larger is not one.</summary>
    public const int MaxFileBytes = 1024 * 1024;

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        WriteIndented = true,
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
    };

    private readonly ReplicaIdentity[] _replicas;
    private readonly byte[][] _tlsAuthorities;

    /// <summary>Most CAs one manifest lists (two during a roll-over; a few to spare).</summary>
    public const int MaxTlsCertificateAuthorities = 4;

    /// <summary>Default of <see cref="CheckpointInterval"/> and <see cref="Watermark"/>.</summary>
    public const int DefaultCheckpointInterval = 64;
    public const int DefaultWatermark = 64;

    /// <summary>Default of <see cref="MaxClientRecords"/>: the same as <see cref="Protocol.ProtocolSettings.DefaultMaxClientRecords"/>.</summary>
    public const int DefaultMaxClientRecords = Protocol.ProtocolSettings.DefaultMaxClientRecords;

    private ClusterManifest(int f, UsigScheme scheme, ReplicaIdentity[] replicas, int checkpointInterval, int watermark, int maxClientRecords, byte[][] tlsAuthorities)
    {
        _tlsAuthorities = tlsAuthorities;
        F = f;
        UsigScheme = scheme;
        _replicas = replicas;
        CheckpointInterval = checkpointInterval;
        Watermark = watermark;
        MaxClientRecords = maxClientRecords;
    }

    /// <summary>A checkpoint every this many executed batches (the same on every replica).</summary>
    public int CheckpointInterval { get; }

    /// <summary>How far beyond its executed position a replica accepts PREPAREs (the same on every replica).</summary>
    public int Watermark { get; }

    /// <summary>Most client records the replicated state keeps; beyond it the longest-idle record is
    /// evicted, the same way at every replica (the same on every replica).</summary>
    public int MaxClientRecords { get; }

    /// <summary>Number of replicas, 2f+1.</summary>
    public int N => _replicas.Length;

    /// <summary>Most replicas that may be Byzantine.</summary>
    public int F { get; }

    /// <summary>Matching replies a client needs: f+1 (at least one from a correct replica).</summary>
    public int ReplyQuorum => F + 1;

    public UsigScheme UsigScheme { get; }

    /// <summary>Replica i at index i.</summary>
    public IReadOnlyList<ReplicaIdentity> Replicas => _replicas;

    /// <summary>The DER certificates of the CAs this deployment's TLS connections trust (empty: none).</summary>
    public IReadOnlyList<byte[]> TlsCertificateAuthorities => _tlsAuthorities;

    /// <summary>Whether the manifest names a TLS CA: the deployment's silos and clients authenticate each other with it.</summary>
    public bool HasTlsCertificateAuthority => _tlsAuthorities.Length > 0;

    /// <summary>The CAs of <see cref="TlsCertificateAuthorities"/> as certificates (the caller disposes them).</summary>
    public IReadOnlyList<X509Certificate2> LoadTlsCertificateAuthorities() =>
        _tlsAuthorities.Select(der => X509CertificateLoader.LoadCertificate(der)).ToList();

    /// <summary>This manifest with <paramref name="authorities"/> (DER) as its TLS CAs.</summary>
    public ClusterManifest WithTlsCertificateAuthorities(IEnumerable<byte[]> authorities) =>
        Create(F, UsigScheme, _replicas, CheckpointInterval, Watermark, authorities, MaxClientRecords);

    /// <summary>Validates and builds a manifest. Throws <see cref="ArgumentException"/> naming what is wrong.</summary>
    /// <remarks><paramref name="maxClientRecords"/> comes last (not after <paramref name="watermark"/>)
    /// so that callers passing <paramref name="tlsCertificateAuthorities"/> by position keep compiling.</remarks>
    public static ClusterManifest Create(
        int f,
        UsigScheme scheme,
        IEnumerable<ReplicaIdentity> replicas,
        int checkpointInterval = DefaultCheckpointInterval,
        int watermark = DefaultWatermark,
        IEnumerable<byte[]>? tlsCertificateAuthorities = null,
        int maxClientRecords = DefaultMaxClientRecords)
    {
        ArgumentNullException.ThrowIfNull(replicas);
        var list = replicas.ToArray();
        var authorities = (tlsCertificateAuthorities ?? []).Select(a => (byte[])a.Clone()).ToArray();
        if ((Validate(f, scheme, list, checkpointInterval, watermark, maxClientRecords) ?? ValidateAuthorities(authorities)) is { } problem)
            throw new ArgumentException("invalid cluster manifest: " + problem, nameof(replicas));
        // Defensive copies: the key arrays are what every verifier is built from.
        return new ClusterManifest(f, scheme, list
            .OrderBy(r => r.Id)
            .Select(r => r with
            {
                SigningPublicKey = (byte[])r.SigningPublicKey.Clone(),
                UsigPublicKey = (byte[]?)r.UsigPublicKey?.Clone(),
                RetiredUsigs = r.RetiredUsigs is { Count: > 0 } retired ? retired.Select(u => u with { PublicKey = (byte[]?)u.PublicKey?.Clone() }).ToArray() : null,
            })
            .ToArray(), checkpointInterval, watermark, maxClientRecords, authorities);
    }

    /// <summary>Reads and validates a manifest file; throws <see cref="InvalidDataException"/> (or
    /// <see cref="FileNotFoundException"/>) with the path and the problem.</summary>
    public static ClusterManifest Load(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        var info = new FileInfo(path);
        if (!info.Exists) throw new FileNotFoundException($"cluster manifest not found: {path}", path);
        if (info.Length > MaxFileBytes) throw new InvalidDataException($"{path}: too large to be a cluster manifest ({info.Length} bytes)");
        return Parse(File.ReadAllText(path, System.Text.Encoding.UTF8), path);
    }

    /// <summary>Parses and validates manifest JSON; <paramref name="source"/> names the origin in errors.</summary>
    public static ClusterManifest Parse(string json, string source = "cluster manifest")
    {
        ArgumentNullException.ThrowIfNull(json);
        ManifestDocument? document;
        try
        {
            document = JsonSerializer.Deserialize<ManifestDocument>(json, JsonOptions);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{source}: not a valid manifest: {e.Message}", e);
        }
        if (document is null) throw new InvalidDataException($"{source}: empty manifest");
        if (document.Format != FormatVersion)
            throw new InvalidDataException($"{source}: format is '{document.Format}', expected '{FormatVersion}'");
        if (!TryParseScheme(document.UsigScheme, out var scheme))
            throw new InvalidDataException($"{source}: usigScheme must be 'ed25519' or 'hmac', got '{document.UsigScheme}'");
        if (document.Replicas is null) throw new InvalidDataException($"{source}: replicas missing");
        if (document.N != 2 * document.F + 1)
            throw new InvalidDataException($"{source}: n must be 2f+1, got n={document.N}, f={document.F}");

        var replicas = new List<ReplicaIdentity>(document.Replicas.Count);
        foreach (var entry in document.Replicas)
        {
            if (entry is null) throw new InvalidDataException($"{source}: null replica entry");
            var retired = new List<RetiredUsig>();
            foreach (var old in entry.RetiredUsigs ?? [])
            {
                if (old is null) throw new InvalidDataException($"{source}: replica {entry.Id}: null retiredUsigs entry");
                retired.Add(new RetiredUsig(old.Epoch, Base64(old.UsigPublicKey, source, entry.Id, "retiredUsigs.usigPublicKey"), old.FirstView, old.FirstCheckpoint));
            }
            replicas.Add(new ReplicaIdentity(
                entry.Id,
                Base64(entry.SigningPublicKey, source, entry.Id, "signingPublicKey") ?? [],
                Base64(entry.UsigPublicKey, source, entry.Id, "usigPublicKey"),
                entry.UsigEpoch,
                entry.UsigFirstView ?? 0,
                entry.UsigFirstCheckpoint ?? 0,
                retired.Count == 0 ? null : retired));
        }
        var checkpointInterval = document.CheckpointInterval ?? DefaultCheckpointInterval;
        var watermark = document.Watermark ?? DefaultWatermark;
        var maxClientRecords = document.MaxClientRecords ?? DefaultMaxClientRecords;
        var authorities = new byte[document.TlsCertificateAuthorities?.Count ?? 0][];
        for (var i = 0; i < authorities.Length; i++)
        {
            try
            {
                authorities[i] = Convert.FromBase64String(document.TlsCertificateAuthorities![i] ?? throw new InvalidDataException($"{source}: tlsCertificateAuthorities[{i}] is null"));
            }
            catch (FormatException)
            {
                throw new InvalidDataException($"{source}: tlsCertificateAuthorities[{i}] is not valid base64");
            }
        }
        if ((Validate(document.F, scheme, replicas, checkpointInterval, watermark, maxClientRecords) ?? ValidateAuthorities(authorities)) is { } problem)
            throw new InvalidDataException($"{source}: {problem}");
        return new ClusterManifest(document.F, scheme, replicas.OrderBy(r => r.Id).ToArray(), checkpointInterval, watermark, maxClientRecords, authorities);
    }

    /// <summary>The manifest as JSON text (the format <see cref="Parse"/> reads).</summary>
    public string ToJson()
    {
        var document = new ManifestDocument
        {
            Format = FormatVersion,
            N = N,
            F = F,
            UsigScheme = SchemeName(UsigScheme),
            CheckpointInterval = CheckpointInterval,
            Watermark = Watermark,
            MaxClientRecords = MaxClientRecords,
            Replicas = _replicas.Select(r => (ReplicaDocument?)new ReplicaDocument
            {
                Id = r.Id,
                SigningPublicKey = Convert.ToBase64String(r.SigningPublicKey),
                UsigPublicKey = r.UsigPublicKey is null ? null : Convert.ToBase64String(r.UsigPublicKey),
                UsigEpoch = r.UsigEpoch,
                UsigFirstView = r.RetiredUsigs is null && r.UsigFirstView == 0 ? null : r.UsigFirstView,
                UsigFirstCheckpoint = r.RetiredUsigs is null && r.UsigFirstCheckpoint == 0 ? null : r.UsigFirstCheckpoint,
                RetiredUsigs = r.RetiredUsigs?.Select(u => (RetiredUsigDocument?)new RetiredUsigDocument
                {
                    Epoch = u.Epoch,
                    UsigPublicKey = u.PublicKey is null ? null : Convert.ToBase64String(u.PublicKey),
                    FirstView = u.FirstView,
                    FirstCheckpoint = u.FirstCheckpoint,
                }).ToList(),
            }).ToList(),
            TlsCertificateAuthorities = _tlsAuthorities.Length == 0 ? null : _tlsAuthorities.Select(a => (string?)Convert.ToBase64String(a)).ToList(),
        };
        return JsonSerializer.Serialize(document, JsonOptions) + "\n";
    }

    /// <summary>Writes the manifest; refuses to replace an existing file unless asked (it would change identities).</summary>
    public void Save(string path, bool overwrite = false)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        using var stream = new FileStream(path, overwrite ? FileMode.Create : FileMode.CreateNew, FileAccess.Write, FileShare.None);
        stream.Write(new System.Text.UTF8Encoding(encoderShouldEmitUTF8Identifier: false).GetBytes(ToJson()));
        stream.Flush(flushToDisk: true);
    }

    public ReplicaIdentity Replica(int id) =>
        id >= 0 && id < N ? _replicas[id] : throw new ArgumentOutOfRangeException(nameof(id), $"replica {id} is not in this {N}-replica cluster");

    /// <summary>Verifier of the replicas' signatures (REPLY, REQ-VIEW-CHANGE, retransmission requests).</summary>
    public ReplicaKeyRing CreateReplicaKeyRing() => new(_replicas.Select(r => r.SigningPublicKey).ToArray());

    /// <summary>
    /// Verifier of every replica's UIs with the USIGs' public keys (ed25519 scheme). The HMAC
    /// scheme has none: only a USIG holds its secret, and a replica asks its own USIG
    /// (<see cref="CreatePreverifiedUiVerifier"/>).
    /// </summary>
    public UsigVerifier CreateUsigVerifier()
    {
        if (UsigScheme != UsigScheme.Ed25519)
            throw new InvalidOperationException("HMAC UIs are verified by the replica's own USIG, never with a key outside it: use CreatePreverifiedUiVerifier");
        return new UsigVerifier(_replicas.ToDictionary(r => r.Id, r => (IReadOnlyList<UsigVerificationKey>)
            [.. (r.RetiredUsigs ?? []).Select(u => UsigVerificationKey.Ed25519(u.Epoch, u.PublicKey!)), UsigVerificationKey.Ed25519(r.UsigEpoch, r.UsigPublicKey!)]),
            UsigEpochs());
    }

    /// <summary>HMAC scheme: a verifier that answers from what the replica's own USIG verified, under each USIG's identities.</summary>
    public PreverifiedUiVerifier CreatePreverifiedUiVerifier() => new(UsigEpochs());

    /// <summary>Every replica's USIG identities: current, retired, and which leads each view.</summary>
    public UsigEpochs UsigEpochs() => new(_replicas.ToDictionary(r => r.Id, r => r.UsigIdentities));

    public static string SchemeName(UsigScheme scheme) => scheme switch
    {
        UsigScheme.Ed25519 => "ed25519",
        UsigScheme.Hmac => "hmac",
        _ => throw new ArgumentOutOfRangeException(nameof(scheme)),
    };

    public static bool TryParseScheme(string? text, out UsigScheme scheme)
    {
        switch (text?.Trim().ToLowerInvariant())
        {
            case null or "" or "ed25519":
                scheme = UsigScheme.Ed25519; // the default when the member is absent
                return true;
            case "hmac":
                scheme = UsigScheme.Hmac;
                return true;
            default:
                scheme = default;
                return false;
        }
    }

    private static string? Validate(int f, UsigScheme scheme, IReadOnlyList<ReplicaIdentity> replicas, int checkpointInterval, int watermark, int maxClientRecords)
    {
        if (f < 0) return $"f must be >= 0, got {f}";
        if (checkpointInterval < 1) return $"checkpointInterval must be >= 1, got {checkpointInterval}";
        if (watermark < 1) return $"watermark must be >= 1, got {watermark}";
        if (maxClientRecords < 1) return $"maxClientRecords must be >= 1, got {maxClientRecords}";
        if (Encoding.MessageLimits.CheckViewChangeSpan(watermark, checkpointInterval) is { } tooLarge) return tooLarge;
        // Certificates carry f+1 messages and are bounded (MessageLimits).
        if (f + 1 > Encoding.MessageLimits.MaxViewChangesInNewView) return $"f={f} is beyond the message bounds (f+1 <= {Encoding.MessageLimits.MaxViewChangesInNewView})";
        if (!Enum.IsDefined(scheme)) return $"unknown USIG scheme {scheme}";
        var n = 2 * f + 1;
        if (replicas.Count != n) return $"f={f} needs n=2f+1={n} replicas, the manifest lists {replicas.Count}";
        var signing = new HashSet<string>(StringComparer.Ordinal);
        var usig = new HashSet<string>(StringComparer.Ordinal);
        var seen = new bool[n];
        foreach (var r in replicas)
        {
            if (r is null) return "null replica entry";
            if (r.Id < 0 || r.Id >= n) return $"replica id {r.Id} outside 0..{n - 1}";
            if (seen[r.Id]) return $"replica {r.Id} listed twice";
            seen[r.Id] = true;
            if (r.SigningPublicKey is null || !Ed25519PublicKey.TryCreate(r.SigningPublicKey, out _))
                return $"replica {r.Id}: signingPublicKey is not a valid Ed25519 public key";
            // Equal keys would let one replica's signature count as another's.
            if (!signing.Add(Convert.ToBase64String(r.SigningPublicKey))) return $"replica {r.Id}: signingPublicKey reused";
            if (r.UsigEpoch == 0) return $"replica {r.Id}: usigEpoch must be >= 1";
            if (Usig.UsigEpochs.Problem(r.UsigIdentities) is { } history) return $"replica {r.Id}: {history}";
            // Every key, current or retired, belongs to one identity: a retired key equal to another
            // identity's would let its old certificates count as the other's.
            foreach (var key in (r.RetiredUsigs ?? []).Select(u => u.PublicKey).Append(r.UsigPublicKey))
            {
                if (scheme == UsigScheme.Ed25519)
                {
                    if (key is null || !Ed25519PublicKey.TryCreate(key, out _))
                        return $"replica {r.Id}: a usigPublicKey is not a valid Ed25519 public key (required by the ed25519 scheme)";
                    if (!usig.Add(Convert.ToBase64String(key))) return $"replica {r.Id}: usigPublicKey reused";
                }
                else if (key is not null)
                {
                    return $"replica {r.Id}: usigPublicKey must be absent with the hmac scheme (its key is a shared secret)";
                }
            }
        }
        return null;
    }

    /// <summary>Each TLS CA must be a CA certificate, listed once: a leaf certificate here would let its holder's key vouch for anyone.</summary>
    private static string? ValidateAuthorities(byte[][] authorities)
    {
        if (authorities.Length > MaxTlsCertificateAuthorities)
            return $"tlsCertificateAuthorities lists {authorities.Length} CAs, at most {MaxTlsCertificateAuthorities}";
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < authorities.Length; i++)
        {
            try
            {
                using var certificate = X509CertificateLoader.LoadCertificate(authorities[i]);
                if (!certificate.Extensions.OfType<X509BasicConstraintsExtension>().Any(b => b.CertificateAuthority))
                    return $"tlsCertificateAuthorities[{i}] ({certificate.Subject}) is not a CA certificate";
                if (!seen.Add(certificate.Thumbprint)) return $"tlsCertificateAuthorities[{i}] ({certificate.Subject}) is listed twice";
            }
            catch (CryptographicException)
            {
                return $"tlsCertificateAuthorities[{i}] is not a DER X.509 certificate";
            }
        }
        return null;
    }

    private static byte[]? Base64(string? text, string source, int id, string member)
    {
        if (text is null) return null;
        try
        {
            return Convert.FromBase64String(text);
        }
        catch (FormatException)
        {
            throw new InvalidDataException($"{source}: replica {id}: {member} is not valid base64");
        }
    }

    // The JSON shape; kept apart from the validated object so that nothing half-parsed escapes.
    private sealed class ManifestDocument
    {
        public string? Format { get; set; }
        public int N { get; set; }
        public int F { get; set; }
        public string? UsigScheme { get; set; }
        public int? CheckpointInterval { get; set; }
        public int? Watermark { get; set; }
        public int? MaxClientRecords { get; set; }
        public List<ReplicaDocument?>? Replicas { get; set; }
        public List<string?>? TlsCertificateAuthorities { get; set; }
    }

    private sealed class ReplicaDocument
    {
        public int Id { get; set; }
        public string? SigningPublicKey { get; set; }
        public string? UsigPublicKey { get; set; }
        public ulong UsigEpoch { get; set; }
        public long? UsigFirstView { get; set; }
        public ulong? UsigFirstCheckpoint { get; set; }
        public List<RetiredUsigDocument?>? RetiredUsigs { get; set; }
    }

    private sealed class RetiredUsigDocument
    {
        public ulong Epoch { get; set; }
        public string? UsigPublicKey { get; set; }
        public long FirstView { get; set; }
        public ulong FirstCheckpoint { get; set; }
    }
}
