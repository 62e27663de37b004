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
/// so a second activation of the replica cannot silently overwrite it.
/// </summary>
internal sealed class ReplicaCheckpointStore(IGrainStorage storage, GrainId grainId)
{
    private const string Name = "checkpoint";

    private readonly GrainState<ReplicaCheckpointRecord> _state = new(new ReplicaCheckpointRecord());

    public async Task<ReplicaCheckpointRecord> LoadAsync()
    {
        await storage.ReadStateAsync(Name, grainId, _state);
        _state.State ??= new ReplicaCheckpointRecord();
        return _state.State;
    }

    public async Task WriteAsync(ReplicaCheckpointRecord record)
    {
        _state.State = record;
        await storage.WriteStateAsync(Name, grainId, _state);
    }
}
