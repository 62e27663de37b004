using MinBft.Application;
using MinBft.Client;
using MinBft.Encoding;
using MinBft.Messages;
using Microsoft.Extensions.Time.Testing;

namespace MinBft.Tests.Client;

/// <summary>
/// The SDK's batched path to its (fake, untrusted) proxy: requests started together leave in one
/// Submit call, and each completes on its own outcome, verified by the SDK. The clock is a fake
/// one: after a first call, the next leaves only when the test moves the clock past the gather
/// window (or when the continuation of a delivered outcome starts it), so which requests share a
/// call is decided by the test, not by the thread pool. A client's first request is preceded by a
/// probe, in a call of its own: the warm-up takes two calls.
/// </summary>
public sealed class ClientProxyBatchingTests
{
    private readonly FakeClusterProxies _cluster = new(new FakeReplicas(f: 1));
    private readonly FakeTimeProvider _clock = new();

    [Fact]
    public async Task Requests_started_together_leave_in_one_Submit_call_and_all_complete_verified()
    {
        using var client = _cluster.CreateClient(new MinBftClientOptions { IdentityPoolSize = 64 }, _clock);
        await WarmUpAsync(client);

        var running = Enumerable.Range(0, 64).Select(i => client.ExecuteVerifiedAsync(KeyValueOperation.EncodePut("k" + i, [(byte)i]))).ToArray();
        Assert.Equal(WarmUpCalls, _cluster.Submits.Count); // the warm-up's: the others wait for the window
        _clock.Advance(ClientProxyChannel.GatherWindow);
        var results = await Task.WhenAll(running).WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(WarmUpCalls + 1, _cluster.Submits.Count);
        Assert.Equal(64, _cluster.Submits.Last().Length);
        Assert.All(results, r => Assert.Equal(KeyValueResult.Ok.Encode(), r.Result));
        Assert.All(results, r => Assert.True(r.Replies.Count >= 2));
        Assert.Empty(_cluster.Violations);
    }

    [Fact]
    public async Task Requests_that_continuations_of_outcomes_delivered_together_start_leave_in_one_call()
    {
        // Closed loops, as the bench runs them: each caller starts its next request from the
        // continuation of its last one. The fake clock never passes the window after the first
        // round, so only the gathering of settling continuations can send rounds 2 and 3.
        _cluster.DeliverTogether = true;
        const int Clients = 32, Rounds = 3;
        using var client = _cluster.CreateClient(new MinBftClientOptions { IdentityPoolSize = Clients }, _clock);
        await WarmUpAsync(client);

        var loops = Enumerable.Range(0, Clients).Select(c => Task.Run(async () =>
        {
            for (var round = 1; round <= Rounds; round++)
                await client.ExecuteAsync(KeyValueOperation.EncodePut("loop-" + c, [(byte)round])).ConfigureAwait(false);
        })).ToArray();
        await Conditions.WaitUntilAsync(() => Task.FromResult((client.Channel.Queued == Clients, $"{client.Channel.Queued} queued")), TimeSpan.FromSeconds(30), "the first round queued");
        _clock.Advance(ClientProxyChannel.GatherWindow);
        await Task.WhenAll(loops).WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal([1, 1, .. Enumerable.Repeat(Clients, Rounds)], _cluster.Submits.Select(s => s.Length)); // the warm-up's two, then the rounds
        Assert.Empty(_cluster.Violations);
    }

    [Fact]
    public async Task A_continuation_that_blocks_on_a_request_it_started_does_not_hold_that_request_up()
    {
        using var client = _cluster.CreateClient(new MinBftClientOptions { IdentityPoolSize = 2 });

        var result = await Task.Run(async () =>
        {
            await client.ExecuteAsync(KeyValueOperation.EncodePut("first", [1])).ConfigureAwait(false);
            // Runs in the first outcome's work item, which counts as settling: sync over async
            // there must not wait for itself (only MaxSettleWait bounds the wait).
            return client.ExecuteAsync(KeyValueOperation.EncodeGet("first")).GetAwaiter().GetResult();
        }).WaitAsync(TimeSpan.FromSeconds(8)); // an attempt's timeout is 10 s

        Assert.Equal(KeyValueResult.OkWithValue([1]).Encode(), result);
    }

    [Fact]
    public async Task A_lone_request_leaves_at_once_without_waiting_for_the_window()
    {
        using var client = _cluster.CreateClient(options: null, _clock);

        // The client's first call (the probe before its first request) has no call before it: it
        // leaves while the clock stands still.
        await WarmUpAsync(client);

        // So does a request started when the last call left a window ago or more: the clock does
        // not move again.
        _clock.Advance(ClientProxyChannel.GatherWindow);
        var result = await client.ExecuteAsync(KeyValueOperation.EncodeGet("alone")).WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(KeyValueResult.NotFound.Encode(), result);
        Assert.Equal(WarmUpCalls + 1, _cluster.Submits.Count);
        Assert.Equal("alone", Key(Assert.Single(_cluster.Submits.Last())));
    }

    [Fact]
    public async Task A_request_completes_while_another_of_its_batch_still_waits_and_a_cancelled_one_affects_neither()
    {
        var held = new TaskCompletionSource();
        _cluster.Respond = async (request, _) =>
        {
            if (Key(request) is "held" or "cancelled") await held.Task;
            return _cluster.AllCorrect(request);
        };
        using var client = _cluster.CreateClient(new MinBftClientOptions { IdentityPoolSize = 3 }, _clock);
        await WarmUpAsync(client);
        using var cancel = new CancellationTokenSource();

        var slow = client.ExecuteAsync(KeyValueOperation.EncodePut("held", [1]));
        var cancelled = client.ExecuteAsync(KeyValueOperation.EncodePut("cancelled", [2]), cancel.Token);
        var fast = client.ExecuteAsync(KeyValueOperation.EncodePut("fast", [3]));
        _clock.Advance(ClientProxyChannel.GatherWindow);

        Assert.Equal(KeyValueResult.Ok.Encode(), await fast.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal(["cancelled", "fast", "held"], _cluster.Submits.Last().Select(Key).Order());
        Assert.False(slow.IsCompleted);
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.False(slow.IsCompleted);

        held.SetResult();
        Assert.Equal(KeyValueResult.Ok.Encode(), await slow.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal(WarmUpCalls + 1, _cluster.Submits.Count);
    }

    [Fact]
    public async Task Replies_a_proxy_forges_or_misplaces_for_one_request_of_a_batch_are_not_accepted_and_the_others_are()
    {
        var mate = new TaskCompletionSource<Reply[]>(TaskCreationOptions.RunContinuationsAsynchronously);
        _cluster.Respond = async (request, _) =>
        {
            switch (Key(request))
            {
                case "forged":
                    // Correct replies with the result rewritten: the signatures no longer match.
                    return _cluster.AllCorrect(request).Select(r => r with { Result = KeyValueResult.NotFound.Encode() }).ToArray();
                case "misplaced":
                    // Another request's genuine replies (the warm-up's: validly signed).
                    return await mate.Task;
                default:
                    var replies = _cluster.AllCorrect(request);
                    if (request.Operation.Length > 0) mate.TrySetResult(replies); // not the probe's
                    return replies;
            }
        };
        using var client = _cluster.CreateClient(new MinBftClientOptions { IdentityPoolSize = 3, MaxAttempts = 1 }, _clock);
        await WarmUpAsync(client);

        var forged = client.ExecuteAsync(KeyValueOperation.EncodePut("forged", [1]));
        var misplaced = client.ExecuteAsync(KeyValueOperation.EncodePut("misplaced", [2]));
        var good = client.ExecuteAsync(KeyValueOperation.EncodePut("good", [3]));
        _clock.Advance(ClientProxyChannel.GatherWindow);

        Assert.Equal(KeyValueResult.Ok.Encode(), await good.WaitAsync(TimeSpan.FromSeconds(30)));
        var badSignature = await Assert.ThrowsAsync<MinBftReplyVerificationException>(() => forged.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains(badSignature.Problems, p => p.Contains("bad signature", StringComparison.Ordinal));
        await Assert.ThrowsAsync<MinBftReplyVerificationException>(() => misplaced.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal(["forged", "good", "misplaced"], _cluster.Submits.Last().Select(Key).Order());
    }

    [Fact]
    public async Task Outcomes_for_requests_not_waiting_here_are_ignored()
    {
        var held = new TaskCompletionSource();
        _cluster.Respond = async (request, _) =>
        {
            await held.Task;
            return _cluster.AllCorrect(request);
        };
        using var client = _cluster.CreateClient(options: null, _clock);
        var pending = client.ExecuteAsync(KeyValueOperation.EncodeGet("pending"));
        await ReachedProxyAsync();
        // The client's probe, sent first: it waits in the channel like any request.
        var request = Assert.Single(_cluster.Requests);
        var observer = Assert.Single(_cluster.Observers);

        // Garbage, another seq, another client: nothing completes, nothing throws.
        await observer.Completed(null!);
        await observer.Completed([null!, new ClientProxyOutcome(null!, 1, null, null)]);
        await observer.Completed([new ClientProxyOutcome(request.ClientId, request.Seq + 1, _cluster.AllCorrect(request), null)]);
        await observer.Completed([new ClientProxyOutcome(FakeReplicas.NewClient().ClientId, request.Seq, [], null)]);
        Assert.False(pending.IsCompleted);

        held.SetResult();
        Assert.Equal(KeyValueResult.NotFound.Encode(), await pending.WaitAsync(TimeSpan.FromSeconds(30)));
    }

    [Fact]
    public async Task Calls_carry_at_most_MaxBatchSize_requests_and_oversize_operations_are_refused_before_sending()
    {
        var identities = MessageLimits.MaxBatchSize + 5;
        using var client = _cluster.CreateClient(new MinBftClientOptions { IdentityPoolSize = identities, SessionRenewal = TimeSpan.Zero }, _clock);
        await WarmUpAsync(client);

        var running = Enumerable.Range(0, identities).Select(i => client.ExecuteAsync(KeyValueOperation.EncodeGet("k" + i))).ToArray();
        _clock.Advance(ClientProxyChannel.GatherWindow);
        await Task.WhenAll(running).WaitAsync(TimeSpan.FromSeconds(60));

        Assert.Equal([1, 1, MessageLimits.MaxBatchSize, 5], _cluster.Submits.Select(s => s.Length)); // the warm-up's two, then the cut batch

        var tooLarge = await Assert.ThrowsAsync<ArgumentException>(() => client.ExecuteAsync(new byte[MessageLimits.MaxOperationLength + 1]));
        Assert.Contains($"the limit is {MessageLimits.MaxOperationLength}", tooLarge.Message, StringComparison.Ordinal);
        Assert.Equal(WarmUpCalls + 2, _cluster.Submits.Count);
    }

    [Fact]
    public async Task Disposing_the_client_releases_its_observer_and_ends_what_still_waits()
    {
        _cluster.Respond = (_, _) => new TaskCompletionSource<Reply[]>().Task;
        var client = _cluster.CreateClient(options: null, _clock);
        var waiting = client.ExecuteAsync(KeyValueOperation.EncodeGet("never"));
        await ReachedProxyAsync();

        client.Dispose();

        await Assert.ThrowsAsync<ObjectDisposedException>(() => waiting.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Single(_cluster.DeletedReferences);
    }

    /// <summary>Submit calls <see cref="WarmUpAsync"/> makes: the client's probe, then its request.</summary>
    private const int WarmUpCalls = 2;

    /// <summary>One request, so that the next ones wait for the window and need no probe (the
    /// warm-up's proved a position, and the fake clock stays well within
    /// <see cref="MinBftClientOptions.ProbeAfterIdle"/>). The client's first call, its probe,
    /// leaves at once, before the clock moves; the request after it normally leaves from the probe's
    /// continuation, but may wait for the window on a loaded machine (<see cref="FakeClockRequests.CompleteAsync"/>).
    /// Its outcome's work item may still be ending when the test resumes: until it has, new requests
    /// would wait for it instead (the continuations of delivered outcomes gather).</summary>
    private async Task WarmUpAsync(MinBftClient client)
    {
        var warmUp = client.ExecuteAsync(KeyValueOperation.EncodeGet("warm-up"));
        await Conditions.WaitUntilAsync(() => Task.FromResult((!_cluster.Submits.IsEmpty, "no call yet")), TimeSpan.FromSeconds(30), "the first call leaving before the clock moves");
        await warmUp.CompleteAsync(client, _clock);
        await Conditions.WaitUntilAsync(
            () => Task.FromResult((client.Channel.Settling == 0, $"{client.Channel.Settling} settling")), TimeSpan.FromSeconds(30), "the warm-up's outcome settling");
        var calls = _cluster.Submits.ToArray();
        Assert.Equal(WarmUpCalls, calls.Length);
        Assert.Empty(Assert.Single(calls[0]).Operation);
        Assert.Equal("warm-up", Key(Assert.Single(calls[1])));
    }

    private Task ReachedProxyAsync() => Conditions.WaitUntilAsync(
        () => Task.FromResult((!_cluster.Requests.IsEmpty, $"{_cluster.Requests.Count} requests")), TimeSpan.FromSeconds(30), "the request reaching the proxy");

    private static string Key(Request request) =>
        KeyValueOperation.TryDecode(request.Operation, out var operation) ? operation.Key : "?";
}
