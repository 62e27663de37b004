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
    private readonly Channel<PooledIdentity> _free;
    private readonly FileStream? _directoryLock;

    private ClientIdentityPool(IReadOnlyList<PooledIdentity> identities, FileStream? directoryLock)
    {
        Identities = identities;
        _directoryLock = directoryLock;
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
            // Sequence numbers must keep growing across restarts, but are not stored: start from
            // the wall clock in microseconds. One identity completes far fewer than one request
            // per microsecond, so the previous run's numbers stay below the new start as long as
            // the clock does not go back by more than the time between runs.
            var firstSeq = (ulong)Math.Max(1, (now - DateTimeOffset.UnixEpoch).Ticks / 10);
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
            return new ClientIdentityPool(identities, directoryLock);
        }
        catch
        {
            directoryLock.Dispose();
            throw;
        }
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
    public ulong TakeSeq() => _nextSeq++;

    /// <summary>The MAC sessions this identity opened last (lease holder only), and when.</summary>
    public ClientSession? Session { get; set; }

    public long SessionOpenedAt { get; set; }
}
