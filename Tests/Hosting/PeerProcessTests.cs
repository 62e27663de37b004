using MinBft.Hosting;

namespace MinBft.Tests.Hosting;

/// <summary>How the silo reads its USIG program's CPU time from <c>/proc</c> (<see cref="PeerProcess"/>).</summary>
public sealed class PeerProcessTests
{
    [Fact]
    public void CPU_time_is_utime_plus_stime_counted_after_the_command_name_whatever_it_holds()
    {
        // Fields 14 and 15 (utime 250, stime 50 ticks); the name holds spaces and a parenthesis.
        const string stat = "4242 (dotnet (usig) x) S 1 4242 4242 0 -1 4194560 9 0 0 0 250 50 0 0 20 0 12 0 77 0 0";
        Assert.Equal(TimeSpan.FromSeconds(3), PeerProcess.ParseCpuTime(stat, ticksPerSecond: 100));
        Assert.Equal(TimeSpan.FromSeconds(0.3), PeerProcess.ParseCpuTime(stat, ticksPerSecond: 1000));
    }

    [Theory]
    [InlineData("")]
    [InlineData("4242 dotnet S 1 2 3")] // no command name in parentheses
    [InlineData("4242 (dotnet) S 1 4242 4242 0 -1 4194560 9 0 0 0 250")] // cut short before stime
    [InlineData("4242 (dotnet) S 1 4242 4242 0 -1 4194560 9 0 0 0 -250 50")] // not a tick count
    public void A_line_that_is_not_a_stat_line_gives_no_figure(string stat) =>
        Assert.Null(PeerProcess.ParseCpuTime(stat, ticksPerSecond: 100));

    [Fact]
    public void This_process_reads_as_the_runtime_counts_it()
    {
        if (!OperatingSystem.IsLinux()) return;
        var before = Environment.CpuUsage.TotalTime;
        var read = PeerProcess.CpuTimeOf(Environment.ProcessId);
        var after = Environment.CpuUsage.TotalTime;
        Assert.NotNull(read);
        // /proc counts in ticks (usually 10 ms), the runtime more finely.
        var tick = TimeSpan.FromMilliseconds(20);
        Assert.InRange(read.Value, before - tick, after + tick);
        Assert.Null(PeerProcess.CpuTimeOf(int.MaxValue)); // no such process
    }
}
