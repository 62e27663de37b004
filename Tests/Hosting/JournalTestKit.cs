using System.Collections.Concurrent;
using System.Security.Cryptography;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using MinBft.Hosting;
using MinBft.Hosting.Journal;
using MinBft.Messages;
using MinBft.Tests.Integration;
using Orleans;
using Orleans.Configuration;
using Orleans.Persistence;
using Orleans.Runtime;
using Orleans.Serialization;
using Orleans.Serialization.Serializers;
using Orleans.Storage;
using StackExchange.Redis;
using Request = MinBft.Messages.Request;

namespace MinBft.Tests.Hosting;

/// <summary>Messages, stores and a reference model for the journal tests.</summary>
internal static class JournalKit
{
    public const string Sqlite = "sqlite";
    public const string PlainFile = "file";
    public const string GrainStorage = "grain-storage";
    public const string Redis = "redis";

    public static readonly ServiceProvider Services = new ServiceCollection().AddSerializer().BuildServiceProvider();

    public static Serializer Serializer => Services.GetRequiredService<Serializer>();

    public static readonly GrainId Replica = GrainId.Create("replica", "1");

    /// <summary>The backends every contract test runs on: Redis where a server is available (always under CI=true).</summary>
    public static TheoryData<string> Backends
    {
        get
        {
            var data = new TheoryData<string> { Sqlite, GrainStorage };
            if (OperatingSystem.IsLinux()) data.Add(PlainFile);
            if (RedisTestEnvironment.MissingAnyServer is null || RedisTestEnvironment.IsCi) data.Add(Redis);
            return data;
        }
    }

    /// <summary>
    /// A COMMIT as a backup logs it before its UI exists: it carries the primary's PREPARE with a
    /// batch of signed requests (random bytes of the real sizes). <paramref name="tag"/> makes two
    /// intents for the same counter differ.
    /// </summary>
    public static Commit Intent(ulong counter, int requests = 2, long view = 0, int tag = 0)
    {
        var batch = new Request[requests];
        for (var i = 0; i < requests; i++)
        {
            batch[i] = new Request(
                Convert.ToHexString(SHA256.HashData(BitConverter.GetBytes(i + (tag * 1000)))).ToLowerInvariant(),
                Filled(32, counter, i),
                counter * 100 + (ulong)i,
                Filled(64, counter + (ulong)tag, i + 1),
                Filled(64, counter, i + 2));
        }
        var prepare = new Prepare(view, 0, counter, batch, new UniqueIdentifier(1, counter, Filled(64, counter, 7)));
        return new Commit(view, 1, prepare, UniqueIdentifier.None);
    }

    public static UniqueIdentifier Ui(ulong counter, int variant = 0) => new(1, counter, Filled(64, counter, 100 + variant));

    public static byte[] Filled(int length, ulong seed, int salt)
    {
        var bytes = new byte[length];
        new Random(HashCode.Combine(seed, salt)).NextBytes(bytes);
        return bytes;
    }

    public static byte[] Bytes(CertifiedMessage message) => Serializer.SerializeToArray(message);

    public static JournalAppend Append(long view, ulong first, CertifiedMessage[] intents, UniqueIdentifier[]? uis = null, ulong keepFrom = 0) =>
        new(view, first, intents, uis ?? [], keepFrom);

    public static CertifiedMessage[] Intents(ulong first, int count, int tag = 0, int requests = 2) =>
        Enumerable.Range(0, count).Select(i => (CertifiedMessage)Intent(first + (ulong)i, requests, tag: tag)).ToArray();

    public static async Task<JournalContents> OpenAsync(this IReplicaJournal journal) =>
        await journal.OpenAsync(CancellationToken.None);

    public static Task AppendAsync(this IReplicaJournal journal, JournalAppend append) => journal.AppendAsync(append, CancellationToken.None);


    public static Task RestartAtAsync(this IReplicaJournal journal, ulong counter) => journal.RestartAtAsync(counter, CancellationToken.None);

    public static JournalBackend Create(string backend, string? redis = null) => backend switch
    {
        PlainFile when OperatingSystem.IsLinux() => new FileJournalBackend(),
        Sqlite => new SqliteJournalBackend(),
        GrainStorage => new GrainStorageJournalBackend(),
        Redis => new RedisJournalBackend(redis),
        _ => throw new ArgumentOutOfRangeException(nameof(backend), backend, null),
    };
}

/// <summary>What a journal should hold, by the contract, kept beside it.</summary>
internal sealed class JournalModel
{
    private readonly List<CertifiedMessage> _entries = [];

    public long View { get; private set; }

    public ulong First { get; private set; } = 1;

    public ulong Next => First + (ulong)_entries.Count;

    public int Count => _entries.Count;

    public CertifiedMessage At(ulong counter) => _entries[(int)(counter - First)];

    public bool HasUi(ulong counter) => !At(counter).Ui.IsNone;

    public void Append(JournalAppend append)
    {
        View = append.View;
        _entries.AddRange(append.Intents);
        foreach (var ui in append.Uis)
        {
            var i = (int)(ui.Counter - First);
            if (_entries[i].Ui.IsNone) _entries[i] = _entries[i].WithUi(ui);
        }
        if (append.KeepFrom > First)
        {
            _entries.RemoveRange(0, (int)(append.KeepFrom - First));
            First = append.KeepFrom;
        }
    }


    public void RestartAt(ulong counter)
    {
        _entries.Clear();
        First = counter;
    }

    public void AssertMatches(JournalContents contents)
    {
        Assert.Equal(View, contents.View);
        Assert.Equal(First, contents.FirstCounter);
        Assert.Equal(_entries.Count, contents.Entries.Count);
        for (var i = 0; i < _entries.Count; i++)
        {
            var counter = First + (ulong)i;
            Assert.True(
                JournalKit.Bytes(_entries[i]).AsSpan().SequenceEqual(JournalKit.Bytes(contents.Entries[i])),
                $"entry at counter {counter} differs (UI stored: {!contents.Entries[i].Ui.IsNone}, expected: {!_entries[i].Ui.IsNone})");
        }
    }
}

/// <summary>A store of journals for one replica: <see cref="Create"/> is a new activation (or a restart) over the same store.</summary>
internal abstract class JournalBackend : IAsyncDisposable
{
    private readonly List<IReplicaJournal> _journals = [];

    public abstract IReplicaJournal Create();

    /// <summary>Opens a new journal over the same store (what a restarted replica reads); earlier instances are fenced by it.</summary>
    public async Task<JournalContents> ReloadAsync()
    {
        var journal = Create();
        return await journal.OpenAsync();
    }

    /// <summary>A restart: a new journal over the same store takes over (the previous instance is fenced).</summary>
    public async Task<(IReplicaJournal Journal, JournalContents Contents)> ReopenAsync()
    {
        var journal = Create();
        return (journal, await journal.OpenAsync());
    }

    protected T Track<T>(T journal) where T : IReplicaJournal
    {
        _journals.Add(journal);
        return journal;
    }

    public virtual async ValueTask DisposeAsync()
    {
        foreach (var journal in _journals) await journal.DisposeAsync();
    }
}

/// <summary>The file journal in a temporary directory; <see cref="MinCompactionBytes"/> small enough to compact in a test.</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
internal sealed class FileJournalBackend(long minCompactionBytes = 8 * 1024 * 1024, long preallocationBytes = 1024 * 1024) : JournalBackend
{
    public string Directory { get; } = Path.Combine(Path.GetTempPath(), "minbft-journal-file-" + Guid.NewGuid().ToString("N"));

    public long MinCompactionBytes => minCompactionBytes;

    public FileReplicaJournalFactory Factory => new(
        new FileReplicaJournalOptions { DataDirectory = Directory, FaultDomain = 0, MinCompactionBytes = minCompactionBytes, PreallocationBytes = preallocationBytes },
        JournalKit.Serializer,
        NullLoggerFactory.Instance);

    /// <summary>The SQLite journals an earlier build kept in the same data directory (moved into files on open).</summary>
    public SqliteReplicaJournalFactory EarlierSqliteJournals => new(
        new SqliteReplicaJournalOptions { DataDirectory = Directory, FaultDomain = 0 },
        JournalKit.Serializer,
        NullLoggerFactory.Instance);

    public override IReplicaJournal Create() => CreateFile();

    public FileReplicaJournal CreateFile() => Track((FileReplicaJournal)Factory.Create(JournalKit.Replica));

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        if (System.IO.Directory.Exists(Directory)) System.IO.Directory.Delete(Directory, recursive: true);
    }
}

internal sealed class SqliteJournalBackend : JournalBackend
{
    public SqliteJournalBackend()
    {
        Directory = Path.Combine(Path.GetTempPath(), "minbft-journal-" + Guid.NewGuid().ToString("N"));
        Factory = new SqliteReplicaJournalFactory(
            new SqliteReplicaJournalOptions { DataDirectory = Directory, FaultDomain = 0 },
            JournalKit.Serializer,
            NullLoggerFactory.Instance);
    }

    public string Directory { get; }

    public SqliteReplicaJournalFactory Factory { get; }

    public override IReplicaJournal Create() => CreateSqlite();

    public SqliteReplicaJournal CreateSqlite() => Track((SqliteReplicaJournal)Factory.Create(JournalKit.Replica));

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        if (System.IO.Directory.Exists(Directory)) System.IO.Directory.Delete(Directory, recursive: true);
    }
}

/// <summary>The grain-storage journal over the project's SQLite grain storage (real ETag rules, on disk), through a <see cref="FaultyGrainStorage"/>.</summary>
internal sealed class GrainStorageJournalBackend : JournalBackend
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "minbft-journal-gs-" + Guid.NewGuid().ToString("N"));
    private readonly SqliteGrainStorage _inner;

    public GrainStorageJournalBackend(int trimRecords = 4)
    {
        TrimRecords = trimRecords;
        _inner = new SqliteGrainStorage(
            "minbft",
            new SqliteGrainStorageOptions { DataDirectory = _directory, FaultDomain = 0 },
            new OrleansGrainStorageSerializer(JournalKit.Serializer),
            JournalKit.Services.GetRequiredService<IActivatorProvider>(),
            NullLogger<SqliteGrainStorage>.Instance);
        Storage = new FaultyGrainStorage(_inner);
    }

    public int TrimRecords { get; }

    public FaultyGrainStorage Storage { get; }

    public override IReplicaJournal Create() => CreateJournal();

    public GrainStorageReplicaJournal CreateJournal() =>
        Track(new GrainStorageReplicaJournal(Storage, JournalKit.Replica, NullLogger<GrainStorageReplicaJournal>.Instance, TrimRecords));

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        _inner.Dispose();
        if (Directory.Exists(_directory)) Directory.Delete(_directory, recursive: true);
    }
}

/// <summary>The grain-storage journal on a real Redis server, configured as the silo configures it.</summary>
internal sealed class RedisJournalBackend : JournalBackend
{
    private readonly string _connection;
    private readonly List<ILifecycleObserver> _started = [];
    private readonly string _serviceId = "minbft-journal-test-" + Guid.NewGuid().ToString("N");

    public RedisJournalBackend(string? connection)
    {
        RedisTestEnvironment.Require(RedisTestEnvironment.MissingAnyServer);
        _connection = connection ?? throw new InvalidOperationException("no Redis server for the journal tests");
        var options = new RedisStorageOptions();
        JournalSiloBuilderExtensions.ConfigureJournalStorage(
            options, RedisConnection.Parse(_connection, RedisTestEnvironment.EndpointVariable), JournalKit.Serializer);
        var storage = new RedisGrainStorage(
            JournalSiloBuilderExtensions.RedisJournalStorageName,
            options,
            options.GrainStorageSerializer,
            Options.Create(new ClusterOptions { ServiceId = _serviceId, ClusterId = "test" }),
            JournalKit.Services.GetRequiredService<IActivatorProvider>(),
            NullLogger<RedisGrainStorage>.Instance);
        var lifecycle = new CollectingLifecycle();
        ((ILifecycleParticipant<ISiloLifecycle>)storage).Participate(lifecycle);
        foreach (var observer in lifecycle.Observers)
        {
            observer.OnStart(CancellationToken.None).GetAwaiter().GetResult();
            _started.Add(observer);
        }
        Storage = new FaultyGrainStorage(storage);
    }

    public FaultyGrainStorage Storage { get; }

    public override IReplicaJournal Create() =>
        Track(new GrainStorageReplicaJournal(Storage, JournalKit.Replica, NullLogger<GrainStorageReplicaJournal>.Instance, trimRecords: 4));

    /// <summary>The keys this test left on the server.</summary>
    public async Task<List<string>> KeysAsync()
    {
        using var redis = await ConnectionMultiplexer.ConnectAsync(_connection);
        var server = redis.GetServer(redis.GetEndPoints()[0]);
        var keys = new List<string>();
        await foreach (var key in server.KeysAsync(pattern: _serviceId + "/*")) keys.Add(key.ToString());
        return keys;
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        foreach (var observer in _started) await observer.OnStop(CancellationToken.None);
        using var redis = await ConnectionMultiplexer.ConnectAsync(_connection);
        var database = redis.GetDatabase();
        foreach (var key in await KeysAsync()) await database.KeyDeleteAsync(key);
    }

    private sealed class CollectingLifecycle : ISiloLifecycle
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

/// <summary>How an injected write failure behaves.</summary>
internal enum WriteFailure
{
    /// <summary>Throws without writing.</summary>
    Before,

    /// <summary>Writes, then throws: the caller cannot tell it landed (a timeout after the server applied it).</summary>
    After,

    /// <summary>Throws without writing now; the write lands later, when <see cref="FaultyGrainStorage.LandDelayedAsync"/> is called.</summary>
    Delayed,
}

/// <summary>
/// An <see cref="IGrainStorage"/> wrapper that records every call (by state name, with the state
/// written) and fails chosen writes or clears.
/// </summary>
internal sealed class FaultyGrainStorage(IGrainStorage inner) : IGrainStorage
{
    private readonly ConcurrentQueue<(string Operation, string StateName, object? State)> _calls = new();
    private readonly ConcurrentQueue<(WriteFailure Failure, Func<string, bool> Where)> _writeFailures = new();
    private readonly List<Func<Task>> _delayed = [];

    public IGrainStorage Inner => inner;

    /// <summary>Called before each write reaches the store.</summary>
    public Func<string, Task>? BeforeWrite { get; set; }

    /// <summary>Clears of states matching this throw (without clearing).</summary>
    public Func<string, bool>? FailClears { get; set; }

    public IReadOnlyList<(string Operation, string StateName, object? State)> Calls => [.. _calls];

    public void ResetCalls() => _calls.Clear();

    public List<(string StateName, object? State)> Writes() => [.. _calls.Where(c => c.Operation == "write").Select(c => (c.StateName, c.State))];

    /// <summary>The next write whose state name matches <paramref name="where"/> (default: any) fails as <paramref name="failure"/> says.</summary>
    public void FailNextWrite(WriteFailure failure, Func<string, bool>? where = null) => _writeFailures.Enqueue((failure, where ?? (_ => true)));

    /// <summary>Write failures injected so far.</summary>
    public int Injected => Volatile.Read(ref _injected);

    /// <summary>Drops the write failures not injected yet.</summary>
    public void ClearFailures() => _writeFailures.Clear();

    private int _injected;

    public async Task LandDelayedAsync()
    {
        foreach (var write in _delayed) await write();
        _delayed.Clear();
    }

    public Task ReadStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState) =>
        ReadStateAsync(stateName, grainId, grainState, CancellationToken.None);

    public Task ReadStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState, CancellationToken cancellationToken)
    {
        _calls.Enqueue(("read", stateName, null));
        return inner.ReadStateAsync(stateName, grainId, grainState, cancellationToken);
    }

    public Task WriteStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState) =>
        WriteStateAsync(stateName, grainId, grainState, CancellationToken.None);

    public async Task WriteStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState, CancellationToken cancellationToken)
    {
        _calls.Enqueue(("write", stateName, grainState.State));
        if (BeforeWrite is { } before) await before(stateName);
        if (_writeFailures.TryPeek(out var next) && next.Where(stateName))
        {
            _writeFailures.TryDequeue(out _);
            Interlocked.Increment(ref _injected);
            switch (next.Failure)
            {
                case WriteFailure.Before:
                    throw new IOException($"injected failure before writing {stateName}");
                case WriteFailure.After:
                    await inner.WriteStateAsync(stateName, grainId, grainState, cancellationToken);
                    throw new IOException($"injected failure after writing {stateName}");
                case WriteFailure.Delayed:
                    // The write lands later, as it was sent: same state, no ETag change by the caller.
                    var copy = new GrainState<T>(grainState.State) { ETag = grainState.ETag, RecordExists = grainState.RecordExists };
                    _delayed.Add(() => inner.WriteStateAsync(stateName, grainId, copy, CancellationToken.None));
                    throw new TimeoutException($"injected timeout writing {stateName}; it lands later");
            }
        }
        await inner.WriteStateAsync(stateName, grainId, grainState, cancellationToken);
    }

    public Task ClearStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState) =>
        ClearStateAsync(stateName, grainId, grainState, CancellationToken.None);

    public Task ClearStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState, CancellationToken cancellationToken)
    {
        _calls.Enqueue(("clear", stateName, null));
        if (FailClears?.Invoke(stateName) == true) throw new IOException($"injected failure clearing {stateName}");
        return inner.ClearStateAsync(stateName, grainId, grainState, cancellationToken);
    }

    /// <summary>Whether a record of the journal exists in the store (read around the wrapper).</summary>
    public async Task<GrainState<JournalRecord>> ReadRecordAsync(long index)
    {
        var state = new GrainState<JournalRecord>(new JournalRecord());
        await inner.ReadStateAsync(GrainStorageReplicaJournal.RecordName(index), JournalKit.Replica, state);
        return state;
    }
}
