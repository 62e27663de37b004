using System.Globalization;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using MinBft.Usig;

namespace MinBft.Hosting;

/// <summary>What a USIG says about itself (<c>GetIdentity</c>). <see cref="MaxKeptBytes"/>: most
/// bytes of messages a batch may ask it to keep; <see cref="KeptMessages"/>: those the last batch
/// kept, oldest first, the last one certified at <see cref="LastCounter"/> (none: empty).</summary>
public sealed record UsigProgramIdentity(int ReplicaId, ulong Epoch, ulong LastCounter, int ReissueWindow, int MaxBatch, string Scheme, byte[] PublicKey,
    int MaxKeptBytes, byte[][] KeptMessages);

/// <summary>The USIG refused a request or could not serve it (its error message).</summary>
public sealed class UsigRefusedException(string message) : Exception(message);

/// <summary>
/// The silo's side of the USIG wire protocol (<see cref="UsigWire"/>): one connection to fault
/// domain i's USIG program over a Unix domain socket, one request at a time. A connection that
/// fails or times out is dropped and the call throws; the next call connects again (the program
/// may have been restarted). Every operation is safe to retry: a retried CreateUis returns the
/// same UIs. Nothing in an answer is trusted further than its bounds: UIs are verified by peers.
/// </summary>
public sealed class UsigClient(string socketPath, TimeSpan callTimeout) : IDisposable
{
    private readonly SemaphoreSlim _gate = new(1, 1);
    private Socket? _socket;
    private NetworkStream? _stream;

    public string SocketPath => socketPath;

    // The program's process as of the last connection (null: unknown); a restarted program is
    // learnt again at the next connection.
    private volatile StrongBox<int>? _peer;

    /// <summary>The USIG program's process, as last connected to: its key (machine and process id,
    /// as replicas report their silo's) and the CPU time it has used. Null before the first call,
    /// or where the kernel cannot say (<see cref="PeerProcess"/>).</summary>
    public (string Process, TimeSpan Cpu)? PeerProcessCpu()
    {
        if (_peer?.Value is not { } pid || PeerProcess.CpuTimeOf(pid) is not { } cpu) return null;
        return (string.Create(CultureInfo.InvariantCulture, $"{Environment.MachineName}:{pid}"), cpu);
    }

    /// <summary>UIs for <paramref name="digests"/> at counters from <paramref name="firstCounter"/>; the batch keeps nothing.</summary>
    public Task<UsigUi[]> CreateUisAsync(ulong firstCounter, IReadOnlyList<byte[]> digests, CancellationToken cancellationToken) =>
        CreateUisAsync(firstCounter, digests, kept: null, cancellationToken);

    /// <summary>UIs for <paramref name="digests"/> at counters from <paramref name="firstCounter"/>,
    /// the USIG keeping <paramref name="kept"/> (null: none; else one message per digest, at most
    /// <see cref="UsigCore.MaxKeptBytes"/> in all) with the counter, in place of the last batch's.
    /// A request the program would refuse for its shape is refused here (ArgumentException), unsent.</summary>
    public async Task<UsigUi[]> CreateUisAsync(ulong firstCounter, IReadOnlyList<byte[]> digests, IReadOnlyList<byte[]>? kept, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(digests);
        if (kept is not null && (kept.Count != digests.Count || kept.Any(m => m is null) || kept.Sum(m => (long)m.Length) > UsigCore.MaxKeptBytes))
            throw new ArgumentException($"kept messages: one per digest ({digests.Count}), at most {UsigCore.MaxKeptBytes} bytes in all", nameof(kept));
        var request = new WireWriter().U8(UsigWire.CreateUis).U64(firstCounter).U8(checked((byte)digests.Count));
        foreach (var digest in digests) request.Raw(digest);
        request.KeptMessages(kept);
        var r = await CallAsync(request.ToArray(), cancellationToken).ConfigureAwait(false);
        var uis = Enumerable.Range(0, r.Count(r.U8(), UsigCore.MaxBatch, 17)).Select(_ => r.Ui()).ToArray();
        r.End();
        return uis.Length == digests.Count ? uis : throw new InvalidDataException($"the USIG answered {uis.Length} UIs for {digests.Count} digests");
    }

    public async Task<UsigUi?> ReissueUiAsync(ulong counter, byte[] digest, CancellationToken cancellationToken)
    {
        var r = await CallAsync(new WireWriter().U8(UsigWire.ReissueUi).U64(counter).Raw(digest).ToArray(), cancellationToken).ConfigureAwait(false);
        var ui = r.U8() == 1 ? r.Ui() : null;
        r.End();
        return ui;
    }

    public async Task<UsigProgramIdentity> GetIdentityAsync(CancellationToken cancellationToken)
    {
        var r = await CallAsync([UsigWire.GetIdentity], cancellationToken).ConfigureAwait(false);
        var identity = new UsigProgramIdentity(r.I32(), r.U64(), r.U64(), r.I32(), r.I32(), r.Str(), r.Bytes(), r.I32(), r.KeptMessages(UsigCore.MaxBatch));
        r.End();
        return identity;
    }

    /// <summary>HMAC only: which claims are valid. At most <see cref="UsigWire.MaxVerify"/> per call.</summary>
    public async Task<bool[]> VerifyUisAsync(IReadOnlyList<UsigClaim> claims, CancellationToken cancellationToken)
    {
        var request = new WireWriter().U8(UsigWire.VerifyUis).U16(checked((ushort)claims.Count));
        foreach (var c in claims) request.I32(c.ReplicaId).U64(c.Epoch).U64(c.Counter).Raw(c.Digest).Bytes(c.Certificate);
        var r = await CallAsync(request.ToArray(), cancellationToken).ConfigureAwait(false);
        var valid = Enumerable.Range(0, r.Count(r.U16(), UsigWire.MaxVerify, 1)).Select(_ => r.U8() == 1).ToArray();
        r.End();
        return valid.Length == claims.Count ? valid : throw new InvalidDataException($"the USIG answered {valid.Length} results for {claims.Count} claims");
    }

    /// <summary>One request, its response body after the status byte; throws <see cref="UsigRefusedException"/> for an error response.</summary>
    public async Task<WireReader> CallAsync(byte[] request, CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(callTimeout);
            byte[] response;
            try
            {
                var stream = _stream ??= await ConnectAsync(timeout.Token).ConfigureAwait(false);
                await UsigWire.WriteFrameAsync(stream, request, timeout.Token).ConfigureAwait(false);
                response = await UsigWire.ReadFrameAsync(stream, timeout.Token).ConfigureAwait(false)
                    ?? throw new IOException($"the USIG at {socketPath} closed the connection");
            }
            catch (Exception e) when (e is IOException or SocketException or InvalidDataException or OperationCanceledException)
            {
                // The answer, if any, is lost: a new connection for the next call, which retries.
                Drop();
                if (e is OperationCanceledException && !cancellationToken.IsCancellationRequested)
                    throw new TimeoutException($"the USIG at {socketPath} did not answer within {callTimeout}", e);
                throw;
            }
            var reader = new WireReader(response);
            return reader.U8() == UsigWire.Ok
                ? reader
                : throw new UsigRefusedException($"USIG at {socketPath}: {System.Text.Encoding.UTF8.GetString(response.AsSpan(1))}");
        }
        finally
        {
            _gate.Release();
        }
    }

    public void Dispose()
    {
        Drop();
        _gate.Dispose();
    }

    private async Task<NetworkStream> ConnectAsync(CancellationToken cancellationToken)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        _socket = socket;
        if (PeerProcess.IdOf(socket) is { } pid) _peer = new StrongBox<int>(pid);
        return new NetworkStream(socket, ownsSocket: false);
    }

    private void Drop()
    {
        _stream?.Dispose();
        _socket?.Dispose();
        _stream = null;
        _socket = null;
    }
}
