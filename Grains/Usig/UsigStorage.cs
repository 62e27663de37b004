using MinBft.Messages;
using MinBft.Usig;
using Orleans.Runtime;
using Orleans.Storage;

namespace MinBft;

/// <summary>What the USIG grain stores in in-process mode (state name <c>usig</c>): its counter state.</summary>
[GenerateSerializer, Alias("minbft.UsigGrainState")]
public sealed class UsigGrainState
{
    [Id(0)]
    public StoredUsigState? Usig { get; set; }

    /// <summary>The counter was moved to the domain's counter file (<see cref="EmbeddedUsigCounterFile"/>)
    /// and is never read from here again.</summary>
    [Id(1)]
    public bool MovedToFile { get; set; }
}

/// <summary>
/// A <see cref="UsigState"/> as grain storage keeps it (the USIG library has no Orleans types).
/// <see cref="LastDigest"/> is the digest certified at <see cref="Counter"/>, <see cref="Recent"/>
/// the ones before it; <see cref="LastUi"/> is no longer written (both schemes certify
/// deterministically, so the USIG certifies again) and ignored when read. <see cref="Kept"/>: the
/// messages the last batch kept (<see cref="UsigState.Kept"/>), in the same write as the counter;
/// null in a record written before they existed, which reads as a state that keeps nothing.
/// </summary>
[GenerateSerializer, Immutable, Alias("minbft.UsigState")]
public sealed record StoredUsigState(
    [property: Id(0)] ulong Epoch,
    [property: Id(1)] ulong Counter,
    [property: Id(2)] byte[] LastDigest,
    [property: Id(3)] UniqueIdentifier? LastUi,
    [property: Id(4)] byte[]? Recent = null,
    [property: Id(5)] byte[][]? Kept = null)
{
    public static StoredUsigState From(UsigState state)
    {
        var cut = Math.Max(0, state.Recent.Length - 32);
        return new(state.Epoch, state.Counter, state.Recent[cut..], null, state.Recent[..cut], state.KeptMessages.Length == 0 ? null : state.KeptMessages);
    }

    public UsigState ToUsigState() => new(Epoch, Counter, [.. Recent ?? [], .. LastDigest ?? []], Kept is { Length: > 0 } ? Kept : null);
}

/// <summary>Conversions between the USIG library's records and the protocol's.</summary>
public static class UsigConversions
{
    public static UniqueIdentifier ToUniqueIdentifier(this UsigUi ui) => new(ui.Epoch, ui.Counter, ui.Certificate);
}

/// <summary>
/// The in-process USIG's counter store over fault domain i's grain storage. Writes are
/// conditional on the ETag, so that a second activation of the USIG grain (Orleans may briefly run
/// two) fails its write instead of forking the counter; a read always goes back to storage and
/// refreshes the ETag (the core reads again only after a write whose outcome is unknown).
/// </summary>
internal sealed class GrainStorageCounterStore(IGrainStorage storage, GrainId grainId) : IUsigCounterStore
{
    // The name [PersistentState("usig")] used: stores written by earlier builds read the same.
    private const string Name = "usig";

    private readonly GrainState<UsigGrainState> _state = new(new UsigGrainState());

    public async Task<UsigState?> ReadAsync(CancellationToken cancellationToken)
    {
        var stored = await ReadStoredAsync();
        // A counter that moved to a file is stale here: reading it would roll the USIG back.
        if (stored.MovedToFile) throw new InvalidDataException("this USIG's counter was moved to its counter file; grain storage holds only a stale copy");
        return stored.Usig?.ToUsigState();
    }

    /// <summary>The stored record as it is (none: an empty one).</summary>
    public async Task<UsigGrainState> ReadStoredAsync()
    {
        await storage.ReadStateAsync(Name, grainId, _state);
        return _state.State ?? new UsigGrainState();
    }

    /// <summary>Marks the counter as moved to the counter file (ETag-conditional like every write).</summary>
    public async Task MarkMovedToFileAsync()
    {
        _state.State = new UsigGrainState { MovedToFile = true };
        await storage.WriteStateAsync(Name, grainId, _state);
    }

    public async Task WriteAsync(UsigState state, CancellationToken cancellationToken)
    {
        // A new object per write: the provider may serialize it after this method yields.
        _state.State = new UsigGrainState { Usig = StoredUsigState.From(state) };
        await storage.WriteStateAsync(Name, grainId, _state);
    }
}
