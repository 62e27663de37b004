using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Orleans.Hosting;

namespace MinBft.Hosting;

/// <summary>Options of <see cref="LocalCluster"/>, the single-process development cluster.</summary>
public sealed class LocalClusterOptions
{
    public const string DefaultClusterId = "minbft-dev";
    public const string DefaultServiceId = "minbft";
    public const int DefaultSiloPort = 11111;
    public const int DefaultGatewayPort = 30000;

    /// <summary>Faults tolerated; the cluster runs n = 2f+1 fault-domain silos. Must match the keys in <see cref="DataDirectory"/> if they exist.</summary>
    public int F { get; set; } = 1;

    /// <summary>
    /// Root of the cluster's files: <c>keys/</c> (manifest and each domain's private keys,
    /// generated on first start) and <c>domain-i/</c> (fault domain i's SQLite store).
    /// </summary>
    public string DataDirectory { get; set; } = "data";

    /// <summary>
    /// Delete the keys and stores a previous run left in <see cref="DataDirectory"/> before
    /// starting (only <c>keys/</c> and <c>domain-i/</c>; nothing else in the directory).
    /// </summary>
    public bool FreshStart { get; set; }

    /// <summary>USIG scheme of newly generated keys (existing keys keep theirs).</summary>
    public UsigScheme UsigScheme { get; set; } = UsigScheme.Ed25519;

    /// <summary>
    /// Run each fault domain's USIG as a separate USIG program (child processes, stopped by their
    /// process ids; state and socket in <c>DataDirectory/usig-i/</c>) instead of inside its silo.
    /// </summary>
    public bool IsolatedUsig { get; set; }

    /// <summary>The USIG program (MinBft.Usig.dll) for <see cref="IsolatedUsig"/>; default: next to this process.</summary>
    public string UsigProgram { get; set; } = UsigProgramSettings.DefaultProgram;

    /// <summary>Silo-to-silo port of the membership/gateway silo; fault domain i uses <c>SiloPort + 1 + i</c>.</summary>
    public int SiloPort { get; set; } = DefaultSiloPort;

    /// <summary>Client gateway port of the membership/gateway silo; fault domain i's silo uses <c>GatewayPort + 1 + i</c>.</summary>
    public int GatewayPort { get; set; } = DefaultGatewayPort;

    public string ClusterId { get; set; } = DefaultClusterId;

    public string ServiceId { get; set; } = DefaultServiceId;

    /// <summary>Applied to every silo's <see cref="MinBftOptions"/> (protocol knobs, timers) after the cluster's own settings.</summary>
    public Action<MinBftOptions>? ConfigureMinBft { get; set; }

    /// <summary>Logging of every silo (none by default: the cluster is silent unless asked).</summary>
    public Action<ILoggingBuilder>? ConfigureLogging { get; set; }

    /// <summary>Last word on each silo's builder; the argument is the silo's fault domain, null for the gateway silo.</summary>
    public Action<int?, ISiloBuilder>? ConfigureSilo { get; set; }

    /// <summary>
    /// Sets <see cref="SiloPort"/> and <see cref="GatewayPort"/> to ranges that are free right now,
    /// so several clusters (tests, demos) can run side by side. Another process could still
    /// take a port before the silos bind it; callers that must not fail retry with new ports.
    /// </summary>
    public LocalClusterOptions UseFreePorts()
    {
        var count = 2 * F + 2;
        for (var attempt = 0; attempt < 200; attempt++)
        {
            // Below the usual ephemeral range (32768+), where outgoing connections take ports.
            var start = Random.Shared.Next(20000, 32000 - 2 * count);
            if (Enumerable.Range(start, 2 * count).All(IsFree))
            {
                SiloPort = start;
                GatewayPort = start + count;
                return this;
            }
        }
        throw new InvalidOperationException("found no free range of local ports");
    }

    private static bool IsFree(int port)
    {
        try
        {
            var listener = new TcpListener(IPAddress.Loopback, port);
            listener.Start();
            listener.Stop();
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid option.</summary>
    public void Validate()
    {
        if (F < 0) throw new ArgumentException($"{nameof(F)} must be >= 0, got {F}");
        if (string.IsNullOrWhiteSpace(DataDirectory)) throw new ArgumentException($"{nameof(DataDirectory)} is required");
        var n = 2 * F + 1;
        CheckRange(nameof(SiloPort), SiloPort, n);
        CheckRange(nameof(GatewayPort), GatewayPort, n);
        if (SiloPort <= GatewayPort + n && GatewayPort <= SiloPort + n)
            throw new ArgumentException($"port ranges overlap: silos {SiloPort}..{SiloPort + n}, gateways {GatewayPort}..{GatewayPort + n}");
        if (string.IsNullOrWhiteSpace(ClusterId)) throw new ArgumentException($"{nameof(ClusterId)} is required");
        if (string.IsNullOrWhiteSpace(ServiceId)) throw new ArgumentException($"{nameof(ServiceId)} is required");
    }

    private static void CheckRange(string name, int first, int n)
    {
        if (first < 1 || first + n > 65535) throw new ArgumentException($"{name} {first}..{first + n} is not a valid port range");
    }
}
