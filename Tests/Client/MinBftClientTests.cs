using System.Diagnostics;
using MinBft.Client;
using MinBft.Messages;

namespace MinBft.Tests.Client;

/// <summary>The SDK over a fake, untrusted proxy: verification, retries, timeouts, the identity pool.</summary>
public sealed class MinBftClientTests : IDisposable
{
    private static readonly byte[] Get = [0x02, 0, 1, (byte)'k'];

    private readonly FakeClusterProxies _cluster = new(new FakeReplicas(f: 1));
    private readonly List<string> _directories = [];

    public void Dispose()
    {
        foreach (var directory in _directories)
        {
            if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public async Task Execute_SendsASignedRequest_ReturnsVerifiedResult()
    {
        using var client = _cluster.CreateClient();

        var verified = await client.ExecuteVerifiedAsync(Get);

        // A client's first request is preceded by a probe (a proven position to sign it with).
        var requests = _cluster.Requests.ToArray();
        Assert.Equal(2, requests.Length);
        var (probe, request) = (requests[0], requests[1]);
        Assert.Empty(probe.Operation);
        Assert.Equal(probe.ClientId, request.ClientId);
        Assert.Null(MinBft.Crypto.RequestVerifier.Explain(request));
        Assert.Equal(Get, request.Operation);
        Assert.Contains(request.ClientId, client.ClientIds);
        Assert.Equal(request.Seq, verified.Seq);
        Assert.Equal(new byte[] { 2, 0 }, verified.Result); // NotFound
        Assert.Equal(ReplyStatus.Executed, verified.Status);
        Assert.Equal(_cluster.Position, verified.Position);
        Assert.Equal(3, client.N);
        Assert.Equal(1, client.F);
    }

    [Fact]
    public async Task ForgedReplies_ThrowVerificationException()
    {
        _cluster.Respond = (request, _) =>
        {
            var replies = _cluster.AllCorrect(request);
            // The proxy rewrites the result: signatures no longer match.
            return Task.FromResult(replies.Select(r => r with { Result = [9, 9] }).ToArray());
        };
        using var client = _cluster.CreateClient(new MinBftClientOptions { MaxAttempts = 2, RetryDelay = TimeSpan.Zero });

        var e = await Assert.ThrowsAsync<MinBftReplyVerificationException>(() => client.ExecuteAsync(Get));

        Assert.Contains(e.Problems, p => p.Contains("bad signature", StringComparison.Ordinal));
        Assert.Equal(2, _cluster.Requests.Count);
    }

    [Fact]
    public async Task OneReplyOnly_IsNotEnough()
    {
        _cluster.Respond = (request, _) => Task.FromResult(_cluster.AllCorrect(request)[..1]);
        using var client = _cluster.CreateClient(new MinBftClientOptions { MaxAttempts = 1 });

        await Assert.ThrowsAsync<MinBftReplyVerificationException>(() => client.ExecuteAsync(Get));
    }

    [Fact]
    public async Task Retry_ResendsTheSameSignedRequest_AndSucceeds()
    {
        // Every request fails twice before its replies come: the probe before the first request
        // too, which is retried the same way.
        _cluster.Respond = (request, attempt) => attempt switch
        {
            1 => Task.FromResult(Array.Empty<Reply>()),
            2 => Task.FromException<Reply[]>(new TimeoutException("proxy gave up")),
            _ => Task.FromResult(_cluster.AllCorrect(request)),
        };
        using var client = _cluster.CreateClient(new MinBftClientOptions { MaxAttempts = 3, RetryDelay = TimeSpan.FromMilliseconds(1) });

        var result = await client.ExecuteAsync(Get);

        Assert.Equal(new byte[] { 2, 0 }, result);
        var requests = _cluster.Requests.ToArray();
        Assert.Equal(6, requests.Length);
        var (probes, sent) = (requests[..3], requests[3..]);
        Assert.Empty(probes[0].Operation);
        Assert.All(probes, r => Assert.Same(probes[0], r));
        Assert.Equal(Get, sent[0].Operation);
        Assert.All(sent, r => Assert.Same(sent[0], r));
    }

    [Fact]
    public async Task ProxyNeverAnswers_TimesOutWithinRequestTimeout()
    {
        _cluster.Respond = (_, _) => new TaskCompletionSource<Reply[]>().Task;
        using var client = _cluster.CreateClient(new MinBftClientOptions
        {
            RequestTimeout = TimeSpan.FromMilliseconds(300),
            AttemptTimeout = TimeSpan.FromMilliseconds(100),
            MaxAttempts = 10,
            RetryDelay = TimeSpan.Zero,
        });
        var watch = Stopwatch.StartNew();

        await Assert.ThrowsAsync<TimeoutException>(() => client.ExecuteAsync(Get));

        Assert.InRange(watch.Elapsed, TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task ProxyErrors_AfterAllAttempts_ThrowMinBftExceptionWithTheCause()
    {
        _cluster.Respond = (_, _) => Task.FromException<Reply[]>(new InvalidOperationException("proxy broke"));
        using var client = _cluster.CreateClient(new MinBftClientOptions { MaxAttempts = 2, RetryDelay = TimeSpan.Zero });

        var e = await Assert.ThrowsAsync<MinBftException>(() => client.ExecuteAsync(Get));

        // The proxy reports a failed outcome (not an exception): its words are the cause.
        Assert.IsType<MinBftException>(e.InnerException);
        Assert.Contains("InvalidOperationException: proxy broke", e.Message, StringComparison.Ordinal);
        Assert.Equal(2, _cluster.Requests.Count);
    }

    [Fact]
    public async Task FailedSubmitCalls_AreRetried_AndTheLastOneIsTheCause()
    {
        // What a proxy on a silo that died looks like: the call itself fails.
        _cluster.RefuseSubmit = new InvalidOperationException("silo gone");
        using var client = _cluster.CreateClient(new MinBftClientOptions { MaxAttempts = 3, RetryDelay = TimeSpan.Zero });

        var e = await Assert.ThrowsAsync<MinBftException>(() => client.ExecuteAsync(Get));

        Assert.IsType<InvalidOperationException>(e.InnerException);
        Assert.Equal(3, _cluster.Submits.Count);
        Assert.Empty(_cluster.Requests);
    }

    [Fact]
    public async Task Cancellation_IsObserved()
    {
        _cluster.Respond = (_, _) => new TaskCompletionSource<Reply[]>().Task;
        using var client = _cluster.CreateClient();
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(50));

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => client.ExecuteAsync(Get, cts.Token));
    }

    [Fact]
    public async Task ConcurrentRequests_NeverShareAnIdentity_SeqsIncreasePerIdentity()
    {
        _cluster.Delay = TimeSpan.FromMilliseconds(2);
        using var client = _cluster.CreateClient(new MinBftClientOptions { IdentityPoolSize = 3 });

        await Task.WhenAll(Enumerable.Range(0, 60).Select(i => client.ExecuteAsync(MinBft.Application.KeyValueOperation.EncodePut("k" + i, [1]))));

        Assert.Empty(_cluster.Violations);
        var byClient = _cluster.Requests.GroupBy(r => r.ClientId).ToArray();
        Assert.Equal(3, byClient.Length);
        foreach (var group in byClient)
        {
            var seqs = group.Select(r => r.Seq).ToArray();
            Assert.Equal(seqs.Length, seqs.Distinct().Count());
        }
    }

    [Fact]
    public async Task PoolExhausted_NextRequestWaitsForAFreeIdentity()
    {
        var release = new TaskCompletionSource();
        _cluster.Respond = async (request, _) =>
        {
            await release.Task;
            return _cluster.AllCorrect(request);
        };
        using var client = _cluster.CreateClient(new MinBftClientOptions { IdentityPoolSize = 1 });

        var first = client.ExecuteAsync(Get);
        using (var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(100)))
        {
            // The only identity is busy: the second request waits and never reaches a proxy.
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => client.ExecuteAsync(Get, cts.Token));
        }
        var third = client.ExecuteAsync(Get);
        Assert.False(third.IsCompleted);

        release.SetResult();
        await Task.WhenAll(first, third);
        // The first request's probe, then the first and the third request; the second sent nothing.
        Assert.Single(_cluster.Requests, r => r.Operation.Length == 0);
        Assert.Equal(2, _cluster.Requests.Where(r => r.Operation.Length > 0).Select(r => r.Seq).Distinct().Count());
        Assert.Empty(_cluster.Violations);
    }

    [Fact]
    public async Task KeyDirectory_KeepsIdentitiesAcrossClients_AndIsExclusive()
    {
        var directory = NewDirectory();
        var options = new MinBftClientOptions { IdentityPoolSize = 2, KeyDirectory = directory };
        string[] first;
        using (var client = _cluster.CreateClient(options))
        {
            first = [.. client.ClientIds];
            await client.ExecuteAsync(Get);
            // A second process (or client) must not use the same identities at the same time.
            Assert.Throws<MinBftException>(() => _cluster.CreateClient(options));
        }

        using var again = _cluster.CreateClient(options);
        Assert.Equal(first, again.ClientIds);
        Assert.Equal(2, Directory.GetFiles(directory, "client-*.key").Length);
        // Sequence numbers continue above the previous run's (the fake asserts seqs never go back).
        await again.ExecuteAsync(Get);
        await again.ExecuteAsync(Get);
    }

    [Fact]
    public async Task KeyDirectory_SeqsKeepGrowingWhenTheWallClockStepsBackBetweenRuns()
    {
        // A reused seq is refused by the replicas (or, with another operation, could be taken for
        // the old one): persistent identities store how far they reserved sequence numbers.
        var directory = NewDirectory();
        var options = new MinBftClientOptions { IdentityPoolSize = 1, KeyDirectory = directory };
        ulong first;
        int firstRun;
        using (var client = new MinBftClient(_cluster, _cluster.Replicas.Verifier, options, timeProvider: new SteppedClock(TimeSpan.Zero)))
        {
            await client.ExecuteAsync(Get);
            // The run's first seq (its probe's; the request's is the next).
            first = _cluster.Requests.First().Seq;
            firstRun = _cluster.Requests.Count;
        }
        Assert.True(File.Exists(Path.Combine(directory, "seq")));

        // The next run's clock is a day behind: its seqs still start above the first run's reservation.
        using (var again = new MinBftClient(_cluster, _cluster.Replicas.Verifier, options, timeProvider: new SteppedClock(TimeSpan.FromDays(-1))))
        {
            await again.ExecuteAsync(Get);
        }
        var second = _cluster.Requests.Skip(firstRun).Min(r => r.Seq);
        Assert.True(second >= first + ClientIdentityPool.SeqReservation, $"seq {second} after {first}");
        Assert.Empty(_cluster.Violations);

        // A corrupt seq file stops the client instead of guessing.
        await File.WriteAllTextAsync(Path.Combine(directory, "seq"), "not a number");
        var corrupt = Assert.Throws<MinBftException>(() => new MinBftClient(_cluster, _cluster.Replicas.Verifier, options));
        Assert.Contains("corrupt", corrupt.Message, StringComparison.Ordinal);
    }

    private sealed class SteppedClock(TimeSpan offset) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => base.GetUtcNow() + offset;
    }

    [Fact]
    public void InvalidOptions_AreRejected()
    {
        Assert.Throws<ArgumentException>(() => _cluster.CreateClient(new MinBftClientOptions { IdentityPoolSize = 0 }));
        Assert.Throws<ArgumentException>(() => _cluster.CreateClient(new MinBftClientOptions { RequestTimeout = TimeSpan.Zero }));
        Assert.Throws<ArgumentException>(() => _cluster.CreateClient(new MinBftClientOptions { MaxAttempts = 0 }));
    }

    private string NewDirectory()
    {
        var directory = Path.Combine(Path.GetTempPath(), "minbft-client-test-" + Guid.NewGuid().ToString("N"));
        _directories.Add(directory);
        return directory;
    }
}
