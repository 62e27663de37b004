using System.Globalization;
using System.Threading.Channels;
using MinBft.Crypto;
using Org.BouncyCastle.Security;

namespace MinBft.Client;

/// <summary>
/// A fixed set of client identities, each leased to one request at a time. MinBFT replicas keep
/// only the last executed sequence number (and its reply) per client, so a second concurrent
/// request under one identity would make the first look stale; leasing enforces one
/// outstanding request per identity while letting a process run many requests at once.
/// </summary>
internal sealed class ClientIdentityPool : IDisposable
{
    /// <summary>Sequence numbers reserved at once in the directory's seq file: a run that
    /// needs more reserves again (one synced write per this many requests of one identity).</summary>
    internal const ulong SeqReservation = 1UL << 32;

    private const string SeqFileName = "seq";

    private readonly Channel<PooledIdentity> _free;
    private readonly FileStream? _directoryLock;
    private readonly Lock _reserveLock = new();
    private readonly string? _seqFile;
    private ulong _reservedTo;

    private ClientIdentityPool(IReadOnlyList<PooledIdentity> identities, FileStream? directoryLock, string? seqFile = null, ulong reservedTo = ulong.MaxValue)
    {
        Identities = identities;
        _directoryLock = directoryLock;
        _seqFile = seqFile;
        _reservedTo = reservedTo;
        foreach (var identity in identities) identity.Pool = this;
        _free = Channel.CreateUnbounded<PooledIdentity>();
        foreach (var identity in identities) _free.Writer.TryWrite(identity);
    }

    public IReadOnlyList<PooledIdentity> Identities { get; }

    /// <summary>Fresh keys, sequence numbers from 1: nobody has seen these identities before.</summary>
    public static ClientIdentityPool CreateEphemeral(int size)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 1);
        var random = new SecureRandom();
        var identities = Enumerable.Range(0, size)
            .Select(_ => new PooledIdentity(new ClientSigner(Ed25519KeyPair.Generate(random)), firstSeq: 1))
            .ToArray();
        return new ClientIdentityPool(identities, null);
    }

    /// <summary>
    /// Keys loaded from (or created in) <paramref name="directory"/>, so a process keeps its client
    /// identities across restarts. The directory is locked for the pool's lifetime: two processes
    /// sharing identities would race on sequence numbers and see each other's requests as stale.
    /// </summary>
    public static ClientIdentityPool LoadOrCreate(string directory, int size, DateTimeOffset now)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 1);
        if (OperatingSystem.IsWindows()) Directory.CreateDirectory(directory);
        else Directory.CreateDirectory(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);

        FileStream directoryLock;
        try
        {
            // FileShare.None is an exclusive advisory lock on Unix too (.NET takes flock).
            directoryLock = new FileStream(Path.Combine(directory, ".lock"), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException e)
        {
            throw new MinBftException($"client key directory {directory} is in use by another process", e);
        }

        try
        {
            // Sequence numbers must keep growing across restarts, also when the wall clock steps
            // back (a reused seq would be refused, or with another operation taken for the old
            // one): start above both the clock in microseconds and every number an earlier run
            // reserved, and reserve (durably) before using any. The directory lock keeps this
            // process the only one using the file.
            var seqFile = Path.Combine(directory, SeqFileName);
            var firstSeq = Math.Max((ulong)Math.Max(1, (now - DateTimeOffset.UnixEpoch).Ticks / 10), ReadReserved(seqFile) + 1);
            var reservedTo = firstSeq + SeqReservation - 1;
            WriteReserved(seqFile, reservedTo);
            var random = new SecureRandom();
            var identities = new PooledIdentity[size];
            for (var i = 0; i < size; i++)
            {
                var path = Path.Combine(directory, string.Create(CultureInfo.InvariantCulture, $"client-{i}.key"));
                Ed25519KeyPair keys;
                if (File.Exists(path))
                {
                    keys = KeyFiles.LoadPrivateKey(path);
                }
                else
                {
                    keys = Ed25519KeyPair.Generate(random);
                    KeyFiles.SavePrivateKey(path, keys);
                }
                identities[i] = new PooledIdentity(new ClientSigner(keys), firstSeq);
            }
            return new ClientIdentityPool(identities, directoryLock, seqFile, reservedTo);
        }
        catch
        {
            directoryLock.Dispose();
            throw;
        }
    }

    /// <summary>Makes sure <paramref name="seq"/> is reserved in the seq file (a synced write
    /// when it is not yet): no later run starts at or below it.</summary>
    internal void Reserve(ulong seq)
    {
        lock (_reserveLock)
        {
            if (seq <= _reservedTo || _seqFile is null) return;
            var to = seq + SeqReservation - 1;
            WriteReserved(_seqFile, to);
            _reservedTo = to;
        }
    }

    private static ulong ReadReserved(string path)
    {
        if (!File.Exists(path)) return 0;
        var text = File.ReadAllText(path).Trim();
        return ulong.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value)
            ? value
            : throw new MinBftException($"client seq file {path} is corrupt ('{text}'); remove it only if no request of these identities can have used a number above the current time in microseconds");
    }

    // Rewritten in place, 20 digits and a newline (21 bytes, inside one disk sector, so a crash
    // leaves the old or the new value), and synced before any of the numbers is used.
    private static void WriteReserved(string path, ulong value)
    {
        using var file = File.OpenHandle(path, FileMode.OpenOrCreate, FileAccess.Write, FileShare.None);
        RandomAccess.Write(file, System.Text.Encoding.ASCII.GetBytes(value.ToString("D20", CultureInfo.InvariantCulture) + "\n"), 0);
        RandomAccess.FlushToDisk(file);
    }

    /// <summary>Waits for a free identity; dispose the lease to give it back.</summary>
    public async ValueTask<Lease> LeaseAsync(CancellationToken cancellationToken)
    {
        var identity = await _free.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        return new Lease(this, identity);
    }

    public void Dispose() => _directoryLock?.Dispose();

    private void Return(PooledIdentity identity) => _free.Writer.TryWrite(identity);

    /// <summary>One identity, used by one request at a time.</summary>
    public sealed class Lease : IDisposable
    {
        private ClientIdentityPool? _pool;

        internal Lease(ClientIdentityPool pool, PooledIdentity identity)
        {
            _pool = pool;
            Identity = identity;
        }

        public PooledIdentity Identity { get; }

        public void Dispose() => Interlocked.Exchange(ref _pool, null)?.Return(Identity);
    }
}

/// <summary>A client signing identity and its next sequence number.</summary>
internal sealed class PooledIdentity(ClientSigner signer, ulong firstSeq)
{
    private ulong _nextSeq = firstSeq;

    public ClientSigner Signer { get; } = signer;

    public string ClientId => Signer.ClientId;

    /// <summary>
    /// The sequence number for a new request. Only the lease holder calls this, one request at a
    /// time; a request abandoned after a timeout still used its number, so the next is higher
    /// and replicas treat it as newer.
    /// </summary>
    public ulong TakeSeq()
    {
        Pool?.Reserve(_nextSeq);
        return _nextSeq++;
    }

    /// <summary>The pool whose seq file must cover every number handed out (none: ephemeral identities).</summary>
    internal ClientIdentityPool? Pool { get; set; }

    /// <summary>The MAC sessions this identity opened last (lease holder only), and when.</summary>
    public ClientSession? Session { get; set; }

    public long SessionOpenedAt { get; set; }
}
