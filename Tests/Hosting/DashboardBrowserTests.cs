using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using MinBft.Client;
using MinBft.Hosting;
using MinBft.Silo.Dashboard;
using Orleans.Dashboard;
using Xunit.Abstractions;

using MinBft.Tests.Client;

namespace MinBft.Tests.Hosting;

/// <summary>
/// The dashboard of <c>Silo local --dashboard</c> (issue 12) in a real browser: an in-process
/// f=1 cluster, its local HTTP endpoint, a few requests, then headless Chromium renders
/// <c>/minbft</c> and the Orleans dashboard. Chromium is required: <c>.ci/run</c> installs it,
/// and without it this test fails rather than skipping.
/// </summary>
public sealed partial class DashboardBrowserTests(ITestOutputHelper output) : IAsyncLifetime
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(90);
    private readonly string _directory = Directory.CreateTempSubdirectory("minbft-dashboard-").FullName;

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync()
    {
        Directory.Delete(_directory, recursive: true);
        return Task.CompletedTask;
    }

    [Fact]
    public async Task Local_cluster_dashboard_renders_every_replicas_status_in_chromium_and_serves_the_Orleans_dashboard()
    {
        var chromium = FindChromium();
        var options = new LocalClusterOptions
        {
            F = 1,
            DataDirectory = Path.Combine(_directory, "data"),
            ConfigureSilo = (_, silo) => silo.AddDashboard(),
        }.UseFreePorts();
        await using var cluster = new LocalCluster(options);
        await cluster.StartAsync();
        await cluster.WaitForReplicasAsync(TimeSpan.FromSeconds(60));
        // Disposed before the cluster (await using runs in reverse order).
        await using var endpoint = new LocalHttpEndpoint.Stopper(
            await LocalHttpEndpoint.StartAsync(cluster, options, port: null, dashboard: true, CancellationToken.None));
        var baseUrl = BaseUrl(endpoint);
        output.WriteLine("dashboard at " + baseUrl);

        const int requests = 12;
        using (var client = new MinBftClient(cluster.Client, cluster.Manifest, new MinBftClientOptions()))
        {
            var kv = new KeyValueClient(client);
            for (var i = 0; i < requests; i++)
                await kv.PutAsync(string.Create(CultureInfo.InvariantCulture, $"k{i}"), System.Text.Encoding.UTF8.GetBytes("v"));
        }

        // All three replicas executed everything (the slowest one may trail the client's quorum).
        ReplicaStatus?[] statuses = [];
        await Conditions.WaitUntilAsync(async () =>
        {
            statuses = await cluster.GetStatusesAsync(TimeSpan.FromSeconds(5));
            return (AllCaughtUp(statuses), MinBft.Silo.Program.FormatStatusLine(statuses));
        }, Deadline, "the replicas converge");

        // The sampler measured the requests: throughput and a commit latency from the MinBft meter.
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        await Conditions.WaitUntilAsync(async () =>
        {
            using var json = JsonDocument.Parse(await http.GetStringAsync(baseUrl + DashboardEndpoints.StatusJsonPath));
            var history = json.RootElement.GetProperty("history");
            var sampled = history.EnumerateArray().Any(s => s.GetProperty("requestsPerSecond").GetDouble() > 0)
                && history.EnumerateArray().Any(s => s.GetProperty("commitLatencyMs").ValueKind == JsonValueKind.Number);
            return (sampled, history.ToString());
        }, Deadline, "a throughput and a commit latency sample in /minbft/status.json");

        // The browser's rendering of /minbft shows each replica as GetStatus reports it. Compared
        // only across a render during which no status changed: a USIG counter or checkpoint can
        // still move after execution has converged (a late CHECKPOINT is certified too).
        var dom = "";
        await Conditions.WaitUntilAsync(async () =>
        {
            var before = await cluster.GetStatusesAsync(TimeSpan.FromSeconds(5));
            dom = await DumpDomAsync(chromium, baseUrl + DashboardEndpoints.StatusPath, virtualTimeMs: null);
            statuses = await cluster.GetStatusesAsync(TimeSpan.FromSeconds(5));
            var still = before.Select(Shown).SequenceEqual(statuses.Select(Shown));
            return (still, string.Join("; ", statuses.Select(Shown)));
        }, Deadline, "a rendering while no replica's status changed");
        var rows = ReplicaRows().Matches(dom).ToDictionary(m => int.Parse(m.Groups["id"].Value, CultureInfo.InvariantCulture), m => m.Groups["cells"].Value);
        Assert.True(rows.Count == cluster.N, $"expected {cluster.N} replica rows in the rendered page, found {rows.Count}:\n{dom}");
        foreach (var status in statuses)
        {
            var row = rows[status!.ReplicaId];
            Assert.Equal(status.View.ToString(CultureInfo.InvariantCulture), Cell(row, "view"));
            Assert.Equal(status.Primary.ToString(CultureInfo.InvariantCulture), Cell(row, "primary"));
            Assert.Equal(status.ExecutedSequence.ToString(CultureInfo.InvariantCulture), Cell(row, "executed"));
            Assert.Equal(status.StableCheckpoint.ToString(CultureInfo.InvariantCulture), Cell(row, "checkpoint"));
            Assert.Equal(status.LastUiCounter.ToString(CultureInfo.InvariantCulture), Cell(row, "usig"));
            Assert.Equal(status.ReplicaId == status.Primary ? "primary" : "backup", Cell(row, "state"));
        }
        Assert.Contains("<figure id=\"throughput\">", dom, StringComparison.Ordinal);
        Assert.Contains("<figure id=\"latency\">", dom, StringComparison.Ordinal);
        Assert.Contains("<polyline", dom, StringComparison.Ordinal);

        // The Orleans dashboard: its page and its API, which counts the cluster's four silos
        // (membership/gateway + three fault domains) once their counters are reported.
        var page = await http.GetAsync(baseUrl + DashboardEndpoints.OrleansDashboardPath + "/");
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Contains("<title>Orleans Dashboard</title>", await page.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(baseUrl + DashboardEndpoints.OrleansDashboardPath + "/index.min.js")).StatusCode);
        await Conditions.WaitUntilAsync(async () =>
        {
            using var counters = JsonDocument.Parse(await http.GetStringAsync(baseUrl + DashboardEndpoints.OrleansDashboardPath + "/DashboardCounters"));
            var hosts = counters.RootElement.EnumerateObject().First(p => p.Name.Equals("totalActiveHostCount", StringComparison.OrdinalIgnoreCase)).Value.GetInt32();
            return (hosts == cluster.N + 1, $"{hosts} active hosts");
        }, Deadline, $"the Orleans dashboard counts {cluster.N + 1} active silos");
        var orleansDom = await DumpDomAsync(chromium, baseUrl + DashboardEndpoints.OrleansDashboardPath + "/", virtualTimeMs: 5000);
        Assert.Contains("Orleans Dashboard", orleansDom, StringComparison.Ordinal);
        Assert.Contains("Overview", orleansDom, StringComparison.Ordinal);
    }

    private static bool AllCaughtUp(ReplicaStatus?[] statuses) =>
        statuses.All(s => s is not null && s.Halted is null && s.ExecutedSequence > 0)
        && statuses.Select(s => s!.ExecutedSequence).Distinct().Count() == 1;

    private static string BaseUrl(LocalHttpEndpoint.Stopper endpoint)
    {
        var url = endpoint.Urls.Single();
        Assert.StartsWith("http://127.0.0.1:", url, StringComparison.Ordinal);
        return url.TrimEnd('/');
    }

    private static string Cell(string row, string name)
    {
        var match = Regex.Match(row, $"<td class=\"{name}[^\"]*\">([^<]*)</td>", RegexOptions.CultureInvariant);
        Assert.True(match.Success, $"no {name} cell in row {row}");
        return match.Groups[1].Value;
    }

    [GeneratedRegex("<tr id=\"replica-(?<id>\\d+)\"[^>]*>(?<cells>.*?)</tr>", RegexOptions.Singleline | RegexOptions.CultureInvariant)]
    private static partial Regex ReplicaRows();

    /// <summary>chromium on PATH; this test fails (it does not skip) without it.</summary>
    private static string FindChromium()
    {
        foreach (var name in new[] { "chromium", "chromium-browser" })
            foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
            {
                var path = Path.Combine(dir, name);
                if (File.Exists(path)) return path;
            }
        Assert.Fail("chromium is not installed (headless Chromium renders the dashboard in this test): apt-get install -y chromium; .ci/run installs it");
        return "";
    }

    /// <summary>The DOM Chromium builds for <paramref name="url"/>, after its scripts ran (--dump-dom).</summary>
    /// <summary>What the status page shows of a replica.</summary>
    private static (int, long, int, ulong, ulong, ulong)? Shown(ReplicaStatus? s) =>
        s is null ? null : (s.ReplicaId, s.View, s.Primary, s.ExecutedSequence, s.StableCheckpoint, s.LastUiCounter);

    private async Task<string> DumpDomAsync(string chromium, string url, int? virtualTimeMs)
    {
        // Its own profile directory: other Chromium processes on the machine hold the default one.
        var profile = Directory.CreateTempSubdirectory("minbft-chromium-").FullName;
        try
        {
            var start = new ProcessStartInfo(chromium)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (var argument in new[] { "--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=" + profile })
                start.ArgumentList.Add(argument);
            if (virtualTimeMs is { } ms) start.ArgumentList.Add(string.Create(CultureInfo.InvariantCulture, $"--virtual-time-budget={ms}"));
            start.ArgumentList.Add("--dump-dom");
            start.ArgumentList.Add(url);
            using var process = Process.Start(start)!;
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            try
            {
                await process.WaitForExitAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
                Assert.Fail($"chromium did not finish rendering {url} within 60 s:\n{await stderr}");
            }
            var dom = await stdout;
            Assert.True(process.ExitCode == 0 && dom.Length > 0, $"chromium exited {process.ExitCode} for {url}:\n{await stderr}");
            output.WriteLine($"chromium rendered {url}: {dom.Length} characters");
            return dom;
        }
        finally
        {
            Directory.Delete(profile, recursive: true);
        }
    }
}
