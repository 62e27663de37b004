using System.Globalization;
using MinBft.Hosting;

namespace MinBft.Client.Cli;

/// <summary><c>put KEY VALUE</c>: sets a key (the value is UTF-8 text).</summary>
public sealed record PutCommand(ConnectionSettings Connection, string Key, string Value) : ICliCommand
{
    public Task<int> RunAsync(CliConsole console, CancellationToken cancellationToken) =>
        KeyValueCommand.RunAsync(Connection, console, cancellationToken, async kv =>
        {
            await kv.PutAsync(Key, System.Text.Encoding.UTF8.GetBytes(Value), cancellationToken).ConfigureAwait(false);
            await console.Out.WriteLineAsync("ok").ConfigureAwait(false);
            return ExitCodes.Ok;
        });
}

/// <summary><c>get KEY</c>: prints the value (as UTF-8 text), or exits with <see cref="ExitCodes.NotFound"/>.</summary>
public sealed record GetCommand(ConnectionSettings Connection, string Key) : ICliCommand
{
    public Task<int> RunAsync(CliConsole console, CancellationToken cancellationToken) =>
        KeyValueCommand.RunAsync(Connection, console, cancellationToken, async kv =>
        {
            var value = await kv.GetAsync(Key, cancellationToken).ConfigureAwait(false);
            if (value is null)
            {
                await console.Error.WriteLineAsync($"get: key '{Key}' not found").ConfigureAwait(false);
                return ExitCodes.NotFound;
            }
            await console.Out.WriteLineAsync(System.Text.Encoding.UTF8.GetString(value)).ConfigureAwait(false);
            return ExitCodes.Ok;
        });
}

/// <summary><c>delete KEY</c>: removes a key; prints whether it existed.</summary>
public sealed record DeleteCommand(ConnectionSettings Connection, string Key) : ICliCommand
{
    public Task<int> RunAsync(CliConsole console, CancellationToken cancellationToken) =>
        KeyValueCommand.RunAsync(Connection, console, cancellationToken, async kv =>
        {
            var existed = await kv.DeleteAsync(Key, cancellationToken).ConfigureAwait(false);
            await console.Out.WriteLineAsync(existed ? "deleted" : "not found").ConfigureAwait(false);
            return ExitCodes.Ok;
        });
}

internal static class KeyValueCommand
{
    /// <summary>Connects, runs one verified key-value operation, and turns failures into messages and exit codes.</summary>
    public static async Task<int> RunAsync(
        ConnectionSettings connection, CliConsole console, CancellationToken cancellationToken, Func<KeyValueClient, Task<int>> operation)
    {
        return await CliErrors.GuardAsync(console, async () =>
        {
            await using var cluster = await ClusterConnection.ConnectAsync(connection, console, cancellationToken).ConfigureAwait(false);
            using var client = cluster.CreateClient(identities: 1);
            return await operation(new KeyValueClient(client)).ConfigureAwait(false);
        }, cancellationToken).ConfigureAwait(false);
    }
}

/// <summary><c>status</c>: each replica's view, executed batches and state digest, as it reports them.</summary>
public sealed record StatusCommand(ConnectionSettings Connection) : ICliCommand
{
    public async Task<int> RunAsync(CliConsole console, CancellationToken cancellationToken) =>
        await CliErrors.GuardAsync(console, async () =>
        {
            await using var cluster = await ClusterConnection.ConnectAsync(Connection, console, cancellationToken).ConfigureAwait(false);
            var n = cluster.Manifest.N;
            var statuses = await Task.WhenAll(Enumerable.Range(0, n).Select(async i =>
            {
                try
                {
                    var status = await cluster.Client.GetGrain<IReplicaGrain>(i).GetStatus()
                        .WaitAsync(TimeSpan.FromSeconds(5), cancellationToken).ConfigureAwait(false);
                    return (Status: status, Error: (string?)null);
                }
                catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
                {
                    return (Status: (ReplicaStatus?)null, Error: e is TimeoutException ? "no answer within 5 s" : e.Message);
                }
            })).ConfigureAwait(false);

            await console.Out.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                $"cluster: n={n} f={cluster.Manifest.F} usig={ClusterManifest.SchemeName(cluster.Manifest.UsigScheme)} {(Connection.RedisClustering is null ? $"gateway={Connection.Gateway}" : "clustering=redis")}")).ConfigureAwait(false);
            for (var i = 0; i < n; i++)
            {
                var (status, error) = statuses[i];
                await console.Out.WriteLineAsync(status is null
                    ? string.Create(CultureInfo.InvariantCulture, $"replica {i}: unreachable ({error})")
                    : Format(status)).ConfigureAwait(false);
            }
            // Replicas report about themselves (a Byzantine one may lie): this is an operator's view, not a proof.
            return statuses.All(s => s.Status is not null) ? ExitCodes.Ok : ExitCodes.Failed;
        }, cancellationToken).ConfigureAwait(false);

    public static string Format(ReplicaStatus s) => string.Create(CultureInfo.InvariantCulture,
        $"replica {s.ReplicaId}: view={s.View} primary={s.Primary} executed={s.ExecutedSequence} checkpoint={s.StableCheckpoint} digest={s.StateDigest} pending={s.PendingRequests} buffered={s.BufferedMessages} sent-log={s.SentLogCount} clients={s.ClientRecords} horizon={s.ExpiryHorizon} usig={s.UsigMode ?? "unknown"}{(s.Halted is null ? "" : " HALTED: " + s.Halted)}");
}

/// <summary><c>keygen</c>: a new deployment's manifest and per-domain private keys; or, with
/// <see cref="RotateUsig"/>, a new identity (epoch, and key for ed25519) for one USIG that lost its state.</summary>
public sealed record KeygenCommand(int F, string OutputDirectory, UsigScheme Scheme, int? RotateUsig = null) : ICliCommand
{
    /// <summary><c>--client-cert NAME</c>: issue a client certificate from the deployment's CA.</summary>
    public string? ClientCertificate { get; init; }

    /// <summary><c>--silo-cert NAME</c>: issue or renew a silo's certificate from the deployment's CA.</summary>
    public string? SiloCertificate { get; init; }

    /// <summary><c>--first-view V</c> with <see cref="RotateUsig"/>: the first view the new identity may lead.</summary>
    public long FirstView { get; init; }

    /// <summary><c>--first-checkpoint S</c> with <see cref="RotateUsig"/>: from this stable checkpoint on its VIEW-CHANGEs count.</summary>
    public ulong FirstCheckpoint { get; init; }

    /// <summary><c>--max-client-records N</c>: a new deployment's client table cap (the manifest's <c>maxClientRecords</c>).</summary>
    public int MaxClientRecords { get; init; } = ClusterManifest.DefaultMaxClientRecords;

    public async Task<int> RunAsync(CliConsole console, CancellationToken cancellationToken)
    {
        if (RotateUsig is { } replica) return await RotateAsync(console, replica).ConfigureAwait(false);
        if (ClientCertificate is not null || SiloCertificate is not null) return await IssueAsync(console).ConfigureAwait(false);
        ClusterManifest manifest;
        try
        {
            manifest = DeploymentKeys.Generate(F, OutputDirectory, Scheme, ClusterManifest.DefaultCheckpointInterval, ClusterManifest.DefaultWatermark, tls: true, MaxClientRecords);
        }
        catch (Exception e) when (e is IOException or ArgumentException or UnauthorizedAccessException)
        {
            await console.Error.WriteLineAsync("keygen: " + e.Message).ConfigureAwait(false);
            return ExitCodes.Usage;
        }
        var directory = Path.GetFullPath(OutputDirectory);
        await console.Out.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
            $"keygen: n={manifest.N} f={manifest.F} usig={ClusterManifest.SchemeName(manifest.UsigScheme)} max-client-records={manifest.MaxClientRecords}")).ConfigureAwait(false);
        await console.Out.WriteLineAsync($"manifest (public, for every silo and client): {Path.Combine(directory, DeploymentKeys.ManifestFileName)}").ConfigureAwait(false);
        for (var i = 0; i < manifest.N; i++)
        {
            var domain = DeploymentKeys.DomainDirectory(directory, i);
            await console.Out.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                $"fault domain {i} private keys (copy only to domain {i}'s machines): {Path.Combine(domain, DeploymentKeys.ReplicaKeyDirectoryName)} (silo), {Path.Combine(domain, DeploymentKeys.UsigKeyDirectoryName)} (USIG), {Path.Combine(domain, DeploymentTls.DirectoryName)} (silo TLS)")).ConfigureAwait(false);
        }
        await console.Out.WriteLineAsync($"gateway silo TLS (for silos without fault domain): {Path.Combine(directory, DeploymentCertificates.GatewayDirectoryName, DeploymentTls.DirectoryName)}").ConfigureAwait(false);
        await console.Out.WriteLineAsync($"client TLS: {Path.GetDirectoryName(DeploymentCertificates.ClientCertificatePath(directory, DeploymentCertificates.DefaultClientName))} (--tls-cert {DeploymentCertificates.ClientCertificatePath(directory, DeploymentCertificates.DefaultClientName)}; more with keygen --client-cert NAME)").ConfigureAwait(false);
        await console.Out.WriteLineAsync($"TLS CA (its private key: keep it off every silo and client): {Path.Combine(directory, DeploymentCertificates.AuthorityDirectoryName)}").ConfigureAwait(false);
        return ExitCodes.Ok;
    }

    private async Task<int> IssueAsync(CliConsole console)
    {
        string path;
        try
        {
            path = ClientCertificate is { } client
                ? DeploymentKeys.IssueClientCertificate(OutputDirectory, client)
                : DeploymentKeys.IssueSiloCertificate(OutputDirectory, SiloCertificate!);
        }
        catch (Exception e) when (e is IOException or ArgumentException or UnauthorizedAccessException or InvalidDataException)
        {
            await console.Error.WriteLineAsync("keygen: " + e.Message).ConfigureAwait(false);
            return ExitCodes.Usage;
        }
        await console.Out.WriteLineAsync(ClientCertificate is not null
            ? $"keygen: client certificate {Path.GetFullPath(path)} (key: tls.key next to it; use it with --tls-cert)"
            : $"keygen: silo certificate {Path.GetFullPath(path)} (key: tls.key next to it); copy both to silo {SiloCertificate}'s machines and restart it: peers accept old and new certificates of this CA alike").ConfigureAwait(false);
        return ExitCodes.Ok;
    }

    private async Task<int> RotateAsync(CliConsole console, int replica)
    {
        ClusterManifest manifest;
        try
        {
            manifest = DeploymentKeys.RotateUsig(OutputDirectory, replica, FirstView, FirstCheckpoint);
        }
        catch (Exception e) when (e is IOException or ArgumentException or UnauthorizedAccessException or InvalidDataException)
        {
            await console.Error.WriteLineAsync("keygen: " + e.Message).ConfigureAwait(false);
            return ExitCodes.Usage;
        }
        var directory = Path.GetFullPath(OutputDirectory);
        var epoch = manifest.Replica(replica).UsigEpoch;
        await console.Out.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
            $"keygen: USIG {replica} rotated to epoch {epoch}{(manifest.UsigScheme == UsigScheme.Ed25519 ? " with a new key" : " (hmac: the shared key stays)")}; " +
            $"it leads views from {FirstView} on, and its view changes count from checkpoint {FirstCheckpoint} on; the old identity stays in the manifest for history")).ConfigureAwait(false);
        await console.Out.WriteLineAsync($"manifest: {Path.Combine(directory, DeploymentKeys.ManifestFileName)}").ConfigureAwait(false);
        await console.Out.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
            $"next: copy the manifest to every silo and client, restart the other domains' silos one at a time, then start domain {replica} " +
            $"with an empty replica store (remove its journal and checkpoints) and its USIG initialised for epoch {epoch} (MinBft.Usig init --epoch {epoch}, or --init-usig {epoch}); see the README"))
            .ConfigureAwait(false);
        return ExitCodes.Ok;
    }
}

internal static class CliErrors
{
    /// <summary>Runs a command body, turning the failures a user can act on into one line on stderr and an exit code.</summary>
    public static async Task<int> GuardAsync(CliConsole console, Func<Task<int>> body, CancellationToken cancellationToken)
    {
        try
        {
            return await body().ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            await console.Error.WriteLineAsync("interrupted").ConfigureAwait(false);
            return ExitCodes.Interrupted;
        }
        catch (CliUsageException e)
        {
            await console.Error.WriteLineAsync(e.Message).ConfigureAwait(false);
            return ExitCodes.Usage;
        }
        catch (MinBftReplyVerificationException e)
        {
            await console.Error.WriteLineAsync("the cluster's replies could not be verified: " + e.Message).ConfigureAwait(false);
            return ExitCodes.Failed;
        }
        catch (Exception e) when (e is MinBftException or TimeoutException)
        {
            await console.Error.WriteLineAsync(e.Message).ConfigureAwait(false);
            return ExitCodes.Failed;
        }
    }
}
