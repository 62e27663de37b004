using System.Text;

namespace MinBft.Crypto;

/// <summary>
/// Key files. Format (UTF-8 text): one header line naming the kind of key and the format
/// version, then one line of standard base64 holding the raw key bytes; blank lines and lines
/// starting with '#' are ignored. Example:
/// <code>
/// MINBFT ED25519 PRIVATE KEY V1
/// nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=
/// </code>
/// Kinds: Ed25519 private key (32-byte RFC 8032 seed), Ed25519 public key (32 bytes), HMAC-SHA256
/// USIG key (32 bytes). Secret files are created with Unix mode 600 (owner read/write only):
/// the private key is what makes a replica (or a USIG) that replica, and it must be readable only
/// by its own fault domain. Save refuses to overwrite unless asked: silently replacing a key
/// changes an identity. A malformed file throws <see cref="InvalidDataException"/> naming the file.
/// </summary>
public static class KeyFiles
{
    public const string PrivateKeyHeader = "MINBFT ED25519 PRIVATE KEY V1";
    public const string PublicKeyHeader = "MINBFT ED25519 PUBLIC KEY V1";
    public const string HmacKeyHeader = "MINBFT HMAC-SHA256 USIG KEY V1";
    public const int HmacKeyLength = 32;

    public static void SavePrivateKey(string path, Ed25519KeyPair keys, bool overwrite = false)
    {
        ArgumentNullException.ThrowIfNull(keys);
        Write(path, Format(PrivateKeyHeader, keys.PrivateKey), secret: true, overwrite);
    }

    public static Ed25519KeyPair LoadPrivateKey(string path) =>
        Ed25519KeyPair.FromPrivateKey(Read(path, PrivateKeyHeader, Ed25519KeyPair.PrivateKeyLength));

    public static void SavePublicKey(string path, ReadOnlySpan<byte> publicKey, bool overwrite = false)
    {
        if (!Ed25519PublicKey.TryCreate(publicKey, out _))
            throw new ArgumentException("not a valid Ed25519 public key", nameof(publicKey));
        Write(path, Format(PublicKeyHeader, publicKey), secret: false, overwrite);
    }

    /// <summary>The 32-byte public key; also rejects bytes that are not a valid Ed25519 point.</summary>
    public static byte[] LoadPublicKey(string path)
    {
        var key = Read(path, PublicKeyHeader, Ed25519KeyPair.PublicKeyLength);
        return Ed25519PublicKey.TryCreate(key, out _)
            ? key
            : throw new InvalidDataException($"{path}: not a valid Ed25519 public key");
    }

    public static void SaveHmacKey(string path, ReadOnlySpan<byte> key, bool overwrite = false)
    {
        if (key.Length != HmacKeyLength)
            throw new ArgumentException($"an HMAC USIG key is {HmacKeyLength} bytes", nameof(key));
        Write(path, Format(HmacKeyHeader, key), secret: true, overwrite);
    }

    public static byte[] LoadHmacKey(string path) => Read(path, HmacKeyHeader, HmacKeyLength);

    /// <summary>The file text for <paramref name="key"/> under <paramref name="header"/>.</summary>
    public static string Format(string header, ReadOnlySpan<byte> key) =>
        header + "\n" + Convert.ToBase64String(key) + "\n";

    /// <summary>Parses file text; <paramref name="source"/> only names the origin in error messages.</summary>
    public static byte[] Parse(string text, string expectedHeader, int expectedLength, string source = "key file")
    {
        ArgumentNullException.ThrowIfNull(text);
        var lines = text.Split('\n')
            .Select(l => l.Trim())
            .Where(l => l.Length > 0 && !l.StartsWith('#'))
            .ToArray();
        if (lines.Length == 0) throw new InvalidDataException($"{source}: empty");
        if (lines[0] != expectedHeader)
            throw new InvalidDataException($"{source}: expected header '{expectedHeader}', found '{Truncate(lines[0])}'");
        if (lines.Length != 2)
            throw new InvalidDataException($"{source}: expected exactly one base64 line after the header, found {lines.Length - 1}");
        byte[] key;
        try
        {
            key = Convert.FromBase64String(lines[1]);
        }
        catch (FormatException)
        {
            throw new InvalidDataException($"{source}: key line is not valid base64");
        }
        if (key.Length != expectedLength)
            throw new InvalidDataException($"{source}: key is {key.Length} bytes, expected {expectedLength}");
        return key;
    }

    private static byte[] Read(string path, string header, int length)
    {
        ArgumentNullException.ThrowIfNull(path);
        // A key file is a few lines; refuse to read something huge by mistake.
        var info = new FileInfo(path);
        if (!info.Exists) throw new FileNotFoundException($"key file not found: {path}", path);
        if (info.Length > 4096) throw new InvalidDataException($"{path}: too large to be a key file ({info.Length} bytes)");
        return Parse(File.ReadAllText(path, System.Text.Encoding.UTF8), header, length, path);
    }

    private static void Write(string path, string text, bool secret, bool overwrite)
    {
        ArgumentNullException.ThrowIfNull(path);
        var options = new FileStreamOptions
        {
            Mode = overwrite ? FileMode.Create : FileMode.CreateNew,
            Access = FileAccess.Write,
            Share = FileShare.None,
        };
        if (secret && !OperatingSystem.IsWindows())
        {
            // Created 600 from the first byte, so there is no window in which the file is
            // readable by others; an existing file keeps its mode, hence the explicit set below.
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }
        using (var stream = new FileStream(path, options))
        {
            if (secret && !OperatingSystem.IsWindows())
                File.SetUnixFileMode(stream.SafeFileHandle, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            var bytes = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false).GetBytes(text);
            stream.Write(bytes);
            stream.Flush(flushToDisk: true);
        }
    }

    private static string Truncate(string s) => s.Length <= 40 ? s : s[..40] + "...";
}
