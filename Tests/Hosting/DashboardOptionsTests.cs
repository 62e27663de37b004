using Microsoft.Extensions.Configuration;
using MinBft.Silo;
using MinBft.Silo.Dashboard;
using Program = MinBft.Silo.Program;

namespace MinBft.Tests.Hosting;

/// <summary>Turning the dashboard on (flag, configuration) and what the status page renders for replicas that are not fine.</summary>
public sealed class DashboardOptionsTests
{
    private static readonly Program.SiloArguments NoFlags = new(null, null, null, null, null, null, null);

    private static IConfiguration Configuration(params (string Key, string Value)[] settings) =>
        new ConfigurationBuilder().AddInMemoryCollection(settings.Select(s => KeyValuePair.Create(s.Key, (string?)s.Value))).Build();

    [Fact]
    public void The_dashboard_is_off_by_default_and_on_with_the_flag_or_the_configuration()
    {
        Assert.False(Program.ResolveHost(Configuration(), NoFlags).Host.Dashboard);
        Assert.True(Program.ResolveHost(Configuration(), NoFlags with { Dashboard = true }).Host.Dashboard);
        Assert.True(Program.ResolveHost(Configuration(("MinBft:Host:Dashboard", "true")), NoFlags).Host.Dashboard);
    }

    [Fact]
    public void Both_silo_modes_accept_the_dashboard_flag()
    {
        Assert.Empty(Program.BuildRootCommand().Parse(["local", "--dashboard", "--http-port", "8080"]).Errors);
        Assert.Empty(Program.BuildRootCommand().Parse(["--fault-domain", "0", "--manifest", "m.json", "--dashboard"]).Errors);
        Assert.NotEmpty(Program.BuildRootCommand().Parse(["local", "--http-port", "0"]).Errors);
    }

    [Fact]
    public void Metrics_port_names_the_http_port_that_serves_metrics_and_health_in_both_silo_modes()
    {
        foreach (var args in new[] { new[] { "local", "--metrics-port", "9100" }, ["--fault-domain", "0", "--manifest", "m.json", "--metrics-port", "9100"] })
        {
            var parse = Program.BuildRootCommand().Parse(args);
            Assert.Empty(parse.Errors);
            Assert.Equal(9100, parse.GetValue<int?>("--http-port"));
        }
        Assert.NotEmpty(Program.BuildRootCommand().Parse(["local", "--metrics-port", "0"]).Errors);
    }

    [Fact]
    public void The_status_page_shows_an_unreachable_replica_with_its_reason_and_a_halted_one_escaped()
    {
        var halted = new ReplicaStatus(1, 3, 1, 40, "digest", new Dictionary<string, long> { ["BadUi"] = 2 }, 0, 5, 0, 41, 0, 0,
            "USIG counter <gap>", "history", 32);
        var html = StatusPage.Render(
            [new ReplicaReading(0, null, "no answer within 2 s"), new ReplicaReading(1, halted, null)],
            [new ThroughputSample(DateTimeOffset.UnixEpoch, 10, 2, 5.5, 9)], DateTimeOffset.UnixEpoch.AddSeconds(1), orleansDashboard: false);

        Assert.Matches("<tr id=\"replica-0\" class=\"unreachable\">.*unreachable.*no answer within 2 s.*</tr>", html);
        Assert.Contains("<tr id=\"replica-1\" class=\"halted\">", html, StringComparison.Ordinal);
        Assert.Contains("<td class=\"state text\">halted</td><td class=\"view\">3</td>", html, StringComparison.Ordinal);
        Assert.Contains("<td class=\"executed\">40</td><td class=\"checkpoint\">32</td><td class=\"usig\">41</td><td class=\"sentlog\">5</td>", html, StringComparison.Ordinal);
        Assert.Contains("BadUi: 2", html, StringComparison.Ordinal);
        Assert.Contains("USIG counter &lt;gap&gt;", html, StringComparison.Ordinal);
        Assert.DoesNotContain("/dashboard/", html, StringComparison.Ordinal);
        Assert.Contains("requests 10/s", html, StringComparison.Ordinal);
        Assert.Contains("mean 5.5 ms", html, StringComparison.Ordinal);
    }
}
