using MinBft.Encoding;
using MinBft.Messages;
using MinBft.Protocol;
using MinBft.Usig;

namespace MinBft;

/// <summary>
/// HMAC scheme, replica side: before a message (or a recovered state) goes to the core, the UI
/// claims in it (<see cref="UiClaims"/>) that are not known yet go to the replica's own USIG
/// (VerifyUis), and the answers into the <see cref="PreverifiedUiVerifier"/> the core verifies
/// with. The secret stays in the USIG. Claims of concurrent deliveries are coalesced: while one
/// VerifyUis is in flight, the next round gathers what arrives, so a busy replica makes one call
/// per round trip rather than one per message.
/// </summary>
internal sealed class UiPreverifier(IUsigGrain usig, PreverifiedUiVerifier verifier)
{
    private List<UiClaim> _gathering = [];
    private TaskCompletionSource? _next;
    private Task _inFlight = Task.CompletedTask;

    public PreverifiedUiVerifier Verifier => verifier;

    /// <summary>Completes once every claim of <paramref name="message"/> is recorded; a message over
    /// the bounds is left to the core, which rejects it without verifying anything.</summary>
    public Task PrepareAsync(ReplicaMessage message) =>
        MessageLimits.Check(message) is null ? PrepareAsync(UiClaims.Of(message)) : Task.CompletedTask;

    public Task PrepareAsync(RecoveredState state) => PrepareAsync(UiClaims.Of(state));

    private Task PrepareAsync(IEnumerable<UiClaim> claims)
    {
        var unknown = claims.Where(verifier.NeedsVerification).ToList();
        if (unknown.Count == 0) return Task.CompletedTask;
        _gathering.AddRange(unknown);
        if (_next is { } pending) return pending.Task;
        var next = _next = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        // One round at a time, in the grain's turn: the round starts when the previous one ended.
        _inFlight = RunAfterAsync(_inFlight, next);
        return next.Task;
    }

    private async Task RunAfterAsync(Task previous, TaskCompletionSource round)
    {
        await previous;
        var claims = _gathering;
        _gathering = [];
        _next = null;
        try
        {
            var unique = claims.DistinctBy(c => (c.ReplicaId, c.Ui.Counter, Convert.ToHexString(c.Digest), Convert.ToHexString(c.Ui.Certificate))).ToArray();
            var valid = await usig.VerifyUis(unique);
            for (var i = 0; i < unique.Length; i++) verifier.Record(unique[i], valid[i]);
            round.SetResult();
        }
        catch (Exception e)
        {
            // The messages waiting on this round are dropped by their callers; peers retransmit.
            round.SetException(e);
        }
    }
}
