using MinBft.Messages;
using Orleans.Runtime;
using Orleans.Storage;

namespace MinBft.Hosting;

/// <summary>A replica's latest stable checkpoint as stored: certificate, snapshot and view proofs.</summary>
[GenerateSerializer, Alias("minbft.ReplicaCheckpointRecord")]
public sealed class ReplicaCheckpointRecord
{
    [Id(0)]
    public CheckpointCertificate? Certificate { get; set; }

    [Id(1)]
    public byte[]? Snapshot { get; set; }

    [Id(2)]
    public long View { get; set; }

    [Id(3)]
    public CheckpointCertificate[] ViewStarts { get; set; } = [];
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
