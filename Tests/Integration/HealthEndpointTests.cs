using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.Json;
using MinBft.Hosting;
using Xunit.Abstractions;

namespace MinBft.Tests.Integration;

/// <summary>The silo host's <c>/healthz</c>, from a real silo process (issue 12).</summary>
public sealed class HealthEndpointTests(ITestOutputHelper output) : IDisposable
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(90);
    private readonly string _directory = Directory.CreateTempSubdirectory("minbft-health-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public async Task A_fault_domain_silo_serves_healthz_healthy_and_metrics_that_count_an_executed_request()
    {
        // One fault domain (f = 0) is a whole cluster: its replica runs and executes alone. Keys as
        // keygen makes them, with a TLS CA: the silo host runs mutual TLS by default.
        var manifest = DeploymentKeys.Generate(0, _directory, UsigScheme.Ed25519, ClusterManifest.DefaultCheckpointInterval, ClusterManifest.DefaultWatermark, tls: true);
        var httpPort = FreePorts.Next();
        var gatewayPort = FreePorts.Next();
        var clusterId = "health-" + Guid.NewGuid().ToString("N")[..8];
        using var silo = new SiloProcess("domain-0",
        [
            "--fault-domain", "0",
            "--manifest", Path.Combine(_directory, DeploymentKeys.ManifestFileName),
            "--data", Path.Combine(_directory, "data"),
            "--silo-port", FreePorts.Next().ToString(CultureInfo.InvariantCulture),
            "--gateway-port", gatewayPort.ToString(CultureInfo.InvariantCulture),
            "--http-port", httpPort.ToString(CultureInfo.InvariantCulture),
            "--cluster-id", clusterId, "--service-id", clusterId,
        ], new Dictionary<string, string>(), _directory)
        {
            FirstStartArguments = ["--init-usig", manifest.Replica(0).UsigEpoch.ToString(CultureInfo.InvariantCulture)],
        };
        silo.Start();
        try
        {
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
            var url = $"http://127.0.0.1:{httpPort}/healthz";
            var clock = Stopwatch.StartNew();
            HttpResponseMessage? response = null;
            // Until the silo is up and its replica answers (a deadline, not a sleep: each try is a request).
            while (clock.Elapsed < Deadline)
            {
                try
                {
                    response = await http.GetAsync(url);
                    if (response.StatusCode == HttpStatusCode.OK) break;
                }
                catch (HttpRequestException)
                {
                    // not listening yet
                }
                catch (TaskCanceledException)
                {
                    // the silo is still starting
                }
                Assert.True(silo.IsRunning, "the silo exited:\n" + silo.Tail());
                await Task.Delay(200);
            }
            Assert.True(response is { StatusCode: HttpStatusCode.OK }, $"no 200 from {url} within {Deadline} (last: {response?.StatusCode}):\n{silo.Tail()}");
            var body = await response!.Content.ReadAsStringAsync();
            output.WriteLine(body);
            using var json = JsonDocument.Parse(body);
            Assert.Equal("Healthy", json.RootElement.GetProperty("status").GetString());
            var replica = json.RootElement.GetProperty("checks").GetProperty("minbft");
            Assert.Equal("Healthy", replica.GetProperty("status").GetString());
            Assert.Equal("0", replica.GetProperty("replica").GetString());
            Assert.Equal(MinBftSilo.InProcessUsigMode, replica.GetProperty("usig").GetString());

            // One request through the CLI, then the Prometheus scrape counts it.
            var cliOutput = new StringWriter();
            var cli = new MinBft.Client.Cli.ClientCli(new MinBft.Client.Cli.CliConsole(cliOutput, cliOutput, ErrorIsTerminal: false));
            var exit = await cli.InvokeAsync(
                ["put", "k", "v", "--gateway", $"127.0.0.1:{gatewayPort}", "--manifest", Path.Combine(_directory, DeploymentKeys.ManifestFileName),
                 "--cluster-id", clusterId, "--service-id", clusterId,
                 "--tls-cert", DeploymentCertificates.ClientCertificatePath(_directory, DeploymentCertificates.DefaultClientName)], CancellationToken.None);
            Assert.True(exit == 0, $"put exited {exit}: {cliOutput}");
            Assert.Contains("transport=mtls", silo.Tail(200), StringComparison.Ordinal);
            string metrics = "";
            // The exporter caches a scrape briefly: ask until the count shows (deadline).
            while (clock.Elapsed < Deadline && !metrics.Contains("minbft_requests_executed", StringComparison.Ordinal))
            {
                metrics = await http.GetStringAsync($"http://127.0.0.1:{httpPort}/metrics");
                if (!metrics.Contains("minbft_requests_executed", StringComparison.Ordinal)) await Task.Delay(200);
            }
            output.WriteLine(string.Join('\n', metrics.Split('\n').Where(l => l.Contains("minbft_", StringComparison.Ordinal)).Take(20)));
            var executed = metrics.Split('\n').FirstOrDefault(l => l.StartsWith("minbft_requests_executed", StringComparison.Ordinal) && l.Contains("replica=\"0\"", StringComparison.Ordinal));
            Assert.True(executed is not null, "no minbft_requests_executed sample for replica 0 in /metrics:\n" + metrics);
            Assert.Equal(1.0, double.Parse(executed.Split(' ')[^1], CultureInfo.InvariantCulture));
        }
        finally
        {
            output.WriteLine(silo.Tail(40));
        }
    }
}
