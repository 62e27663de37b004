using MinBft.Application;
using MinBft.Crypto;
using MinBft.Encoding;
using MinBft.Hosting;
using MinBft.Messages;
using Org.BouncyCastle.Security;
using Xunit.Abstractions;

namespace MinBft.Tests.Integration;

/// <summary>
/// Malformed, oversized, unsigned and wrongly keyed input at every grain method: the caller gets
/// a clear error (client-facing methods) or the input is counted as rejected (network-facing
/// methods), nothing replicated changes, and the grain keeps working. Runs on memory storage,
/// the way a host that brings its own "minbft" provider is configured.
/// </summary>
public sealed class BadInputTests(ITestOutputHelper output)
{
    private const int Backup = 1;

    [Fact]
    public async Task Every_grain_method_refuses_bad_input_without_changing_state_and_keeps_working()
    {
        // The USIG accepts calls from anyone here, so that its argument checks can be reached
        // from the test (another test shows it refusing strangers by default).
        await using var cluster = await MinBftTestCluster.StartAsync(
            new ClusterSetup { F = 1, Sqlite = false, UsigServesOnlyItsReplica = false }, output);
        var all = Enumerable.Range(0, cluster.N).ToArray();
        var client = new TestClient(cluster, "good");
        await client.RunAsync(2);
        var before = await cluster.WaitForAgreementAsync(all);

        await ReplicaInputAsync(cluster, client, before);
        await UsigInputAsync(cluster);
        await ProxyInputAsync(cluster, client);

        // Everything still works, and every replica is where the others are.
        await client.RunAsync(4);
        var after = await cluster.WaitForAgreementAsync(all, before[0].ExecutedSequence + 1);
        Assert.All(after, s => Assert.Null(s.Halted));
    }

    private async Task ReplicaInputAsync(MinBftTestCluster cluster, TestClient client, ReplicaStatus[] before)
    {
        var replica = cluster.Replica(Backup);
        var valid = client.NextRequest(KeyValueOperation.EncodePut("never", [1]));
        var ui = new UniqueIdentifier(1, before[0].LastUiCounter + 1, new byte[64]);
        var signedRetransmit = new RetransmitRequest(0, Backup, 1, new byte[64]);
        var other = new ClientSigner(Ed25519KeyPair.Generate(new SecureRandom()));
        var expected = new Dictionary<string, long>
        {
            ["Malformed"] = 4,
            ["InvalidUi"] = 1,
            ["UnknownSender"] = 2,
            ["InvalidSignature"] = 4,
            ["MalformedSubmitBatch"] = 3,
        };

        // Network input is one-way: nothing comes back to the sender, the replica counts it.
        await replica.Deliver(null!);                                                              // Malformed
        await replica.Deliver(new Prepare(0, 0, 1, Enumerable.Repeat(valid, MessageLimits.MaxBatchSize + 1).ToArray(), ui)); // Malformed: over the batch bound
        await replica.Deliver(new Prepare(0, 0, 1, [valid], ui));                                     // InvalidUi: a certificate nobody issued
        await replica.Deliver(new Commit(0, Backup, new Prepare(0, 0, 1, [valid], ui), ui));         // UnknownSender: claims to be the receiver
        await replica.Deliver(new Prepare(0, 7, 1, [valid], ui));                                     // UnknownSender: no replica 7
        await replica.Deliver(signedRetransmit);                                                   // InvalidSignature: unsigned
        await replica.Deliver(new ReqViewChange(0, 0, 1, new byte[64]));                           // InvalidSignature: a forged suspicion
        await replica.Submit(null!);                                                               // Malformed
        await replica.Submit(valid with { Operation = new byte[MessageLimits.MaxOperationLength + 1] }); // Malformed: oversized
        await replica.Submit(valid with { Signature = new byte[64] });                             // InvalidSignature: unsigned
        // Wrong key: another client's valid signature over this client's id.
        var foreign = other.CreateRequest(valid.Seq, valid.Operation);
        await replica.Submit(foreign with { ClientId = valid.ClientId });                          // InvalidSignature
        // A proxy's batch is bounded in count and in bytes before anything in it is looked at.
        await replica.SubmitBatch(null!);                                                          // MalformedSubmitBatch
        await replica.SubmitBatch(Enumerable.Repeat(valid, MessageLimits.MaxBatchSize + 1).ToArray()); // MalformedSubmitBatch: count
        var large = valid with { Operation = new byte[MessageLimits.MaxOperationLength] };
        var overBytes = MessageLimits.MaxDeliveryBytes / MessageLimits.RequestBytes(large) + 1;
        await replica.SubmitBatch(Enumerable.Repeat(large, overBytes).ToArray());                  // MalformedSubmitBatch: bytes

        ReplicaStatus now = before[Backup];
        await MinBftTestCluster.UntilAsync(async () =>
        {
            now = await replica.GetStatus();
            return expected.All(e => now.Rejections.GetValueOrDefault(e.Key) - before[Backup].Rejections.GetValueOrDefault(e.Key) >= e.Value);
        }, "replica counted every rejection");
        output.WriteLine(MinBftTestCluster.Describe(now));
        foreach (var (reason, count) in expected)
            Assert.Equal(count, now.Rejections.GetValueOrDefault(reason) - before[Backup].Rejections.GetValueOrDefault(reason));

        // Nothing changed, on it or anywhere.
        var statuses = await cluster.StatusesAsync(Enumerable.Range(0, cluster.N));
        for (var i = 0; i < cluster.N; i++)
        {
            Assert.Equal(before[i].ExecutedSequence, statuses[i].ExecutedSequence);
            Assert.Equal(before[i].HistoryDigest, statuses[i].HistoryDigest);
            Assert.Equal(before[i].StateDigest, statuses[i].StateDigest);
            Assert.Equal(before[i].LastUiCounter, statuses[i].LastUiCounter);
            Assert.Null(statuses[i].Halted);
        }
        // A replica outside the cluster is nowhere.
        await Assert.ThrowsAsync<FaultDomainUnavailableException>(() => cluster.Replica(7).GetStatus());
    }

    private static async Task UsigInputAsync(MinBftTestCluster cluster)
    {
        var usig = cluster.Usig(Backup);
        var identity = await usig.GetIdentity();
        Assert.Equal(cluster.Manifest.Replicas[Backup].UsigPublicKey, identity.PublicKey);
        Assert.Equal(cluster.Manifest.Replicas[Backup].UsigEpoch, identity.Epoch);

        var next = identity.LastCounter + 1;
        await Assert.ThrowsAnyAsync<ArgumentException>(() => usig.CreateUis(next, null!, null));
        await Assert.ThrowsAnyAsync<ArgumentException>(() => usig.CreateUis(next, [null!], null));
        await Assert.ThrowsAnyAsync<ArgumentException>(() => usig.CreateUis(next, [], null));
        var shortDigest = await Assert.ThrowsAnyAsync<ArgumentException>(() => usig.CreateUis(next, [new byte[31]], null));
        Assert.Contains("32 bytes", shortDigest.Message, StringComparison.Ordinal);
        await Assert.ThrowsAnyAsync<ArgumentException>(() => usig.CreateUis(next, [new byte[32], new byte[33]], null));
        await Assert.ThrowsAnyAsync<ArgumentException>(() => usig.CreateUis(next, [new byte[1 << 20]], null));
        var tooMany = await Assert.ThrowsAnyAsync<ArgumentException>(() => usig.CreateUis(next, Enumerable.Range(0, identity.MaxBatch + 1).Select(_ => new byte[32]).ToArray(), null));
        Assert.Contains($"1..{identity.MaxBatch}", tooMany.Message, StringComparison.Ordinal);
        // Counters that are not the next ones: a skip, or reuse for another digest.
        await Assert.ThrowsAnyAsync<ArgumentException>(() => usig.CreateUis(next + 1, [new byte[32]], null));
        await Assert.ThrowsAnyAsync<ArgumentException>(() => usig.CreateUis(0, [new byte[32]], null));

        // Kept messages of the wrong shape: a null one, another count than the digests, over the limit.
        Assert.Equal(MinBft.Usig.UsigCore.MaxKeptBytes, identity.MaxKeptBytes);
        await Assert.ThrowsAnyAsync<ArgumentException>(() => usig.CreateUis(next, [new byte[32]], [null!]));
        await Assert.ThrowsAnyAsync<ArgumentException>(() => usig.CreateUis(next, [new byte[32]], [[1], [2]]));
        await Assert.ThrowsAnyAsync<ArgumentException>(() => usig.CreateUis(next, [new byte[32], new byte[32]], [[1]]));
        await Assert.ThrowsAnyAsync<ArgumentException>(() => usig.CreateUis(next, [new byte[32]], []));
        var overLimit = await Assert.ThrowsAnyAsync<ArgumentException>(() => usig.CreateUis(next, [new byte[32], new byte[32]], [new byte[identity.MaxKeptBytes], [1]]));
        Assert.Contains($"{identity.MaxKeptBytes} bytes", overLimit.Message, StringComparison.Ordinal);

        // No counter was used, and the USIG still answers (its replica uses it again below).
        Assert.Equal(identity.LastCounter, (await usig.GetIdentity()).LastCounter);
        Assert.Equal(identity.KeptMessages ?? [], (await usig.GetIdentity()).KeptMessages ?? []);
        await Assert.ThrowsAsync<FaultDomainUnavailableException>(() => cluster.Usig(7).GetIdentity());
    }

    private static async Task ProxyInputAsync(MinBftTestCluster cluster, TestClient client)
    {
        var proxy = cluster.Proxy(client.ClientId);
        var timeout = TimeSpan.FromSeconds(5);
        var valid = client.NextRequest(KeyValueOperation.EncodeGet("key-good"));
        var other = new ClientSigner(Ed25519KeyPair.Generate(new SecureRandom()));
        using var caller = new ProxyCaller(cluster.Grains);
        var observer = caller.Reference;

        // A malformed call is refused as a whole.
        await Assert.ThrowsAnyAsync<ArgumentException>(() => proxy.Submit(null!, timeout, observer));
        await Assert.ThrowsAnyAsync<ArgumentException>(() => proxy.Submit([], timeout, observer));
        await Assert.ThrowsAnyAsync<ArgumentException>(() => proxy.Submit([valid, null!], timeout, observer));
        var oversizedBatch = await Assert.ThrowsAnyAsync<ArgumentException>(
            () => proxy.Submit(Enumerable.Repeat(valid, MessageLimits.MaxBatchSize + 1).ToArray(), timeout, observer));
        Assert.Contains($"1 to {MessageLimits.MaxBatchSize} requests", oversizedBatch.Message, StringComparison.Ordinal);
        // Within the count, over the byte bound: 80 requests of 60 KB are more than one call may carry.
        var large = valid with { Operation = new byte[60_000] };
        var overBytes = await Assert.ThrowsAnyAsync<ArgumentException>(() => proxy.Submit(Enumerable.Repeat(large, 80).ToArray(), timeout, observer));
        Assert.Contains($"at most {MessageLimits.MaxDeliveryBytes} bytes", overBytes.Message, StringComparison.Ordinal);
        await Assert.ThrowsAnyAsync<ArgumentException>(() => proxy.Submit([valid], timeout, null!));
        await Assert.ThrowsAnyAsync<ArgumentException>(() => proxy.Submit([valid], TimeSpan.Zero, observer));
        Assert.Empty(caller.Received);

        // A bad request in a good call gets a failed outcome of its own.
        var oversized = await caller.SubmitAsync(proxy, valid with { Operation = new byte[MessageLimits.MaxOperationLength + 1] }, timeout);
        Assert.Contains("operation too large", oversized.Failure, StringComparison.Ordinal);
        Assert.Null(oversized.Replies);
        // The signature is checked once the request waited a retransmission interval (the replicas drop it).
        var unsigned = await caller.SubmitAsync(proxy, valid with { Signature = new byte[64] }, timeout);
        Assert.Contains("bad signature", unsigned.Failure, StringComparison.Ordinal);
        var wrongKey = await caller.SubmitAsync(proxy, other.CreateRequest(valid.Seq, valid.Operation) with { ClientId = client.ClientId }, timeout);
        Assert.Contains("client id is not the hash", wrongKey.Failure, StringComparison.Ordinal);
        Assert.All(caller.Received, o => Assert.False(o.TimedOut));

        // Replies nobody asked for, or that do not check out, are ignored and counted.
        var reply = new Reply(0, 0, client.ClientId, valid.Seq, MessageEncoding.RequestDigest(valid), [1], new ReplyProof(0, 1, [], new byte[64]));
        await proxy.DeliverReplies(null!);
        await proxy.DeliverReplies(new Reply[MessageLimits.MaxRepliesPerDelivery + 1]);
        await proxy.DeliverReplies([reply with { Result = new byte[MessageLimits.MaxResultLength + 1] }, reply with { ReplicaId = 9 }]);
        await proxy.DeliverReplies([reply with { ClientId = other.ClientId }, reply]);
        // One-way calls: they may arrive after a later call, so wait for each reason's count. (Not
        // for their sum: late replies to the client's earlier requests add to NotPending, so the
        // sum could be reached before the last malformed delivery is counted.)
        var status = await proxy.GetStatus();
        await MinBftTestCluster.UntilAsync(async () =>
        {
            status = await proxy.GetStatus();
            return status.RepliesIgnored.GetValueOrDefault("Malformed") >= 3
                && status.RepliesIgnored.GetValueOrDefault("UnknownReplica") >= 1
                && status.RepliesIgnored.GetValueOrDefault("NotPending") >= 2;
        }, "proxy counted the bad replies");
        Assert.Equal(0, status.InFlight);
        // A null and an oversized delivery (each counted once, as a whole), one oversized reply.
        Assert.Equal(3, status.RepliesIgnored.GetValueOrDefault("Malformed"));
        Assert.Equal(1, status.RepliesIgnored.GetValueOrDefault("UnknownReplica"));
        // Another client's reply and one for no request in flight (late replies to the client's
        // earlier requests are counted here too).
        Assert.True(status.RepliesIgnored.GetValueOrDefault("NotPending") >= 2);

        // The proxy still works: the request refused above in its bad forms goes through as is.
        var replies = await caller.ExecuteAsync(proxy, valid, MinBftTestCluster.RequestTimeout);
        Assert.Equal(KeyValueResult.OkWithValue(System.Text.Encoding.UTF8.GetBytes("good-value-0")), client.CheckReplies(valid, replies));
    }
}
