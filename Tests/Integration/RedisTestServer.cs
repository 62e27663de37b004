using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace MinBft.Tests.Integration;

/// <summary>
/// Where the Redis tests get their servers: <c>MINBFT_REDIS</c> (host:port of a running server,
/// set by .ci/run), and the <c>redis-server</c> binary to start servers of their own (one per
/// fault domain). When neither is there, the tests skip with a message, except under CI=true,
/// where they run and fail saying what is missing.
/// </summary>
internal static class RedisTestEnvironment
{
    public const string EndpointVariable = "MINBFT_REDIS";

    /// <summary>The server named by <c>MINBFT_REDIS</c>, or null.</summary>
    public static string? External { get; } = Environment.GetEnvironmentVariable(EndpointVariable) is { Length: > 0 } value ? value.Trim() : null;

    /// <summary>Full path of <c>redis-server</c>, or null.</summary>
    public static string? ServerBinary { get; } = FindServerBinary();

    public static bool IsCi { get; } = string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);

    /// <summary>Why a test that needs some Redis server cannot run, or null.</summary>
    public static string? MissingAnyServer =>
        External is null && ServerBinary is null
            ? $"no Redis: {EndpointVariable} is not set and redis-server is not on PATH (apt-get install redis-server, or run .ci/run)"
            : null;

    /// <summary>Why a test that starts its own servers cannot run, or null.</summary>
    public static string? MissingServerBinary =>
        ServerBinary is null ? "redis-server is not on PATH (apt-get install redis-server, or run .ci/run)" : null;

    /// <summary>Fails the test (with <paramref name="reason"/>) when a needed Redis is missing; skipping happens in <see cref="RedisFactAttribute"/>.</summary>
    public static void Require(string? reason)
    {
        if (reason is not null) Assert.Fail((IsCi ? "CI=true and " : "") + reason);
    }

    /// <summary>
    /// A server for tests that may share one: <c>MINBFT_REDIS</c>, or one started now (then
    /// <paramref name="owned"/> must be disposed). Tests sharing a server keep apart by service id.
    /// </summary>
    public static string SharedServer(out RedisTestServer? owned)
    {
        Require(MissingAnyServer);
        if (External is { } external)
        {
            owned = null;
            return external;
        }
        owned = RedisTestServer.Start();
        return owned.ConnectionString;
    }

    private static string? FindServerBinary()
    {
        var directories = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Concat(["/usr/bin", "/usr/local/bin", "/usr/sbin"]);
        return directories.Select(d => Path.Combine(d, "redis-server")).FirstOrDefault(File.Exists);
    }
}

/// <summary>
/// A test that needs Redis: skipped with a reason when there is none, unless CI=true (then it
/// runs and fails, see <see cref="RedisTestEnvironment.Require"/>).
/// </summary>
[AttributeUsage(AttributeTargets.Method)]
internal sealed class RedisFactAttribute : FactAttribute
{
    /// <param name="ownServers">The test starts redis-server processes itself (MINBFT_REDIS is not enough).</param>
    public RedisFactAttribute(bool ownServers = false)
    {
        var missing = ownServers ? RedisTestEnvironment.MissingServerBinary : RedisTestEnvironment.MissingAnyServer;
        if (missing is not null && !RedisTestEnvironment.IsCi) Skip = missing;
    }
}

/// <summary>
/// A <c>redis-server</c> child process on a free loopback port with its files in a temp
/// directory and no persistence; <see cref="Dispose"/> kills it by its process id.
/// </summary>
internal sealed class RedisTestServer : IDisposable
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(15);

    private readonly Process _process;
    private readonly StringBuilder _output = new();

    private RedisTestServer(Process process, int port, string directory)
    {
        _process = process;
        ProcessId = process.Id;
        Port = port;
        Directory = directory;
    }

    public int Port { get; }

    public string Directory { get; }

    public int ProcessId { get; }

    /// <summary>"127.0.0.1:port".</summary>
    public string ConnectionString => string.Create(CultureInfo.InvariantCulture, $"127.0.0.1:{Port}");

    /// <summary>Starts a server and waits until it answers PING; retries another port if the first was taken meanwhile.</summary>
    public static RedisTestServer Start()
    {
        RedisTestEnvironment.Require(RedisTestEnvironment.MissingServerBinary);
        Exception? last = null;
        for (var attempt = 0; attempt < 3; attempt++)
        {
            var server = Launch(FreePorts.Next());
            try
            {
                server.WaitUntilReady();
                return server;
            }
            catch (InvalidOperationException e)
            {
                last = e;
                server.Dispose();
            }
        }
        throw new InvalidOperationException("could not start redis-server", last);
    }

    /// <summary>Starts <paramref name="count"/> servers (one per fault domain); all or none.</summary>
    public static RedisTestServer[] StartMany(int count)
    {
        var servers = new List<RedisTestServer>();
        try
        {
            for (var i = 0; i < count; i++) servers.Add(Start());
            return [.. servers];
        }
        catch
        {
            foreach (var server in servers) server.Dispose();
            throw;
        }
    }

    private static RedisTestServer Launch(int port)
    {
        var directory = Path.Combine(Path.GetTempPath(), "minbft-redis-" + Guid.NewGuid().ToString("N"));
        System.IO.Directory.CreateDirectory(directory);
        var start = new ProcessStartInfo(RedisTestEnvironment.ServerBinary!)
        {
            WorkingDirectory = directory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in new[]
        {
            "--port", port.ToString(CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--dir", directory,
            "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning",
        })
        {
            start.ArgumentList.Add(argument);
        }
        var process = Process.Start(start) ?? throw new InvalidOperationException("redis-server did not start");
        var server = new RedisTestServer(process, port, directory);
        process.OutputDataReceived += (_, e) => server.Append(e.Data);
        process.ErrorDataReceived += (_, e) => server.Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return server;
    }

    private void Append(string? line)
    {
        if (line is null) return;
        lock (_output) _output.AppendLine(line);
    }

    private string Output()
    {
        lock (_output) return _output.ToString();
    }

    private void WaitUntilReady()
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < StartTimeout)
        {
            if (_process.HasExited)
                throw new InvalidOperationException($"redis-server on port {Port} exited with {_process.ExitCode}: {Output()}");
            if (Ping(Port)) return;
            Thread.Sleep(20);
        }
        throw new InvalidOperationException($"redis-server on port {Port} did not answer PING within {StartTimeout}: {Output()}");
    }

    /// <summary>True if a Redis server on 127.0.0.1:<paramref name="port"/> answers PING.</summary>
    public static bool Ping(int port)
    {
        try
        {
            using var client = new TcpClient();
            client.Connect(IPAddress.Loopback, port);
            client.ReceiveTimeout = 1000;
            var stream = client.GetStream();
            stream.Write("PING\r\n"u8);
            var buffer = new byte[16];
            var read = stream.Read(buffer);
            return System.Text.Encoding.ASCII.GetString(buffer, 0, read).StartsWith("+PONG", StringComparison.Ordinal);
        }
        catch (SocketException)
        {
            return false;
        }
        catch (IOException)
        {
            return false;
        }
    }

    public void Dispose()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                _process.WaitForExit(5000);
            }
        }
        catch (InvalidOperationException)
        {
            // Already gone.
        }
        _process.Dispose();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>Free TCP ports on the loopback interface (asked from the OS, not guessed).</summary>
internal static class FreePorts
{
    private static readonly HashSet<int> Handed = [];

    /// <summary>A port the OS just gave out and this process has not handed out before.</summary>
    public static int Next()
    {
        while (true)
        {
            var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            var port = ((IPEndPoint)listener.LocalEndpoint).Port;
            listener.Stop();
            lock (Handed)
            {
                if (Handed.Add(port)) return port;
            }
        }
    }
}
