using System.Diagnostics;
using System.Globalization;

namespace MinBft.Tests.Integration;

/// <summary>
/// One silo host (<c>MinBft.Silo.dll</c>, built with the tests and copied next to them) in a
/// process of its own. Its output goes to a log file. <see cref="Kill"/> is a kill -9;
/// <see cref="Dispose"/> kills the process tree by its id. Nothing is built at test time.
/// </summary>
internal sealed class SiloProcess : IDisposable
{
    private readonly string _logPath;
    private readonly StreamWriter _log;
    private readonly object _logGate = new();
    private Process? _process;
    private long _linesWritten;

    public SiloProcess(string name, IReadOnlyList<string> arguments, IReadOnlyDictionary<string, string> environment, string workingDirectory)
    {
        Name = name;
        Arguments = arguments;
        Environment = environment;
        WorkingDirectory = workingDirectory;
        Directory.CreateDirectory(workingDirectory);
        _logPath = Path.Combine(workingDirectory, name + ".log");
        _log = new StreamWriter(_logPath, append: true) { AutoFlush = true };
    }

    public string Name { get; }

    public IReadOnlyList<string> Arguments { get; }

    public IReadOnlyDictionary<string, string> Environment { get; }

    public string WorkingDirectory { get; }

    /// <summary>Added to <see cref="Arguments"/> on the first start only (e.g. initialising the USIG).</summary>
    public IReadOnlyList<string> FirstStartArguments { get; init; } = [];

    /// <summary>Lines its processes have written so far (a starting silo's progress).</summary>
    public long LinesWritten => Interlocked.Read(ref _linesWritten);

    /// <summary>Every process id this silo has had (restarts included).</summary>
    public List<int> ProcessIds { get; } = [];

    public bool IsRunning => _process is { HasExited: false };

    /// <summary>The program run (default: <see cref="SiloAssembly"/>), e.g. the CLI for <c>demo</c>.</summary>
    public string? Program { get; init; }

    /// <summary>The exit code once the process ended by itself; null while it runs or after a kill.</summary>
    public int? ExitCode => _process is { HasExited: true } p ? p.ExitCode : null;

    /// <summary>The silo host next to the test assembly (the Tests project references the Silo project).</summary>
    public static string SiloAssembly
    {
        get
        {
            var path = Path.Combine(AppContext.BaseDirectory, "MinBft.Silo.dll");
            if (!File.Exists(path)) Assert.Fail($"{path} is missing: build the solution (the Tests project references Silo/Silo.csproj)");
            return path;
        }
    }

    /// <summary>The dotnet host that runs the tests (the SDK sets DOTNET_HOST_PATH for child processes).</summary>
    private static string DotnetHost =>
        System.Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host)
            ? host
            : System.Environment.ProcessPath is { } self && Path.GetFileNameWithoutExtension(self) == "dotnet" ? self : "dotnet";

    public void Start()
    {
        if (IsRunning) throw new InvalidOperationException($"{Name} is already running");
        var start = new ProcessStartInfo(DotnetHost)
        {
            WorkingDirectory = WorkingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(Program ?? SiloAssembly);
        foreach (var argument in ProcessIds.Count == 0 ? Arguments.Concat(FirstStartArguments) : Arguments) start.ArgumentList.Add(argument);
        foreach (var (key, value) in Environment) start.Environment[key] = value;
        var process = Process.Start(start) ?? throw new InvalidOperationException($"{Name} did not start");
        process.OutputDataReceived += (_, e) => Write(e.Data);
        process.ErrorDataReceived += (_, e) => Write(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _process = process;
        ProcessIds.Add(process.Id);
        Write($"----- started pid {process.Id}: {string.Join(' ', Arguments)}");
    }

    /// <summary>kill -9 (SIGKILL): no shutdown, no flush, the way a crashed machine stops.</summary>
    public void Kill()
    {
        var process = _process ?? throw new InvalidOperationException($"{Name} is not running");
        Write($"----- SIGKILL pid {process.Id}");
        process.Kill(entireProcessTree: true);
        if (!process.WaitForExit(10_000)) throw new TimeoutException($"{Name} (pid {process.Id}) did not exit after SIGKILL");
        process.Dispose();
        _process = null;
    }

    /// <summary>The last lines of the log, for a failure message.</summary>
    public string Tail(int lines = 15)
    {
        lock (_logGate)
        {
            _log.Flush();
        }
        try
        {
            using var stream = new FileStream(_logPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            using var reader = new StreamReader(stream);
            var all = reader.ReadToEnd().Split('\n');
            return string.Join('\n', all.TakeLast(lines));
        }
        catch (IOException e)
        {
            return $"(log unreadable: {e.Message})";
        }
    }

    private void Write(string? line)
    {
        if (line is null) return;
        Interlocked.Increment(ref _linesWritten);
        lock (_logGate)
        {
            try
            {
                _log.WriteLine(line);
            }
            catch (ObjectDisposedException)
            {
            }
        }
    }

    public void Dispose()
    {
        if (_process is { } process)
        {
            try
            {
                if (!process.HasExited)
                {
                    process.Kill(entireProcessTree: true);
                    process.WaitForExit(10_000);
                }
            }
            catch (InvalidOperationException)
            {
            }
            process.Dispose();
            _process = null;
        }
        lock (_logGate) _log.Dispose();
    }

    public override string ToString() =>
        string.Create(CultureInfo.InvariantCulture, $"{Name} (pids {string.Join(",", ProcessIds)})");
}
