using Microsoft.Extensions.Time.Testing;
using MinBft.Application;
using MinBft.Client;
using MinBft.Crypto;
using MinBft.Messages;

namespace MinBft.Tests.Client;

/// <summary>
/// The SDK's side of the bounded client table (Protocol/Core/CLIENT-SESSIONS-DESIGN.md), over
/// fake replicas whose replies name the position each request was decided at: the probe a client
/// sends when it has no recent proven position, the incarnation it signs its requests with, and
/// what it does with Expired replies.
/// </summary>
public sealed class ClientProbeTests
{
    private static readonly byte[] Get = KeyValueOperation.EncodeGet("k");

    private readonly FakeClusterProxies _cluster = new(new FakeReplicas(f: 1));

    private Request[] Probes => [.. _cluster.Requests.Where(r => r.Operation.Length == 0)];

    private Request[] Operations => [.. _cluster.Requests.Where(r => r.Operation.Length > 0)];

    /// <summary>The request <paramref name="result"/> answers.</summary>
    private Request RequestOf(VerifiedResult result) =>
        _cluster.Requests.First(r => r.ClientId == result.ClientId && r.Seq == result.Seq);

    [Fact]
    public async Task A_first_request_is_preceded_by_one_signed_probe_of_its_identity_with_a_lower_seq()
    {
        using var client = _cluster.CreateClient(new MinBftClientOptions { IdentityPoolSize = 1 });

        var first = await client.ExecuteVerifiedAsync(Get);

        var requests = _cluster.Requests.ToArray();
        Assert.Equal(2, requests.Length);
        var (probe, request) = (requests[0], requests[1]);
        Assert.Empty(probe.Operation);
        Assert.Null(RequestVerifier.Explain(probe));
        Assert.Equal(request.ClientId, probe.ClientId);
        Assert.True(probe.Seq < request.Seq, $"probe seq {probe.Seq}, request seq {request.Seq}");
        // Nothing was proven before the probe; the request is signed with what the probe proved
        // (the fake decides it at position 1, the request at 2).
        Assert.Equal(0UL, probe.Incarnation);
        Assert.Equal(1UL, request.Incarnation);
        Assert.Equal(request.Seq, first.Seq);
        Assert.Equal(2UL, first.Position);

        // Proven a moment ago: the next request goes alone.
        await client.ExecuteAsync(Get);
        Assert.Single(Probes);
        Assert.Equal(2, Operations.Length);
        Assert.Empty(_cluster.Violations);
    }

    [Fact]
    public async Task Concurrent_first_requests_share_one_probe()
    {
        const int Concurrent = 8;
        var probeAnswered = new TaskCompletionSource();
        _cluster.Respond = async (request, _) =>
        {
            if (request.Operation.Length == 0) await probeAnswered.Task;
            return _cluster.AllCorrect(request);
        };
        using var client = _cluster.CreateClient(new MinBftClientOptions { IdentityPoolSize = Concurrent });

        // Every one of them starts before the probe is answered: none has a proven position.
        var running = Enumerable.Range(0, Concurrent).Select(i => client.ExecuteVerifiedAsync(KeyValueOperation.EncodePut("k" + i, [(byte)i]))).ToArray();
        await Conditions.WaitUntilAsync(() => Task.FromResult((!_cluster.Requests.IsEmpty, "no request yet")), TimeSpan.FromSeconds(30), "the probe reaching the proxy");
        // The others wait for the probe rather than send their own.
        Assert.Empty(Assert.Single(_cluster.Requests).Operation);
        probeAnswered.SetResult();
        var results = await Task.WhenAll(running).WaitAsync(TimeSpan.FromSeconds(30));

        var probe = Assert.Single(Probes);
        Assert.Equal(Concurrent, Operations.Length);
        Assert.All(results, r => Assert.Equal(ReplyStatus.Executed, r.Status));
        // Each is signed with a position proven to the client: the probe's (1) or a later one.
        Assert.All(Operations, r => Assert.True(r.Incarnation >= 1, $"incarnation {r.Incarnation}"));
        Assert.True(probe.Seq < Assert.Single(Operations, r => r.ClientId == probe.ClientId).Seq);
        Assert.Empty(_cluster.Violations);
    }

    [Fact]
    public async Task Requests_carry_the_highest_position_that_replies_proved()
    {
        var correct = _cluster.Respond;
        using var client = _cluster.CreateClient(new MinBftClientOptions { IdentityPoolSize = 1 });
        var first = await client.ExecuteVerifiedAsync(Get);
        Assert.Equal(2UL, first.Position);

        // Other clients' requests move the history on: the next reply names a much later position,
        // and the request after it carries that position.
        _cluster.Position = 1_000;
        var second = await client.ExecuteVerifiedAsync(Get);
        Assert.Equal(first.Position, RequestOf(second).Incarnation);
        Assert.Equal(1_001UL, second.Position);
        var third = await client.ExecuteVerifiedAsync(Get);
        Assert.Equal(1_001UL, RequestOf(third).Incarnation);

        // f+1 replies proving an older position (replies to requests that were decided earlier can
        // arrive later) do not lower it.
        _cluster.Respond = (request, _) =>
        {
            var result = _cluster.Execute(request);
            return Task.FromResult(Enumerable.Range(0, _cluster.Replicas.N).Select(i => _cluster.Replicas.Reply(i, request, result, position: 7)).ToArray());
        };
        var older = await client.ExecuteVerifiedAsync(Get);
        Assert.Equal(7UL, older.Position);
        _cluster.Respond = correct;
        var fourth = await client.ExecuteVerifiedAsync(Get);
        Assert.Equal(third.Position, RequestOf(fourth).Incarnation);

        Assert.Single(Probes);
        Assert.Empty(_cluster.Violations);
    }

    [Fact]
    public async Task After_ProbeAfterIdle_without_a_proven_reply_the_next_request_probes_again_and_not_before()
    {
        var clock = new FakeTimeProvider();
        var idle = TimeSpan.FromMinutes(1);
        var almost = idle - TimeSpan.FromSeconds(1);
        using var client = _cluster.CreateClient(new MinBftClientOptions { IdentityPoolSize = 1, ProbeAfterIdle = idle, SessionRenewal = TimeSpan.Zero }, clock);

        // (CompleteAsync: the request after a probe may wait for the gather window, which this
        // clock passes only when moved; it moves it by a millisecond then, never after a reply.)
        await client.ExecuteAsync(Get).CompleteAsync(client, clock);
        Assert.Single(Probes);

        // Within ProbeAfterIdle of the last proven reply: no probe, twice in a row (it counts from
        // the last proven reply, not from the probe: the second request is 2 x 59 s after it).
        clock.Advance(almost);
        await client.ExecuteAsync(Get).CompleteAsync(client, clock);
        clock.Advance(almost);
        var beforeIdle = await client.ExecuteVerifiedAsync(Get).CompleteAsync(client, clock);
        Assert.Single(Probes);

        // ProbeAfterIdle without a proven reply: the next request probes first, signed with the
        // highest position proven so far, under a seq between the two requests'.
        clock.Advance(idle);
        var afterIdle = await client.ExecuteVerifiedAsync(Get).CompleteAsync(client, clock);
        Assert.Equal(2, Probes.Length);
        var probe = Probes[1];
        Assert.Equal(beforeIdle.Position, probe.Incarnation);
        Assert.InRange(probe.Seq, beforeIdle.Seq + 1, afterIdle.Seq - 1);
        Assert.Equal(afterIdle.Position - 1, RequestOf(afterIdle).Incarnation); // the probe's position
        Assert.Equal(4, Operations.Length);
        Assert.Empty(_cluster.Violations);
    }

    [Fact]
    public async Task With_an_infinite_ProbeAfterIdle_a_client_probes_only_at_start()
    {
        var clock = new FakeTimeProvider();
        using var client = _cluster.CreateClient(new MinBftClientOptions
        {
            IdentityPoolSize = 1,
            ProbeAfterIdle = Timeout.InfiniteTimeSpan,
            SessionRenewal = TimeSpan.Zero,
        }, clock);

        await client.ExecuteAsync(Get).CompleteAsync(client, clock);
        clock.Advance(TimeSpan.FromDays(1));
        await client.ExecuteAsync(Get).CompleteAsync(client, clock);
        clock.Advance(TimeSpan.FromDays(365));
        await client.ExecuteAsync(Get).CompleteAsync(client, clock);

        Assert.Single(Probes);
        Assert.Equal(3, Operations.Length);
    }

    [Fact]
    public async Task A_request_answered_Expired_throws_with_its_position_and_the_next_request_carries_it_and_runs()
    {
        var correct = _cluster.Respond;
        using var client = _cluster.CreateClient(new MinBftClientOptions { IdentityPoolSize = 1 });
        await client.ExecuteAsync(Get);

        // More than the cap of other clients were active while the put was in flight: the cluster
        // evicted the identity's record, and f+1 replicas answer the put Expired.
        _cluster.Position = 5_000;
        _cluster.Respond = (request, _) => Task.FromResult(_cluster.AllExpired(request));
        var put = KeyValueOperation.EncodePut("k", [1]);
        var e = await Assert.ThrowsAsync<MinBftRequestExpiredException>(() => client.ExecuteAsync(put));

        var expired = _cluster.Requests.Last();
        Assert.Equal(put, expired.Operation);
        Assert.Equal(expired.ClientId, e.ClientId);
        Assert.Equal(expired.Seq, e.Seq);
        Assert.Equal(5_001UL, e.Position);
        // Proven, not failed: not retried.
        Assert.Equal(1, _cluster.Attempts[expired.Seq + ":" + expired.ClientId]);

        // The next request carries the Expired replies' position and runs (without a probe: the
        // Expired replies proved a position); the expired put did not.
        _cluster.Respond = correct;
        var next = await client.ExecuteVerifiedAsync(Get);
        Assert.Equal(5_001UL, RequestOf(next).Incarnation);
        Assert.Equal(ReplyStatus.Executed, next.Status);
        Assert.Equal(KeyValueResult.NotFound.Encode(), next.Result);
        Assert.Single(Probes);
        Assert.Empty(_cluster.Violations);
    }

    [Fact]
    public async Task A_probe_answered_Expired_still_proves_its_position_and_the_request_goes_on()
    {
        _cluster.Position = 300;
        _cluster.Respond = (request, _) => Task.FromResult(request.Operation.Length == 0 ? _cluster.AllExpired(request) : _cluster.AllCorrect(request));
        using var client = _cluster.CreateClient(new MinBftClientOptions { IdentityPoolSize = 1 });

        var result = await client.ExecuteVerifiedAsync(Get);

        Assert.Equal(ReplyStatus.Executed, result.Status);
        Assert.Equal(301UL, RequestOf(result).Incarnation);
        Assert.Single(Probes);
        Assert.Empty(_cluster.Violations);
    }

    [Fact]
    public async Task An_empty_operation_is_refused_before_anything_is_sent()
    {
        using var client = _cluster.CreateClient();

        var e = await Assert.ThrowsAsync<ArgumentException>(() => client.ExecuteAsync([]));
        Assert.Equal("operation", e.ParamName);
        await Assert.ThrowsAsync<ArgumentException>(() => client.ExecuteVerifiedAsync([]));

        Assert.Empty(_cluster.Submits);
        Assert.Empty(_cluster.Requests);
    }

    [Fact]
    public void ProbeAfterIdle_must_be_positive_or_infinite()
    {
        foreach (var invalid in new[] { TimeSpan.Zero, TimeSpan.FromTicks(-1), TimeSpan.FromMilliseconds(-2), TimeSpan.FromMinutes(-1) })
        {
            var e = Assert.Throws<ArgumentException>(() => new MinBftClientOptions { ProbeAfterIdle = invalid }.Validate());
            Assert.Contains(nameof(MinBftClientOptions.ProbeAfterIdle), e.Message, StringComparison.Ordinal);
            Assert.Throws<ArgumentException>(() => _cluster.CreateClient(new MinBftClientOptions { ProbeAfterIdle = invalid }));
        }
        new MinBftClientOptions { ProbeAfterIdle = Timeout.InfiniteTimeSpan }.Validate();
        new MinBftClientOptions { ProbeAfterIdle = TimeSpan.FromTicks(1) }.Validate();
        Assert.Equal(TimeSpan.FromMinutes(1), new MinBftClientOptions().ProbeAfterIdle);
    }
}
