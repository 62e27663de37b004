using System.Text.RegularExpressions;
using MinBft.Client.Cli;

namespace MinBft.Tests.Client;

/// <summary>The demo's logic end to end: its own LocalCluster (f=1, free ports), several clients, all checks.</summary>
public sealed class DemoEndToEndTests
{
    [Fact]
    public async Task Demo_CompletesRequests_AndReplicasAgreeOnTheExpectedState()
    {
        var output = new StringWriter();
        var progress = new StringWriter();
        var console = new CliConsole(output, progress, ErrorIsTerminal: false);
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));

        var outcome = await new DemoRunner(new DemoCommand(F: 1, Requests: 40, Clients: 3), console).RunAsync(timeout.Token);

        Assert.True(outcome.Ok, outcome.Summary + "\n" + progress);
        Assert.Matches(new Regex("^demo ok: requests=40 replicas=3 view=[0-9]+ digest=[0-9A-F]{64} usig=in-process \\(not isolated\\)$"), outcome.Summary);
        Assert.Contains("40/40 requests", progress.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Demo_with_a_crashed_primary_changes_view_and_the_live_replicas_agree()
    {
        var output = new StringWriter();
        var progress = new StringWriter();
        var console = new CliConsole(output, progress, ErrorIsTerminal: false);
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));

        var runner = new DemoRunner(new DemoCommand(F: 1, Requests: 60, Clients: 3, CrashPrimary: true), console);
        var outcome = await runner.RunAsync(timeout.Token);

        Assert.True(outcome.Ok, outcome.Summary + "\n" + progress);
        Assert.Matches(new Regex("^demo ok: requests=60 replicas=2 view=[1-9][0-9]* digest=[0-9A-F]{64} usig=in-process \\(not isolated\\)$"), outcome.Summary);
        Assert.True(outcome.View >= 1, "the live replicas left the crashed primary's view");
        Assert.NotNull(runner.LongestPauseAfterCrash());
        // It stopped whichever replica was primary then, and says which.
        Assert.Matches(new Regex("demo: the primary, replica [0-9]+ \\(view [0-9]+\\), stopped with its silo"), progress.ToString());
    }
}
