using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using MinBft.Hosting;
using MinBft.Hosting.Journal;
using MinBft.Messages;
using Orleans;
using Orleans.Runtime;
using Orleans.Serialization;
using Orleans.Serialization.Serializers;
using Orleans.Storage;

namespace MinBft.Tests.Hosting;

/// <summary>
/// A replica's stored checkpoint with embedded storage: the service state in a file of its own,
/// named by the checkpoint's record in grain storage, so that a crash at any point leaves one
/// whole checkpoint to restart from.
/// </summary>
public sealed class ReplicaCheckpointStoreTests : IDisposable
{
    private static readonly ServiceProvider SerializerServices = new ServiceCollection().AddSerializer().BuildServiceProvider();

    private readonly string _directory = Path.Combine(Path.GetTempPath(), "minbft-checkpoints-" + Guid.NewGuid().ToString("N"));
    private readonly SqliteGrainStorage _storage;
    private readonly CheckpointSnapshotFiles _files;
    private readonly GrainId _replica = GrainId.Create("replica", "0");

    public ReplicaCheckpointStoreTests()
    {
        _storage = new SqliteGrainStorage(
            "minbft",
            new SqliteGrainStorageOptions { DataDirectory = _directory, FaultDomain = 0 },
            new OrleansGrainStorageSerializer(SerializerServices.GetRequiredService<Serializer>()),
            SerializerServices.GetRequiredService<IActivatorProvider>(),
            NullLogger<SqliteGrainStorage>.Instance);
        _files = new CheckpointSnapshotFiles(Path.Combine(_directory, "minbft-domain-0-checkpoints"), NullLogger<CheckpointSnapshotFiles>.Instance);
    }

    public void Dispose()
    {
        _storage.Dispose();
        if (Directory.Exists(_directory)) Directory.Delete(_directory, recursive: true);
    }

    private static ReplicaCheckpointRecord Record(ulong sequence, byte[] application) => new()
    {
        Certificate = new CheckpointCertificate(sequence, new byte[32], []),
        SnapshotHead = [1, 2, 3],
        SnapshotApplication = application,
        SnapshotTail = [4, 5],
        View = 2,
    };

    private static byte[] State(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    private string[] SnapshotFiles() => Directory.GetFiles(_files.Directory, "*.snapshot");

    private async Task<ReplicaCheckpointRecord> RowAsync()
    {
        var row = new GrainState<ReplicaCheckpointRecord>(new ReplicaCheckpointRecord());
        await _storage.ReadStateAsync("checkpoint", _replica, row);
        return row.State ?? throw new InvalidOperationException("no checkpoint row");
    }

    [Fact]
    public async Task The_service_state_goes_to_a_file_the_record_names_and_comes_back_whole()
    {
        var state = State(300_000, seed: 1);
        await new ReplicaCheckpointStore(_storage, _replica, _files).WriteAsync(Record(64, state));

        var file = Assert.Single(SnapshotFiles());
        var row = await RowAsync();
        Assert.Null(row.SnapshotApplication); // not in the database row
        Assert.Equal(Path.GetFileName(file), row.SnapshotApplicationFile);
        Assert.Equal(state.Length, row.SnapshotApplicationLength);

        var loaded = await new ReplicaCheckpointStore(_storage, _replica, _files).LoadAsync();
        Assert.Equal(64UL, loaded.Certificate!.Sequence);
        Assert.Equal(state, loaded.SnapshotApplication);
        var snapshot = loaded.StoredSnapshot();
        Assert.NotNull(snapshot);
        Assert.Equal([1, 2, 3], snapshot.Head);
        Assert.Equal(state, snapshot.Application);
        Assert.Equal([4, 5], snapshot.Tail);
    }

    [Fact]
    public async Task A_newer_checkpoint_gets_a_new_file_and_the_older_file_is_deleted()
    {
        var store = new ReplicaCheckpointStore(_storage, _replica, _files);
        await store.WriteAsync(Record(64, State(1000, seed: 1)));
        var first = Assert.Single(SnapshotFiles());
        var newer = State(2000, seed: 2);
        await store.WriteAsync(Record(128, newer));

        var second = Assert.Single(SnapshotFiles());
        Assert.NotEqual(first, second);
        Assert.Contains("-128-", Path.GetFileName(second), StringComparison.Ordinal);
        Assert.Equal(newer, (await new ReplicaCheckpointStore(_storage, _replica, _files).LoadAsync()).SnapshotApplication);
    }

    [Fact]
    public async Task A_crash_after_the_file_and_before_the_record_restarts_from_the_older_checkpoint_and_the_next_store_drops_the_file()
    {
        var older = State(1000, seed: 1);
        await new ReplicaCheckpointStore(_storage, _replica, _files).WriteAsync(Record(64, older));
        // The next store wrote its file, then the silo died before the record was written.
        _files.Write(_replica, 128, State(2000, seed: 2));
        Assert.Equal(2, SnapshotFiles().Length);

        var restarted = new ReplicaCheckpointStore(_storage, _replica, _files);
        var loaded = await restarted.LoadAsync();
        Assert.Equal(64UL, loaded.Certificate!.Sequence);
        Assert.Equal(older, loaded.SnapshotApplication);

        var next = State(3000, seed: 3);
        await restarted.WriteAsync(Record(192, next));
        Assert.Contains("-192-", Path.GetFileName(Assert.Single(SnapshotFiles())), StringComparison.Ordinal);
        Assert.Equal(next, (await new ReplicaCheckpointStore(_storage, _replica, _files).LoadAsync()).SnapshotApplication);
    }

    [Fact]
    public async Task Of_two_activations_storing_the_one_whose_record_is_refused_deletes_nothing()
    {
        var first = new ReplicaCheckpointStore(_storage, _replica, _files);
        var second = new ReplicaCheckpointStore(_storage, _replica, _files);
        await first.LoadAsync();
        await second.LoadAsync();
        var winner = State(1000, seed: 1);
        await first.WriteAsync(Record(64, winner));

        await Assert.ThrowsAsync<InconsistentStateException>(() => second.WriteAsync(Record(64, State(1000, seed: 2))));

        Assert.Equal(winner, (await new ReplicaCheckpointStore(_storage, _replica, _files).LoadAsync()).SnapshotApplication);
    }

    [Fact]
    public async Task Another_replicas_files_are_left_alone()
    {
        var other = GrainId.Create("replica", "10");
        await new ReplicaCheckpointStore(_storage, other, _files).WriteAsync(Record(64, State(100, seed: 3)));
        await new ReplicaCheckpointStore(_storage, _replica, _files).WriteAsync(Record(64, State(100, seed: 4)));

        await new ReplicaCheckpointStore(_storage, _replica, _files).LoadAsync();

        Assert.Equal(2, SnapshotFiles().Length);
        Assert.Equal(State(100, seed: 3), (await new ReplicaCheckpointStore(_storage, other, _files).LoadAsync()).SnapshotApplication);
    }

    [Fact]
    public async Task A_missing_or_cut_short_file_stops_the_load_with_a_clear_error()
    {
        await new ReplicaCheckpointStore(_storage, _replica, _files).WriteAsync(Record(64, State(1000, seed: 1)));
        var file = Assert.Single(SnapshotFiles());

        File.WriteAllBytes(file, State(999, seed: 1));
        var cut = await Assert.ThrowsAsync<InvalidDataException>(() => new ReplicaCheckpointStore(_storage, _replica, _files).LoadAsync());
        Assert.Contains("999 bytes, not the 1000", cut.Message, StringComparison.Ordinal);

        File.Delete(file);
        var missing = await Assert.ThrowsAsync<InvalidDataException>(() => new ReplicaCheckpointStore(_storage, _replica, _files).LoadAsync());
        Assert.Contains("is missing", missing.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Without_snapshot_files_the_state_stays_in_the_record()
    {
        var state = State(1000, seed: 1);
        await new ReplicaCheckpointStore(_storage, _replica).WriteAsync(Record(64, state));

        Assert.Equal(state, (await RowAsync()).SnapshotApplication);
        Assert.False(Directory.Exists(_files.Directory));
        Assert.Equal(state, (await new ReplicaCheckpointStore(_storage, _replica).LoadAsync()).SnapshotApplication);
    }

    [Fact]
    public async Task A_record_that_names_a_file_is_refused_by_a_silo_without_a_checkpoint_directory()
    {
        await new ReplicaCheckpointStore(_storage, _replica, _files).WriteAsync(Record(64, State(1000, seed: 1)));

        var error = await Assert.ThrowsAsync<InvalidDataException>(() => new ReplicaCheckpointStore(_storage, _replica).LoadAsync());
        Assert.Contains("no checkpoint directory", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_record_naming_a_path_outside_the_directory_is_refused() =>
        Assert.Throws<InvalidDataException>(() => _files.Read("../minbft-domain-0.db", 10));
}
