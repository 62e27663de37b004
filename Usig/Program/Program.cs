using System.CommandLine;
using System.Net.Sockets;
using System.Runtime.Versioning;

[assembly: SupportedOSPlatform("linux")] // SO_PEERCRED and the socket's file mode

namespace MinBft.Usig;

/// <summary>
/// The USIG of one fault domain as a process of its own: the only holder of its key and counter.
/// <code>
/// MinBft.Usig init  --state FILE --replica I --epoch E                 first start of an epoch
/// MinBft.Usig serve --state FILE --replica I --epoch E --key FILE --socket PATH --allowed-uid U
/// </code>
/// <c>serve</c> refuses to run without a state initialised for its epoch, listens on a Unix domain
/// socket (mode 0600), accepts connections only from <c>--allowed-uid</c> (SO_PEERCRED, Linux) and
/// serves one client at a time: replica i's silo. The counter file also holds the messages the
/// last batch asked it to keep (<see cref="UsigCore.MaxKeptBytes"/> at most), written with the
/// counter in one synced write and returned by <c>GetIdentity</c> after a restart.
/// </summary>
public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        var state = new Option<string>("--state") { Description = "The counter file", Required = true };
        var replica = new Option<int>("--replica") { Description = "The replica this USIG belongs to", Required = true };
        var epoch = new Option<ulong>("--epoch") { Description = "The USIG's epoch in the cluster manifest", Required = true };
        var key = new Option<string>("--key") { Description = "The USIG key file (domain-i/usig/usig.key or usig-hmac.key)", Required = true };
        var socket = new Option<string>("--socket") { Description = "Unix domain socket path to listen on", Required = true };
        var uid = new Option<uint>("--allowed-uid") { Description = "The only user id that may connect (the silo's)", Required = true };
        var init = new Command("init", "Initialise the counter file for an epoch (counter 0); refuses an existing state of that or a newer epoch") { state, replica, epoch };
        init.SetAction((p, ct) => Run(async () =>
        {
            using var store = FileCounterStore.Open(p.GetValue(state)!, p.GetValue(replica), create: true);
            if (!await UsigCore.InitializeAsync(store, p.GetValue(epoch), ct)) throw new InvalidOperationException("already initialised for this epoch");
            Console.WriteLine($"usig: initialised replica {p.GetValue(replica)} epoch {p.GetValue(epoch)}");
        }));
        var serve = new Command("serve", "Serve replica i's silo over a Unix domain socket") { state, replica, epoch, key, socket, uid };
        serve.SetAction((p, ct) => Run(() => ServeAsync(p.GetValue(state)!, p.GetValue(replica), p.GetValue(epoch), p.GetValue(key)!, p.GetValue(socket)!, p.GetValue(uid), ct)));
        var parse = new RootCommand("MinBFT USIG: a trusted counter in a process of its own") { init, serve }.Parse(args);
        var exit = await parse.InvokeAsync().ConfigureAwait(false);
        return parse.Errors.Count > 0 ? 2 : exit;
    }

    private static async Task<int> Run(Func<Task> body)
    {
        try
        {
            await body().ConfigureAwait(false);
            return 0;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            await Console.Error.WriteLineAsync("usig: " + e.Message).ConfigureAwait(false);
            return 1;
        }
    }

    /// <summary>
    /// Serves on the calling thread, with blocking socket calls: one client, one request at a
    /// time, so a thread that sleeps in recv(2) between requests is all the program needs. An
    /// asynchronous loop cost a thread-pool hop per request and idle pool threads spinning after
    /// each, several times the CPU of the work itself (README, "Cost of isolation").
    /// </summary>
    private static async Task ServeAsync(string statePath, int replicaId, ulong epoch, string keyPath, string socketPath, uint allowedUid, CancellationToken cancellationToken)
    {
        using var store = FileCounterStore.Open(statePath, replicaId, create: false);
        var core = new UsigCore(replicaId, epoch, UsigKeyFile.Load(keyPath), store);
        var state = await core.LoadAsync(cancellationToken).ConfigureAwait(false); // refuses a missing, foreign or corrupted state
        var server = new UsigServer(core);
        RemoveStaleSocket(socketPath);
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(socketPath));
        File.SetUnixFileMode(socketPath, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        listener.Listen(1);
        Console.WriteLine($"usig: replica {replicaId} epoch {epoch} counter {state.Counter} (keeping {state.KeptMessages.Length} messages) scheme {core.Certifier.Scheme} listening on {socketPath} for uid {allowedUid}");
        Socket? current = null;
        // Stopping (SIGTERM, Ctrl+C) closes the sockets, which ends the blocking call in progress.
        using var stopping = cancellationToken.Register(() =>
        {
            listener.Dispose();
            Volatile.Read(ref current)?.Dispose();
        });
        while (!cancellationToken.IsCancellationRequested)
        {
            // One client at a time: the next connection is accepted when this one ends.
            Socket client;
            try
            {
                client = listener.Accept();
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException && cancellationToken.IsCancellationRequested)
            {
                break;
            }
            using (client)
            {
                Volatile.Write(ref current, client);
                if (cancellationToken.IsCancellationRequested) break;
                var peer = PeerCredentials.Of(client)?.UserId;
                if (peer != allowedUid)
                {
                    Console.Error.WriteLine($"usig: refused a connection from uid {peer?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "unknown"}");
                    continue;
                }
                Serve(client, server, cancellationToken);
                Volatile.Write(ref current, null);
            }
        }
        cancellationToken.ThrowIfCancellationRequested();
    }

    private static void Serve(Socket client, UsigServer server, CancellationToken cancellationToken)
    {
        using var stream = new NetworkStream(client);
        try
        {
            // The store is a file written synchronously: a request completes on this thread.
            while (UsigWire.ReadFrame(stream) is { } request)
                UsigWire.WriteFrame(stream, server.HandleAsync(request, cancellationToken).GetAwaiter().GetResult());
        }
        catch (Exception e) when (e is IOException or SocketException or InvalidDataException or ObjectDisposedException)
        {
            if (cancellationToken.IsCancellationRequested) return;
            // A frame length out of bounds cannot be skipped: say why, then drop the connection.
            if (e is InvalidDataException) TrySend(stream, UsigWire.ErrorBody(e.Message));
            Console.Error.WriteLine($"usig: connection closed: {e.Message}");
        }
    }

    /// <summary>A socket left by a killed predecessor. Only a socket is removed: open(2) of a socket fails.</summary>
    private static void RemoveStaleSocket(string path)
    {
        if (!File.Exists(path)) return;
        try
        {
            File.OpenHandle(path).Dispose();
        }
        catch (IOException)
        {
            File.Delete(path);
            return;
        }
        throw new IOException($"{path} exists and is not a socket; refusing to replace it");
    }

    private static void TrySend(Stream stream, byte[] body)
    {
        try
        {
            UsigWire.WriteFrame(stream, body);
        }
        catch (IOException)
        {
        }
    }
}
