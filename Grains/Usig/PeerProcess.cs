using System.Globalization;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using MinBft.Usig;

namespace MinBft.Hosting;

/// <summary>
/// The process at the other end of a Unix domain socket (Linux: the kernel's peer credentials),
/// and the CPU time it has used, read from <c>/proc</c>. The silo uses it to count its USIG
/// program's CPU with its own (<c>ReplicaStatus.UsigProcessCpu</c>) without asking the program:
/// the trusted component gains no code for it. Null wherever the kernel or <c>/proc</c> cannot
/// say (another OS, a program in another PID namespace, a process that has exited).
/// </summary>
internal static class PeerProcess
{
    private const int ScClkTck = 2; // <unistd.h>

    private static readonly long TicksPerSecond = OperatingSystem.IsLinux() ? Math.Max(1, SysConf(ScClkTck)) : 100;

    /// <summary>The process id of <paramref name="socket"/>'s peer, as this process's PID namespace sees it.</summary>
    public static int? IdOf(Socket socket) =>
        PeerCredentials.Of(socket) is { ProcessId: > 0 } peer ? peer.ProcessId : null; // 0: outside this PID namespace

    /// <summary>User plus system CPU time process <paramref name="pid"/> has used (its threads,
    /// not its waited-for children), at the kernel's tick resolution (usually 10 ms).</summary>
    public static TimeSpan? CpuTimeOf(int pid)
    {
        if (!OperatingSystem.IsLinux()) return null;
        string stat;
        try
        {
            stat = File.ReadAllText($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/stat");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
        return ParseCpuTime(stat, TicksPerSecond);
    }

    /// <summary>utime + stime from a <c>/proc/PID/stat</c> line: fields 14 and 15, counted after the
    /// command name's closing parenthesis (the name itself may hold spaces and parentheses).</summary>
    internal static TimeSpan? ParseCpuTime(string stat, long ticksPerSecond)
    {
        var end = stat.LastIndexOf(')');
        if (end < 0) return null;
        var fields = stat[(end + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        // fields[0] is field 3 (state), so utime (14) and stime (15) are fields[11] and fields[12].
        if (fields.Length < 13
            || !long.TryParse(fields[11], NumberStyles.None, CultureInfo.InvariantCulture, out var user)
            || !long.TryParse(fields[12], NumberStyles.None, CultureInfo.InvariantCulture, out var system))
            return null;
        return TimeSpan.FromSeconds((user + system) / (double)ticksPerSecond);
    }

    // DllImport with blittable arguments: no generated (unsafe) marshalling in this assembly.
    [DllImport("libc", EntryPoint = "sysconf")]
    private static extern long SysConf(int name);
}
