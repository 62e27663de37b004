using System.Net;
using MinBft.Hosting;

namespace MinBft.Client.Cli;

/// <summary>What the console commands write to: results on <see cref="Out"/>, progress and errors on <see cref="Error"/>.</summary>
public sealed record CliConsole(TextWriter Out, TextWriter Error, bool ErrorIsTerminal, bool Verbose = false)
{
    public static CliConsole System(bool verbose = false) => new(Console.Out, Console.Error, !Console.IsErrorRedirected, verbose);
}

/// <summary>One parsed command line, ready to run.</summary>
public interface ICliCommand
{
    Task<int> RunAsync(CliConsole console, CancellationToken cancellationToken);
}

/// <summary>How to reach a running cluster.</summary>
/// <param name="Gateway">A gateway silo's client endpoint.</param>
/// <param name="ManifestPath">The cluster manifest (replica keys for reply verification).</param>
public sealed record ConnectionSettings(IPEndPoint Gateway, string ManifestPath, string ClusterId, string ServiceId, TimeSpan RequestTimeout)
{
    /// <summary>Redis connection string of the cluster's membership table; null: connect to <see cref="Gateway"/>.</summary>
    public string? RedisClustering { get; init; }

    /// <summary>This client's TLS certificate (PEM); required when the manifest names a TLS CA, unless <see cref="NoTls"/>.</summary>
    public string? TlsCertificate { get; init; }

    /// <summary>Its private key; null: <c>tls.key</c> next to the certificate.</summary>
    public string? TlsKey { get; init; }

    /// <summary>Plaintext although the manifest names a TLS CA (silos started with <c>--no-tls</c>).</summary>
    public bool NoTls { get; init; }

    public static IPEndPoint DefaultGateway { get; } = new(IPAddress.Loopback, LocalClusterOptions.DefaultGatewayPort);

    /// <summary>Where <c>Silo local</c> (default data directory ./data) writes the manifest.</summary>
    public static string DefaultManifestPath { get; } = Path.Combine("data", LocalCluster.KeysDirectoryName, DeploymentKeys.ManifestFileName);

    public static TimeSpan DefaultRequestTimeout { get; } = TimeSpan.FromSeconds(30);
}

/// <summary>Exit codes shared by the commands.</summary>
public static class ExitCodes
{
    public const int Ok = 0;

    /// <summary>The command ran and failed (unverifiable replies, a check that did not hold, errors).</summary>
    public const int Failed = 1;

    /// <summary>Bad usage or configuration (unreadable manifest, unreachable gateway, existing keys).</summary>
    public const int Usage = 2;

    /// <summary><c>get</c> of an absent key; a <c>ledger</c> command on an account that does not exist.</summary>
    public const int NotFound = 3;

    /// <summary>The ledger refused the operation (overdraw, overflow, existing account); nothing changed.</summary>
    public const int Rejected = 4;

    /// <summary>Interrupted (Ctrl+C).</summary>
    public const int Interrupted = 130;
}
