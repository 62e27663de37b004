using MinBft.Hosting.Journal;
using MinBft.Messages;
using MinBft.Protocol;
using Orleans.Runtime;
using Orleans.Storage;

namespace MinBft.Hosting;

/// <summary>A replica's latest stable checkpoint as stored: certificate, snapshot and view proofs.</summary>
[GenerateSerializer, Alias("minbft.ReplicaCheckpointRecord")]
public sealed class ReplicaCheckpointRecord
{
    [Id(0)]
    public CheckpointCertificate? Certificate { get; set; }

    /// <summary>The whole snapshot in one array, as checkpoints were stored before the parts
    /// below; read, never written.</summary>
    [Id(1)]
    public byte[]? Snapshot { get; set; }

    [Id(2)]
    public long View { get; set; }

    [Id(3)]
    public CheckpointCertificate[] ViewStarts { get; set; } = [];

    // The snapshot in the three parts the core encodes it in (EncodedSnapshot): stored as they
    // are, so the application's state is not copied into one array first.
    [Id(4)]
    public byte[]? SnapshotHead { get; set; }

    [Id(5)]
    public byte[]? SnapshotApplication { get; set; }

    [Id(6)]
    public byte[]? SnapshotTail { get; set; }

    /// <summary>With embedded storage, the file that holds the application's part instead of
    /// <see cref="SnapshotApplication"/> (<see cref="CheckpointSnapshotFiles"/>), and its length.</summary>
    [Id(7)]
    public string? SnapshotApplicationFile { get; set; }

    [Id(8)]
    public long SnapshotApplicationLength { get; set; }

    /// <summary>The stored snapshot, from its parts or from a checkpoint stored whole (null: none,
    /// or a whole one too short to split, which the core then rejects with its certificate).</summary>
    public EncodedSnapshot? StoredSnapshot() =>
        SnapshotHead is { } head && SnapshotApplication is { } application && SnapshotTail is { } tail
            ? new EncodedSnapshot(head, application, tail)
            : Snapshot is { } whole ? EncodedSnapshot.TrySplit(whole) : null;
}

/// <summary>
/// The stable checkpoint of one replica in its fault domain's store (state name
/// <c>checkpoint</c>), so that a restarted replica resumes from it instead of from the beginning
/// of history. One row, overwritten by each newer checkpoint; ETag-conditional like the sent log,
/// so a second activation of the replica cannot silently overwrite it. With
/// <paramref name="snapshotFiles"/> (embedded storage) the service state goes to a file the row
/// names; without (Redis), into the row.
/// </summary>
internal sealed class ReplicaCheckpointStore(IGrainStorage storage, GrainId grainId, CheckpointSnapshotFiles? snapshotFiles = null)
{
    private const string Name = "checkpoint";

    private readonly GrainState<ReplicaCheckpointRecord> _state = new(new ReplicaCheckpointRecord());

    public async Task<ReplicaCheckpointRecord> LoadAsync()
    {
        await storage.ReadStateAsync(Name, grainId, _state);
        var record = _state.State ??= new ReplicaCheckpointRecord();
        if (record.SnapshotApplicationFile is { } file)
        {
            if (snapshotFiles is null)
                throw new InvalidDataException($"The stored checkpoint of {grainId} keeps its state in the file {file}, and this silo has no checkpoint directory (embedded storage keeps one).");
            record.SnapshotApplication = snapshotFiles.Read(file, record.SnapshotApplicationLength);
        }
        // Files no record names (a crash between file and record) are deleted by the next store,
        // not here: an earlier activation still running may be about to name its newest file, and
        // its record write succeeds if this activation has written nothing yet.
        return record;
    }

    /// <summary>Stores <paramref name="record"/>, the service state first when it goes to a file.
    /// Only after its record is written (ETag-checked, so no other activation wrote since) are the
    /// replica's other files deleted: a record never names a deleted file.</summary>
    public async Task WriteAsync(ReplicaCheckpointRecord record)
    {
        if (snapshotFiles is not null && record.SnapshotApplication is { } application)
        {
            var file = snapshotFiles.Write(grainId, record.Certificate?.Sequence ?? 0, application);
            record.SnapshotApplication = null;
            record.SnapshotApplicationFile = file;
            record.SnapshotApplicationLength = application.Length;
            _state.State = record;
            await storage.WriteStateAsync(Name, grainId, _state);
            snapshotFiles.DeleteAllBut(grainId, file);
            return;
        }
        _state.State = record;
        await storage.WriteStateAsync(Name, grainId, _state);
    }
}
