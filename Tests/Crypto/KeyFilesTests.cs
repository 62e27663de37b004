using MinBft.Crypto;
using Xunit.Abstractions;

namespace MinBft.Tests.Crypto;

public sealed class KeyFilesTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("minbft-keys-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string PathOf(string name) => Path.Combine(_dir, name);

    [Fact]
    public void PrivateKeyFile_RoundTrips_AndIsOwnerOnlyOnUnix()
    {
        var keys = Ed25519KeyPair.Generate(TestRandom.Create(output).SecureRandom());
        var path = PathOf("replica0.key");
        KeyFiles.SavePrivateKey(path, keys);

        var loaded = KeyFiles.LoadPrivateKey(path);
        Assert.Equal(keys.PrivateKey, loaded.PrivateKey);
        Assert.Equal(keys.PublicKey, loaded.PublicKey);
        Assert.StartsWith(KeyFiles.PrivateKeyHeader + "\n", File.ReadAllText(path));
        if (!OperatingSystem.IsWindows())
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
    }

    [Fact]
    public void PublicKeyAndHmacKeyFiles_RoundTrip()
    {
        var random = TestRandom.Create(output);
        var keys = Ed25519KeyPair.Generate(random.SecureRandom());
        KeyFiles.SavePublicKey(PathOf("replica0.pub"), keys.PublicKey);
        Assert.Equal(keys.PublicKey, KeyFiles.LoadPublicKey(PathOf("replica0.pub")));

        var secret = random.Bytes(KeyFiles.HmacKeyLength);
        KeyFiles.SaveHmacKey(PathOf("usig.hmac"), secret);
        Assert.Equal(secret, KeyFiles.LoadHmacKey(PathOf("usig.hmac")));
        if (!OperatingSystem.IsWindows())
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(PathOf("usig.hmac")));
    }

    [Fact]
    public void Save_RefusesToOverwriteAnExistingKeyUnlessAsked()
    {
        var first = Ed25519KeyPair.Generate(new Random(1).SecureRandom());
        var second = Ed25519KeyPair.Generate(new Random(2).SecureRandom());
        var path = PathOf("k");
        KeyFiles.SavePrivateKey(path, first);
        Assert.Throws<IOException>(() => KeyFiles.SavePrivateKey(path, second));
        Assert.Equal(first.PublicKey, KeyFiles.LoadPrivateKey(path).PublicKey);

        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(path, (UnixFileMode)0b110_100_100);
        KeyFiles.SavePrivateKey(path, second, overwrite: true);
        Assert.Equal(second.PublicKey, KeyFiles.LoadPrivateKey(path).PublicKey);
        if (!OperatingSystem.IsWindows())
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
    }

    [Fact]
    public void CommentsAndBlankLinesAndCrLf_AreAccepted()
    {
        var keys = Ed25519KeyPair.Generate(new Random(4).SecureRandom());
        var text = "# replica 0\r\n\r\n" + KeyFiles.PrivateKeyHeader + "\r\n" + Convert.ToBase64String(keys.PrivateKey) + "\r\n\r\n";
        File.WriteAllText(PathOf("k"), text);
        Assert.Equal(keys.PublicKey, KeyFiles.LoadPrivateKey(PathOf("k")).PublicKey);
    }

    public static TheoryData<string, string> MalformedPrivateKeyFiles()
    {
        var valid = Convert.ToBase64String(new byte[32]);
        return new()
        {
            { "", "empty" },
            { "\n\n", "empty" },
            { valid + "\n", "expected header" },
            { KeyFiles.PublicKeyHeader + "\n" + valid + "\n", "expected header" },
            { KeyFiles.PrivateKeyHeader + "\n", "exactly one base64 line" },
            { KeyFiles.PrivateKeyHeader + "\n" + valid + "\n" + valid + "\n", "exactly one base64 line" },
            { KeyFiles.PrivateKeyHeader + "\nnot*base64!\n", "not valid base64" },
            { KeyFiles.PrivateKeyHeader + "\n" + Convert.ToBase64String(new byte[31]) + "\n", "31 bytes, expected 32" },
            { KeyFiles.PrivateKeyHeader + "\n" + Convert.ToBase64String(new byte[64]) + "\n", "64 bytes, expected 32" },
        };
    }

    [Theory]
    [MemberData(nameof(MalformedPrivateKeyFiles))]
    public void MalformedPrivateKeyFile_ThrowsInvalidDataNamingTheFileAndTheProblem(string content, string expected)
    {
        var path = PathOf("bad.key");
        File.WriteAllText(path, content);
        var error = Assert.Throws<InvalidDataException>(() => KeyFiles.LoadPrivateKey(path));
        Assert.Contains(path, error.Message);
        Assert.Contains(expected, error.Message);
    }

    [Fact]
    public void PublicKeyFileHoldingANonPoint_IsRejected()
    {
        File.WriteAllText(PathOf("bad.pub"), KeyFiles.PublicKeyHeader + "\n" + Convert.ToBase64String(Enumerable.Repeat((byte)0xff, 32).ToArray()) + "\n");
        Assert.Throws<InvalidDataException>(() => KeyFiles.LoadPublicKey(PathOf("bad.pub")));
    }

    [Fact]
    public void MissingOrHugeFile_FailsClearly()
    {
        Assert.Throws<FileNotFoundException>(() => KeyFiles.LoadPrivateKey(PathOf("missing")));
        File.WriteAllBytes(PathOf("huge"), new byte[100_000]);
        Assert.Throws<InvalidDataException>(() => KeyFiles.LoadPrivateKey(PathOf("huge")));
    }
}
