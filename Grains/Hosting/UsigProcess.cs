using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging;

namespace MinBft.Hosting;

/// <summary>Where one fault domain's USIG program keeps its counter file and listens.</summary>
/// <param name="Program">MinBft.Usig.dll.</param>
/// <param name="ReplicaId">The replica whose USIG it is.</param>
/// <param name="Epoch">The USIG epoch of the manifest (<c>init</c> and <c>serve</c> check it).</param>
/// <param name="StatePath">The counter file.</param>
/// <param name="KeyPath">The USIG key file (<c>domain-i/usig/...</c>): read by the program only.</param>
/// <param name="SocketPath">The Unix domain socket it listens on (mode 0600).</param>
public sealed record UsigProgramSettings(string Program, int ReplicaId, ulong Epoch, string StatePath, string KeyPath, string SocketPath)
{
    /// <summary>The USIG program built with (and copied next to) the silo host and the CLI.</summary>
    public static string DefaultProgram => Path.Combine(AppContext.BaseDirectory, "MinBft.Usig.dll");

    /// <summary>The only user id the program admits; null: this process's (the silo's, when it starts them).</summary>
    public uint? AllowedUid { get; init; }
}

/// <summary>
/// Fault domain i's USIG program as a child process (<c>Silo local --isolated-usig</c>,
/// <c>demo --isolated-usig</c>, tests), stopped by its process id. It admits connections from this
/// process's user only. Its output goes to the logger it is started with.
/// </summary>
public sealed partial class UsigProcess : IDisposable
{
    private readonly Process _process;
    private readonly ILogger _logger;

    private readonly System.Collections.Concurrent.ConcurrentQueue<string> _output;

    private UsigProcess(Process process, UsigProgramSettings settings, ILogger logger, System.Collections.Concurrent.ConcurrentQueue<string> output)
    {
        _process = process;
        _output = output;
        Settings = settings;
        _logger = logger;
    }

    public UsigProgramSettings Settings { get; }

    public int ProcessId => _process.Id;

    public bool HasExited => _process.HasExited;

    /// <summary>What the program has written so far (stdout and stderr, in arrival order).</summary>
    public IReadOnlyCollection<string> Output => _output;

    /// <summary><c>MinBft.Usig init</c>: a counter file for the settings' epoch (first start of an epoch).</summary>
    public static async Task InitializeAsync(UsigProgramSettings settings, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(settings);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(settings.StatePath))!);
        using var process = Start(settings, "init", "--state", settings.StatePath, "--replica", Invariant(settings.ReplicaId), "--epoch", Invariant(settings.Epoch));
        var output = process.StandardOutput.ReadToEndAsync(cancellationToken);
        var error = process.StandardError.ReadToEndAsync(cancellationToken);
        await process.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"USIG {settings.ReplicaId}: 'init' failed (exit {process.ExitCode}): {await error.ConfigureAwait(false)}{await output.ConfigureAwait(false)}".Trim());
    }

    /// <summary><c>MinBft.Usig serve</c>; returns once it listens (or throws with what it said when it stops first).</summary>
    public static async Task<UsigProcess> StartAsync(UsigProgramSettings settings, ILogger logger, TimeSpan timeout, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(logger);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(settings.SocketPath))!);
        var process = Start(settings, "serve", "--state", settings.StatePath, "--replica", Invariant(settings.ReplicaId), "--epoch", Invariant(settings.Epoch),
            "--key", settings.KeyPath, "--socket", settings.SocketPath, "--allowed-uid", Invariant(settings.AllowedUid ?? CurrentUid()));
        var listening = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var said = new System.Collections.Concurrent.ConcurrentQueue<string>();
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            said.Enqueue(e.Data);
            LogOutput(logger, settings.ReplicaId, process.Id, e.Data);
            if (e.Data.Contains(" listening on ", StringComparison.Ordinal)) listening.TrySetResult();
        };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            said.Enqueue(e.Data);
            LogOutput(logger, settings.ReplicaId, process.Id, e.Data);
        };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var usig = new UsigProcess(process, settings, logger, said);
        try
        {
            var exited = process.WaitForExitAsync(cancellationToken);
            var first = await Task.WhenAny(listening.Task, exited).WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
            if (first != listening.Task)
                throw new InvalidOperationException($"USIG {settings.ReplicaId} stopped before listening (exit {process.ExitCode}): {string.Join(" ", said)}");
            return usig;
        }
        catch
        {
            usig.Dispose();
            throw;
        }
    }

    /// <summary>kill -9: no shutdown, the way a crash stops it.</summary>
    public void Kill()
    {
        if (_process.HasExited) return;
        LogKilled(_logger, Settings.ReplicaId, _process.Id);
        _process.Kill();
        _process.WaitForExit(10_000);
    }

    public void Dispose()
    {
        try
        {
            Kill();
        }
        catch (InvalidOperationException)
        {
            // Never started or already reaped.
        }
        _process.Dispose();
    }

    /// <summary>This process's user id (Linux: /proc/self/status), the one the USIG program admits.</summary>
    public static uint CurrentUid()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("Uid:", StringComparison.Ordinal))
                return uint.Parse(line.Split((char[])['\t', ' '], StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
        throw new PlatformNotSupportedException("no Uid line in /proc/self/status: the isolated USIG needs Linux");
    }

    private static Process Start(UsigProgramSettings settings, params string[] arguments)
    {
        if (!File.Exists(settings.Program)) throw new FileNotFoundException($"the USIG program {settings.Program} is missing (build Usig/Program)", settings.Program);
        var start = new ProcessStartInfo(DotnetHost)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(settings.Program);
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        return Process.Start(start) ?? throw new InvalidOperationException($"USIG {settings.ReplicaId} did not start");
    }

    /// <summary>The dotnet host running this process (or the one the SDK names, or the one on PATH).</summary>
    private static string DotnetHost =>
        Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host)
            ? host
            : Environment.ProcessPath is { } self && Path.GetFileNameWithoutExtension(self) == "dotnet" ? self : "dotnet";

    private static string Invariant(IFormattable value) => value.ToString(null, CultureInfo.InvariantCulture);

    [LoggerMessage(Level = LogLevel.Information, Message = "USIG {ReplicaId} (pid {ProcessId}): {Line}")]
    private static partial void LogOutput(ILogger logger, int replicaId, int processId, string line);

    [LoggerMessage(Level = LogLevel.Warning, Message = "USIG {ReplicaId} (pid {ProcessId}): killed")]
    private static partial void LogKilled(ILogger logger, int replicaId, int processId);
}
