using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using MinBft.Hosting;
using MinBft.Tests.Client;
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
        var (silo, httpPort, gatewayPort, clusterId) = StartSilo(manifest, domain: 0);
        try
        {
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
            var clock = Stopwatch.StartNew();
            using var json = await WaitForHealthAsync(http, silo, httpPort, clock, "Healthy");
            Assert.Equal("Healthy", json.RootElement.GetProperty("status").GetString());
            var replica = json.RootElement.GetProperty("checks").GetProperty("minbft");
            Assert.Equal("Healthy", replica.GetProperty("status").GetString());
            Assert.Equal("0", replica.GetProperty("replica").GetString());
            Assert.Equal(MinBftSilo.InProcessUsigMode, replica.GetProperty("usig").GetString());

            // One request through the CLI, then the Prometheus scrape counts it, with the probe the
            // CLI's fresh client sent before it (ordered and executed like any request).
            var cliOutput = new StringWriter();
            var exit = await PutAsync(cliOutput, gatewayPort, clusterId, timeoutSeconds: null);
            Assert.True(exit == 0, $"put exited {exit}: {cliOutput}");
            Assert.Contains("transport=mtls", silo.Tail(200), StringComparison.Ordinal);
            string metrics = "";
            // The exporter caches a scrape briefly: ask until the count shows.
            await Conditions.WaitUntilAsync(async () =>
            {
                metrics = await http.GetStringAsync($"http://127.0.0.1:{httpPort}/metrics");
                return (metrics.Contains("minbft_requests_executed", StringComparison.Ordinal), "no minbft_requests_executed yet");
            }, Deadline - clock.Elapsed, "the executed request in /metrics");
            output.WriteLine(string.Join('\n', metrics.Split('\n').Where(l => l.Contains("minbft_", StringComparison.Ordinal)).Take(20)));
            var executed = metrics.Split('\n').FirstOrDefault(l => l.StartsWith("minbft_requests_executed", StringComparison.Ordinal) && l.Contains("replica=\"0\"", StringComparison.Ordinal));
            Assert.True(executed is not null, "no minbft_requests_executed sample for replica 0 in /metrics:\n" + metrics);
            Assert.Equal(2.0, double.Parse(executed.Split(' ')[^1], CultureInfo.InvariantCulture)); // the probe, then the put
        }
        finally
        {
            output.WriteLine(silo.Tail(40));
            silo.Dispose();
        }
    }

    [Fact]
    public async Task A_replica_whose_isolated_USIG_is_down_serves_healthz_degraded_then_unhealthy_and_healthy_once_it_is_back()
    {
        // f = 0, its USIG as a program of its own (the key moved out of the silo's directory).
        var manifest = DeploymentKeys.Generate(0, _directory, UsigScheme.Ed25519, ClusterManifest.DefaultCheckpointInterval, ClusterManifest.DefaultWatermark, tls: true);
        var usigDirectory = Directory.CreateDirectory(Path.Combine(_directory, "usig-0")).FullName;
        var key = Path.Combine(usigDirectory, "usig.key");
        var siloKeys = DeploymentKeys.DomainDirectory(_directory, 0);
        File.Move(DeploymentKeys.UsigKeyPath(manifest, siloKeys), key);
        Directory.Delete(Path.GetDirectoryName(DeploymentKeys.UsigKeyPath(manifest, siloKeys))!, recursive: true);
        var settings = new UsigProgramSettings(UsigProgramSettings.DefaultProgram, 0, manifest.Replica(0).UsigEpoch,
            Path.Combine(usigDirectory, "usig.state"), key, Path.Combine(usigDirectory, "usig.sock"));
        await UsigProcess.InitializeAsync(settings, CancellationToken.None);
        var usig = await UsigProcess.StartAsync(settings, NullLogger.Instance, Deadline, CancellationToken.None);
        var (silo, httpPort, gatewayPort, clusterId) = StartSilo(manifest, domain: 0, ["--usig", "unix:" + settings.SocketPath]);
        try
        {
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
            var clock = Stopwatch.StartNew();
            using (await WaitForHealthAsync(http, silo, httpPort, clock, "Healthy")) { }

            // Down: the request's PREPARE waits for a UI the replica keeps asking for.
            usig.Kill();
            var putOutput = new StringWriter();
            var put = PutAsync(putOutput, gatewayPort, clusterId, timeoutSeconds: 120);
            // Degraded may first say why it is stalled otherwise: with its PREPARE waiting for a UI, the
            // replica sees no progress and probes its (here: no) peers for state, before the first
            // USIG call has failed (under load that call took longer than the stall detection).
            using (await WaitForHealthAsync(http, silo, httpPort, clock, "Degraded", describing: "retrying a failed store or USIG write")) { }
            // Failing for longer than UnhealthyAfterFailingFor (10 s): 503.
            using (await WaitForHealthAsync(http, silo, httpPort, clock, "Unhealthy", describing: "its store or USIG has been failing")) { }

            // Back: the replica gets its UI, orders the request and is healthy again.
            usig.Dispose();
            usig = await UsigProcess.StartAsync(settings, NullLogger.Instance, Deadline, CancellationToken.None);
            using (await WaitForHealthAsync(http, silo, httpPort, clock, "Healthy")) { }
            Assert.True(await put.WaitAsync(Deadline) == 0, "the request did not complete once the USIG was back: " + putOutput);
        }
        finally
        {
            output.WriteLine(silo.Tail(40));
            silo.Dispose();
            usig.Dispose();
        }
    }

    private static string Description(JsonDocument health) =>
        health.RootElement.GetProperty("checks").GetProperty("minbft").GetProperty("description").GetString() ?? "";

    /// <summary>The silo of <paramref name="domain"/>, started (with <paramref name="usig"/>: its
    /// <c>--usig</c> arguments, an isolated USIG).</summary>
    private (SiloProcess Silo, int HttpPort, int GatewayPort, string ClusterId) StartSilo(ClusterManifest manifest, int domain, IReadOnlyList<string>? usig = null)
    {
        var httpPort = FreePorts.Next();
        var gatewayPort = FreePorts.Next();
        var clusterId = "health-" + Guid.NewGuid().ToString("N")[..8];
        var silo = new SiloProcess("domain-" + domain.ToString(CultureInfo.InvariantCulture),
        [
            "--fault-domain", domain.ToString(CultureInfo.InvariantCulture),
            "--manifest", Path.Combine(_directory, DeploymentKeys.ManifestFileName),
            "--data", Path.Combine(_directory, "data"),
            "--silo-port", FreePorts.Next().ToString(CultureInfo.InvariantCulture),
            "--gateway-port", gatewayPort.ToString(CultureInfo.InvariantCulture),
            "--http-port", httpPort.ToString(CultureInfo.InvariantCulture),
            "--cluster-id", clusterId, "--service-id", clusterId,
            .. usig ?? [],
        ], new Dictionary<string, string>(), _directory)
        {
            // The in-process USIG's first start; an isolated one was initialised by its program.
            FirstStartArguments = usig is null ? ["--init-usig", manifest.Replica(domain).UsigEpoch.ToString(CultureInfo.InvariantCulture)] : [],
        };
        silo.Start();
        return (silo, httpPort, gatewayPort, clusterId);
    }

    /// <summary>Asks <c>/healthz</c> until it reports <paramref name="status"/>, with a description
    /// containing <paramref name="describing"/> if given (within the test's <see cref="Deadline"/>,
    /// measured by <paramref name="clock"/>); its body.</summary>
    private async Task<JsonDocument> WaitForHealthAsync(HttpClient http, SiloProcess silo, int httpPort, Stopwatch clock, string status, string? describing = null)
    {
        var url = $"http://127.0.0.1:{httpPort}/healthz";
        JsonDocument? found = null;
        await Conditions.WaitUntilAsync(async () =>
        {
            Assert.True(silo.IsRunning, "the silo exited:\n" + silo.Tail());
            try
            {
                // 200 for Healthy and Degraded, 503 for Unhealthy: the body says which.
                var response = await http.GetAsync(url);
                var body = await response.Content.ReadAsStringAsync();
                if (response.StatusCode is not (HttpStatusCode.OK or HttpStatusCode.ServiceUnavailable)) return (false, $"{(int)response.StatusCode} {body}");
                var json = JsonDocument.Parse(body);
                if (json.RootElement.GetProperty("status").GetString() != status
                    || (describing is not null && !Description(json).Contains(describing, StringComparison.Ordinal)))
                {
                    json.Dispose();
                    return (false, $"{(int)response.StatusCode} {body}");
                }
                Assert.Equal(status == "Unhealthy" ? HttpStatusCode.ServiceUnavailable : HttpStatusCode.OK, response.StatusCode);
                output.WriteLine(body);
                found = json;
                return (true, body);
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                return (false, "not answering yet: " + e.Message); // the silo is still starting
            }
        }, Deadline - clock.Elapsed, $"{url} reporting {status}{(describing is null ? "" : $" ({describing})")}");
        return found!;
    }

    private Task<int> PutAsync(StringWriter cliOutput, int gatewayPort, string clusterId, int? timeoutSeconds)
    {
        var cli = new MinBft.Client.Cli.ClientCli(new MinBft.Client.Cli.CliConsole(cliOutput, cliOutput, ErrorIsTerminal: false));
        List<string> arguments =
        [
            "put", "k", "v", "--gateway", $"127.0.0.1:{gatewayPort}", "--manifest", Path.Combine(_directory, DeploymentKeys.ManifestFileName),
            "--cluster-id", clusterId, "--service-id", clusterId,
            "--tls-cert", DeploymentCertificates.ClientCertificatePath(_directory, DeploymentCertificates.DefaultClientName),
        ];
        if (timeoutSeconds is { } seconds) arguments.AddRange(["--timeout", seconds.ToString(CultureInfo.InvariantCulture)]);
        return cli.InvokeAsync([.. arguments], CancellationToken.None);
    }
}
