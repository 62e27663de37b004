using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using BenchmarkDotNet.Attributes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using MinBft.Crypto;
using MinBft.Hosting;
using MinBft.Hosting.Journal;
using MinBft.Messages;
using Orleans;
using Orleans.Configuration;
using Orleans.Persistence;
using Orleans.Runtime;
using Orleans.Serialization;
using Orleans.Serialization.Serializers;
using Orleans.Storage;
using Org.BouncyCastle.Security;
using Request = MinBft.Messages.Request;

namespace MinBft.Benchmarks;

/// <summary>
/// What one durable write of a replica's own stream costs on the embedded store
/// (<see cref="FileReplicaJournal"/>, and <see cref="SqliteReplicaJournal"/> before it), on the stream a backup produces under load (see
/// <see cref="JournalStream"/>). Every store is durable (WAL, synchronous=FULL).
/// <see cref="Medium"/> "disk" is the VM's disk; "tmpfs" (/dev/shm) makes fsync nearly free,
/// which leaves each store's CPU cost. The baseline is the smallest durable write there is:
/// one UI (about the size of the USIG's counter state) to the same SQLite grain storage.
/// </summary>
[MemoryDiagnoser]
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public class JournalBenchmarks
{
    private JournalWorkload _workload = null!;
    private string _directory = "";
    private SqliteGrainStorage _baselineStorage = null!;
    private SqliteReplicaJournal _journal = null!;
    private JournalStream _journalStream = null!;
    private FileReplicaJournal _fileJournal = null!;
    private JournalStream _fileJournalStream = null!;
    private FileReplicaJournal _appendedJournal = null!;
    private JournalStream _appendedJournalStream = null!;

    [Params(16, 64)]
    public int RequestsPerBatch { get; set; }

    [Params("disk", "tmpfs")]
    public string Medium { get; set; } = "disk";

    [GlobalSetup]
    public void Setup()
    {
        _workload = new JournalWorkload(RequestsPerBatch);
        _directory = Path.Combine(Medium == "tmpfs" ? "/dev/shm" : Path.GetTempPath(), "minbft-journal-bench-" + Guid.NewGuid().ToString("N"));
        _baselineStorage = Storage("baseline");
        _journal = new SqliteReplicaJournal(
            Path.Combine(_directory, "journal", "journal.db"), JournalWorkload.Replica.ToString(), _workload.Serializer, TimeSpan.FromSeconds(5), NullLogger<SqliteReplicaJournal>.Instance);
        _journal.OpenAsync(CancellationToken.None).GetAwaiter().GetResult();
        _journalStream = new JournalStream(_workload);
        var defaults = new FileReplicaJournalOptions();
        _fileJournal = new FileReplicaJournal(
            Path.Combine(_directory, "files", "replica.journal"), JournalWorkload.Replica.ToString(), _workload.Serializer,
            defaults.MinCompactionBytes, defaults.PreallocationBytes, legacy: null, NullLogger<FileReplicaJournal>.Instance);
        _fileJournal.OpenAsync(CancellationToken.None).GetAwaiter().GetResult();
        _fileJournalStream = new JournalStream(_workload);
        _appendedJournal = new FileReplicaJournal(
            Path.Combine(_directory, "appended", "replica.journal"), JournalWorkload.Replica.ToString(), _workload.Serializer,
            defaults.MinCompactionBytes, preallocationBytes: 0, legacy: null, NullLogger<FileReplicaJournal>.Instance);
        _appendedJournal.OpenAsync(CancellationToken.None).GetAwaiter().GetResult();
        _appendedJournalStream = new JournalStream(_workload);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _journal.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _fileJournal.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _appendedJournal.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _baselineStorage.Dispose();
        _workload.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    [Benchmark(Baseline = true, Description = "one small durable grain-storage write (baseline)")]
    public Task SmallWrite() => _workload.SmallWriteAsync(_baselineStorage);

    [Benchmark(Description = "SqliteReplicaJournal (embedded before stop 38)")]
    public Task Journal() => _journal.AppendAsync(_journalStream.Next(), CancellationToken.None);

    [Benchmark(Description = "FileReplicaJournal (embedded on Linux)")]
    public Task FileJournal() => _fileJournal.AppendAsync(_fileJournalStream.Next(), CancellationToken.None);

    [Benchmark(Description = "FileReplicaJournal appending at the file's end (stop 38)")]
    public Task AppendedFileJournal() => _appendedJournal.AppendAsync(_appendedJournalStream.Next(), CancellationToken.None);

    private SqliteGrainStorage Storage(string name) => new(
        name,
        new SqliteGrainStorageOptions { DataDirectory = Path.Combine(_directory, name), FaultDomain = 0 },
        new OrleansGrainStorageSerializer(_workload.Serializer),
        _workload.Services.GetRequiredService<IActivatorProvider>(),
        NullLogger<SqliteGrainStorage>.Instance);
}

/// <summary>
/// The same on the Redis deployment: the record journal over the Orleans Redis grain storage as
/// MinBFT configures it, on a <c>redis-server</c> this
/// benchmark starts with <c>appendonly yes, appendfsync always</c> (durable like the SQLite
/// stores) and stops by process id. Skipped (throws at setup) without <c>redis-server</c>.
/// </summary>
[MemoryDiagnoser]
public class RedisJournalBenchmarks
{
    private JournalWorkload _workload = null!;
    private Process? _redis;
    private string _directory = "";
    private readonly List<ILifecycleObserver> _started = [];
    private IGrainStorage _storage = null!;
    private IGrainStorage _journalStorage = null!;
    private GrainStorageReplicaJournal _journal = null!;
    private JournalStream _journalStream = null!;

    [Params(16, 64)]
    public int RequestsPerBatch { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _workload = new JournalWorkload(RequestsPerBatch);
        _directory = Path.Combine(Path.GetTempPath(), "minbft-journal-bench-redis-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_directory);
        var port = FreePort();
        var start = new ProcessStartInfo("redis-server") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in new[]
        {
            "--port", port.ToString(CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--dir", _directory,
            "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--daemonize", "no", "--loglevel", "warning",
        })
        {
            start.ArgumentList.Add(argument);
        }
        _redis = Process.Start(start) ?? throw new InvalidOperationException("redis-server did not start");
        var connection = string.Create(CultureInfo.InvariantCulture, $"127.0.0.1:{port}");
        WaitForRedis(port);

        var storageOptions = new RedisStorageOptions();
        MinBftRedisExtensions.ConfigureStorage(storageOptions, RedisConnection.Parse(connection, "bench"), _workload.Serializer);
        _storage = Redis(SqliteGrainStorageSiloBuilderExtensions.DefaultProviderName, storageOptions);
        var journalOptions = new RedisStorageOptions();
        JournalSiloBuilderExtensions.ConfigureJournalStorage(journalOptions, RedisConnection.Parse(connection, "bench"), _workload.Serializer);
        _journalStorage = Redis(JournalSiloBuilderExtensions.RedisJournalStorageName, journalOptions);

        _journal = new GrainStorageReplicaJournal(_journalStorage, JournalWorkload.Replica, NullLogger<GrainStorageReplicaJournal>.Instance);
        _journal.OpenAsync(CancellationToken.None).GetAwaiter().GetResult();
        _journalStream = new JournalStream(_workload);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _journal.DisposeAsync().AsTask().GetAwaiter().GetResult();
        foreach (var observer in _started) observer.OnStop(CancellationToken.None).GetAwaiter().GetResult();
        if (_redis is { HasExited: false })
        {
            _redis.Kill();
            _redis.WaitForExit(5000);
        }
        _redis?.Dispose();
        _workload.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    [Benchmark(Baseline = true, Description = "one small durable Redis grain-storage write (baseline)")]
    public Task SmallWrite() => _workload.SmallWriteAsync(_storage);

    [Benchmark(Description = "new: GrainStorageReplicaJournal on Redis")]
    public Task Journal() => _journal.AppendAsync(_journalStream.Next(), CancellationToken.None);

    private IGrainStorage Redis(string name, RedisStorageOptions options)
    {
        var storage = new RedisGrainStorage(
            name,
            options,
            options.GrainStorageSerializer,
            Options.Create(new ClusterOptions { ServiceId = "bench", ClusterId = "bench" }),
            _workload.Services.GetRequiredService<IActivatorProvider>(),
            NullLogger<RedisGrainStorage>.Instance);
        var lifecycle = new Lifecycle();
        ((ILifecycleParticipant<ISiloLifecycle>)storage).Participate(lifecycle);
        foreach (var observer in lifecycle.Observers)
        {
            observer.OnStart(CancellationToken.None).GetAwaiter().GetResult();
            _started.Add(observer);
        }
        return storage;
    }

    private static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    private static void WaitForRedis(int port)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(15))
        {
            try
            {
                using var client = new TcpClient();
                client.Connect(IPAddress.Loopback, port);
                return;
            }
            catch (SocketException)
            {
                Thread.Sleep(20);
            }
        }
        throw new InvalidOperationException($"redis-server on port {port} did not accept connections");
    }

    private sealed class Lifecycle : ISiloLifecycle
    {
        public List<ILifecycleObserver> Observers { get; } = [];

        public int HighestCompletedStage => ServiceLifecycleStage.Active;

        public int LowestStoppedStage => ServiceLifecycleStage.Active;

        public IDisposable Subscribe(string observerName, int stage, ILifecycleObserver observer)
        {
            Observers.Add(observer);
            return new Nothing();
        }

        private sealed class Nothing : IDisposable
        {
            public void Dispose()
            {
            }
        }
    }
}

/// <summary>
/// The messages of the benchmarks: COMMIT intents carrying the PREPARE with a batch of
/// distinct signed requests (no two messages within 256 counters share an object, so the
/// serializer's reference tracking cannot make a stored segment look smaller than it is).
/// </summary>
internal sealed class JournalWorkload : IDisposable
{
    public const int IntentsPerAppend = 2;
    public const int CheckpointInterval = 64;
    private const int Ring = 256;

    public static readonly GrainId Replica = GrainId.Create("replica", "0");
    private static readonly GrainId Usig = GrainId.Create("usig", "0");

    private readonly Request[][] _batches;
    private readonly GrainState<UniqueIdentifier> _smallState = new(UniqueIdentifier.None);
    private ulong _smallWrites;

    public JournalWorkload(int requestsPerBatch)
    {
        Services = new ServiceCollection().AddSerializer().BuildServiceProvider();
        Serializer = Services.GetRequiredService<Serializer>();
        // Real signatures from 64 clients over 64-byte operations; every request in the ring is
        // its own object graph (copied strings and arrays).
        var random = new SecureRandom();
        var signed = Enumerable.Range(0, 64).Select(i =>
        {
            var operation = new byte[64];
            random.NextBytes(operation);
            return new ClientSigner(Ed25519KeyPair.Generate(random)).CreateRequest((ulong)i + 1, operation);
        }).ToArray();
        _batches = new Request[Ring][];
        for (var b = 0; b < Ring; b++)
        {
            _batches[b] = new Request[requestsPerBatch];
            for (var i = 0; i < requestsPerBatch; i++)
            {
                var r = signed[(b + i) % signed.Length];
                _batches[b][i] = new Request(new string(r.ClientId.AsSpan()), r.ClientPublicKey.ToArray(), r.Seq + (ulong)b, r.Operation.ToArray(), r.Signature.ToArray());
            }
        }
    }

    public ServiceProvider Services { get; }

    public Serializer Serializer { get; }

    public Commit Intent(ulong counter)
    {
        var prepare = new Prepare(1, 0, counter, _batches[counter % Ring], Ui(counter));
        return new Commit(1, 1, prepare, UniqueIdentifier.None);
    }

    public static UniqueIdentifier Ui(ulong counter)
    {
        var certificate = new byte[64];
        Random.Shared.NextBytes(certificate);
        return new UniqueIdentifier(1, counter, certificate);
    }

    public Task SmallWriteAsync(IGrainStorage storage)
    {
        _smallState.State = Ui(++_smallWrites);
        return storage.WriteStateAsync("usig", Usig, _smallState);
    }

    public void Dispose() => Services.Dispose();
}

/// <summary>
/// One store's position in the stream a backup produces under load: each write appends
/// <see cref="JournalWorkload.IntentsPerAppend"/> intents and the UIs of the previous write's
/// intents; every 64 counters a stable checkpoint lets everything below the previous checkpoint go.
/// </summary>
internal sealed class JournalStream(JournalWorkload workload)
{
    private ulong _next = 1;
    private ulong _keepFrom;

    public JournalAppend Next()
    {
        var first = _next;
        var intents = new CertifiedMessage[JournalWorkload.IntentsPerAppend];
        for (var i = 0; i < intents.Length; i++) intents[i] = workload.Intent(first + (ulong)i);
        var uis = first > JournalWorkload.IntentsPerAppend
            ? Enumerable.Range(0, JournalWorkload.IntentsPerAppend).Select(i => JournalWorkload.Ui(first - JournalWorkload.IntentsPerAppend + (ulong)i)).ToArray()
            : [];
        _next += JournalWorkload.IntentsPerAppend;
        var checkpoint = (first - 1) / JournalWorkload.CheckpointInterval * JournalWorkload.CheckpointInterval;
        if (checkpoint >= 2 * JournalWorkload.CheckpointInterval)
            _keepFrom = Math.Max(_keepFrom, checkpoint - JournalWorkload.CheckpointInterval + 1);
        return new JournalAppend(1, first, intents, uis, _keepFrom);
    }
}

