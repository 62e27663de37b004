using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using MinBft.Hosting;
using Orleans.Configuration;
using Orleans.Hosting;

namespace MinBft.Client.Cli;

/// <summary>An Orleans client connected to a cluster's gateway, with the cluster's manifest.</summary>
public sealed class ClusterConnection : IAsyncDisposable
{
    /// <summary>How long to try reaching the gateway before giving up.</summary>
    public static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(10);

    private readonly IHost _host;

    private ClusterConnection(IHost host, ClusterManifest manifest, ConnectionSettings settings)
    {
        _host = host;
        Manifest = manifest;
        Settings = settings;
    }

    public ClusterManifest Manifest { get; }

    public ConnectionSettings Settings { get; }

    public IClusterClient Client => _host.Services.GetRequiredService<IClusterClient>();

    public ILoggerFactory LoggerFactory => _host.Services.GetRequiredService<ILoggerFactory>();

    /// <summary>
    /// Reads the manifest, then connects. Throws <see cref="CliUsageException"/> with a readable
    /// message when the manifest is unusable or no gateway answers.
    /// </summary>
    public static async Task<ClusterConnection> ConnectAsync(ConnectionSettings settings, CliConsole console, CancellationToken cancellationToken)
    {
        ClusterManifest manifest;
        try
        {
            manifest = ClusterManifest.Load(settings.ManifestPath);
        }
        catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException)
        {
            throw new CliUsageException($"cannot read the cluster manifest: {e.Message} (use --manifest)", e);
        }

        var tls = !settings.NoTls && manifest.HasTlsCertificateAuthority;
        if (tls && settings.TlsCertificate is null)
        {
            throw new CliUsageException(
                $"the deployment uses TLS (the manifest {settings.ManifestPath} names its CA): give this client's certificate with --tls-cert "
                + "(keygen --client-cert NAME writes clients/NAME/tls.crt), or --no-tls if the silos run with --no-tls");
        }
        if (!manifest.HasTlsCertificateAuthority && settings.TlsCertificate is not null)
            throw new CliUsageException($"--tls-cert: the manifest {settings.ManifestPath} names no TLS CA, so this deployment runs plaintext; drop --tls-cert");

        var builder = new HostApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        CliLogging.Configure(builder.Logging, console.Verbose);
        Exception? tlsProblem = null;
        builder.UseOrleansClient(client =>
        {
            if (tls)
            {
                try
                {
                    client.UseMinBftTls(manifest, settings.TlsCertificate!, settings.TlsKey);
                }
                catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException)
                {
                    tlsProblem = e;
                }
            }
            if (settings.RedisClustering is { } redis) client.UseMinBftRedisClustering(redis);
            else client.UseStaticClustering(settings.Gateway);
            client.Configure<ClusterOptions>(o =>
            {
                o.ClusterId = settings.ClusterId;
                o.ServiceId = settings.ServiceId;
            });
        });
        if (tlsProblem is not null) throw new CliUsageException("--tls-cert: " + tlsProblem.Message, tlsProblem);
        var host = builder.Build();
        // The Orleans client keeps retrying an unreachable gateway for minutes; a command line
        // user wants to hear about it sooner.
        using var connectTimeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        connectTimeout.CancelAfter(ConnectTimeout);
        try
        {
            await host.StartAsync(connectTimeout.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            host.Dispose();
            var reason = e is OperationCanceledException ? $"no answer within {ConnectTimeout.TotalSeconds:F0} s." : e.Message;
            throw new CliUsageException(
                settings.RedisClustering is null
                    ? $"cannot connect to the cluster gateway {settings.Gateway} (cluster id '{settings.ClusterId}'): {reason} Is the cluster running? (use --gateway)"
                    : $"cannot connect to the cluster through the Redis membership table (cluster id '{settings.ClusterId}', service id '{settings.ServiceId}'): {reason} Is the cluster running, and are --redis-clustering, --cluster-id and --service-id the silos'?",
                e);
        }
        return new ClusterConnection(host, manifest, settings);
    }

    /// <summary>A verified-reply client over this connection.</summary>
    public MinBftClient CreateClient(int identities)
    {
        var options = new MinBftClientOptions { IdentityPoolSize = identities, RequestTimeout = Settings.RequestTimeout };
        // Keep retrying for as long as --timeout allows, not only the default number of attempts.
        options.MaxAttempts = Math.Max(options.MaxAttempts, (int)Math.Ceiling(options.RequestTimeout / options.AttemptTimeout));
        return new MinBftClient(Client, Manifest, options, LoggerFactory.CreateLogger<MinBftClient>());
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await _host.StopAsync(CancellationToken.None).ConfigureAwait(false);
        }
        finally
        {
            _host.Dispose();
        }
    }
}

/// <summary>A command cannot run as asked; the message says why and what to change.</summary>
public sealed class CliUsageException(string message, Exception? inner = null) : Exception(message, inner);

internal static class CliLogging
{
    /// <summary>Logs to standard error (standard output carries results): warnings, or everything with --verbose.</summary>
    public static void Configure(ILoggingBuilder logging, bool verbose)
    {
        logging.ClearProviders();
        logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss ";
        });
        logging.Services.Configure<Microsoft.Extensions.Logging.Console.ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        if (verbose)
        {
            logging.SetMinimumLevel(LogLevel.Information);
            logging.AddFilter("Polly", LogLevel.Warning);
        }
        else
        {
            // A CLI run is short: Orleans' connection and shutdown chatter is noise unless asked for.
            logging.SetMinimumLevel(LogLevel.Warning);
            logging.AddFilter("Orleans", LogLevel.Error);
            logging.AddFilter("Polly", LogLevel.Error);
            // A host that fails to start is reported by the command itself, in one line.
            logging.AddFilter("Microsoft.Extensions.Hosting", LogLevel.None);
        }
    }
}
