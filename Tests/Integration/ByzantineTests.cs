using System.Runtime.CompilerServices;
using Microsoft.Extensions.DependencyInjection;
using MinBft.Application;
using MinBft.Crypto;
using MinBft.Encoding;
using MinBft.Hosting;
using MinBft.Messages;
using Orleans;
using Orleans.Runtime;
using Xunit.Abstractions;

namespace MinBft.Tests.Integration;

/// <summary>
/// One replica turned Byzantine by an outgoing grain call filter on its silo: it withholds its
/// certified messages from one peer, tampers with the first copy of some messages to another,
/// replays old messages, and answers clients with wrong results (validly signed with its own
/// key) and with replies forged in another replica's name. The correct replicas must agree,
/// requests must complete with correct results, and the proxy must count none of the bad replies.
/// </summary>
public sealed class ByzantineTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(2, 1, 0)] // a backup: withholds its COMMITs from 1, tampers with what it sends 0
    [InlineData(0, 1, 2)] // the primary: withholds its PREPAREs from 1 (1 learns them from 2's COMMITs)
    public async Task Correct_replicas_agree_and_clients_get_correct_results_despite_a_byzantine_replica(int byzantine, int starved, int tampered)
    {
        ByzantineFilter? filter = null;
        await using var cluster = await MinBftTestCluster.StartAsync(new ClusterSetup
        {
            F = 1,
            ConfigureSilo = (domain, silo) =>
            {
                if (domain != byzantine) return;
                silo.Services.AddSingleton<IOutgoingGrainCallFilter>(sp => filter = new ByzantineFilter(
                    sp.GetRequiredService<IGrainFactory>(), byzantine, starved, tampered,
                    DeploymentKeys.LoadSigningKey(sp.GetRequiredService<ClusterManifest>(), byzantine, sp.GetRequiredService<MinBftOptions>().ResolveKeyDirectory()),
                    sp.GetRequiredService<ClusterManifest>().N));
            },
        }, output);

        var clients = Enumerable.Range(0, 3).Select(c => new TestClient(cluster, "b" + c)).ToArray();
        await Task.WhenAll(clients.Select(c => c.RunAsync(10)));
        cluster.Log("clients done");

        var correct = Enumerable.Range(0, cluster.N).Where(i => i != byzantine).ToArray();
        var statuses = await cluster.WaitForAgreementAsync(correct);
        foreach (var s in statuses) output.WriteLine(MinBftTestCluster.Describe(s));

        Assert.NotNull(filter);
        Assert.True(filter.Dropped > 0, "messages were withheld");
        Assert.True(filter.Tampered > 0, "messages were tampered with");
        Assert.True(filter.Replayed > 0, "messages were replayed");
        Assert.True(filter.BadReplies > 0, "bad replies were sent");

        // The tampered copies failed their UI check and the replays were recognised, at the
        // victim; nothing it rejected changed its state (it agrees with the other correct replica).
        var victim = statuses.Single(s => s.ReplicaId == tampered);
        Assert.True(victim.Rejections.GetValueOrDefault("InvalidUi") > 0, MinBftTestCluster.Describe(victim));
        Assert.True(victim.Rejections.GetValueOrDefault("Duplicate") > 0, MinBftTestCluster.Describe(victim));

        // No reply of the Byzantine replica was ever part of a returned quorum, and its forged
        // replies were refused by signature.
        Assert.All(clients, c => Assert.DoesNotContain(byzantine, c.Responders));
        var proxies = await Task.WhenAll(clients.Select(c => cluster.Proxy(c.ClientId).GetStatus()));
        Assert.True(proxies.Sum(p => p.RepliesIgnored.GetValueOrDefault("InvalidSignature")) > 0);
    }

    /// <summary>The Byzantine behaviour, applied to every call replica <c>byzantine</c>'s grain makes.</summary>
    private sealed class ByzantineFilter(IGrainFactory grains, int byzantine, int starved, int tampered, Ed25519KeyPair signingKey, int n)
        : IOutgoingGrainCallFilter
    {
        // Calls this filter makes itself also pass through it; they are let through untouched.
        private readonly ConditionalWeakTable<object, object> _injected = [];
        private readonly List<ReplicaMessage> _sent = [];
        private readonly HashSet<ulong> _tamperedCounters = [];
        private readonly Lock _lock = new();
        private GrainId? _self;

        public int Dropped;
        public int Tampered;
        public int Replayed;
        public int BadReplies;

        public async Task Invoke(IOutgoingGrainCallContext context)
        {
            _self ??= grains.GetGrain<IReplicaGrain>(byzantine).GetGrainId();
            var argument = context.Request.GetArgumentCount() > 0 ? context.Request.GetArgument(0) : null;
            // (An array argument is copied on its way: its injected replies, immutable, are not.)
            if (context.SourceId != _self || argument is null || _injected.TryGetValue(argument is Reply[] { Length: > 0 } rs ? rs[0] : argument, out _))
            {
                await context.Invoke();
                return;
            }
            var target = context.TargetId.TryGetIntegerKey(out var key, out _) ? (int)key : -1;
            switch (argument)
            {
                case CertifiedMessage message when context.MethodName == nameof(IReplicaGrain.Deliver):
                    if (target == starved)
                    {
                        Interlocked.Increment(ref Dropped);
                        return; // withheld: not invoked at all
                    }
                    if (target == tampered)
                    {
                        bool tamper;
                        lock (_lock)
                        {
                            tamper = message.Ui.Counter % 3 == 0 && _tamperedCounters.Add(message.Ui.Counter);
                            _sent.Add(message);
                        }
                        if (tamper)
                        {
                            // Only the first copy: a retransmission gets through, so the victim
                            // sees a gap, asks again, and must not have been changed meanwhile.
                            Interlocked.Increment(ref Tampered);
                            context.Request.SetArgument(0, Mutate(message));
                        }
                        await context.Invoke();
                        ReplayOldMessage(target);
                        return;
                    }
                    break;
                case Reply[] replies when context.MethodName == nameof(IClientProxyGrain.DeliverReplies):
                    // Wrong results under its own valid signature: one vote each, for the wrong result.
                    Interlocked.Add(ref BadReplies, replies.Length);
                    context.Request.SetArgument(0, replies.Select(r => Sign(r with { Result = KeyValueResult.BadOperation.Encode() })).ToArray());
                    await context.Invoke();
                    // And replies in another replica's name, which it cannot sign.
                    var forged = replies.Select(r => Sign(r with { ReplicaId = (byzantine + 1) % n, Result = KeyValueResult.NotFound.Encode() })).ToArray();
                    foreach (var reply in forged) _injected.Add(reply, reply);
                    _ = grains.GetGrain<IClientProxyGrain>(context.TargetId.Key.ToString()).DeliverReplies(forged);
                    return;
            }
            await context.Invoke();
        }

        private void ReplayOldMessage(int target)
        {
            ReplicaMessage old;
            lock (_lock)
            {
                if (_sent.Count < 4 || _sent.Count % 2 != 0) return;
                old = _sent[_sent.Count / 2];
            }
            Interlocked.Increment(ref Replayed);
            // A copy, so the filter recognises it as its own injection.
            var copy = old switch
            {
                Prepare p => (ReplicaMessage)(p with { }),
                Commit c => c with { },
                _ => old,
            };
            _injected.Add(copy, copy);
            _ = grains.GetGrain<IReplicaGrain>(target).Deliver(copy);
        }

        private static CertifiedMessage Mutate(CertifiedMessage message) => (message.Ui.Counter / 3 % 3) switch
        {
            // A field the UI covers.
            0 => message switch
            {
                Prepare p => p with { View = p.View + 1 },
                Commit c => c with { View = c.View + 1 },
                _ => message,
            },
            // The certificate itself.
            1 => message.WithUi(message.Ui with { Certificate = Flip(message.Ui.Certificate) }),
            // The request inside the batch (its client signature and the UI both break).
            _ => message switch
            {
                Prepare p => p with { Batch = [p.Batch[0] with { Operation = [1, 2, 3] }, .. p.Batch[1..]] },
                Commit c => c with { Prepare = c.Prepare with { Batch = [c.Prepare.Batch[0] with { Operation = [1, 2, 3] }, .. c.Prepare.Batch[1..]] } },
                _ => message,
            },
        };

        private static byte[] Flip(byte[] bytes)
        {
            var copy = (byte[])bytes.Clone();
            copy[0] ^= 0x80;
            return copy;
        }

        private Reply Sign(Reply reply) =>
            ReplyBatchSigner.Sign(new Ed25519ReplicaSigner(signingKey), reply.ReplicaId, [new ReplyContent(reply.View, reply.ClientId, reply.Seq, reply.RequestDigest, reply.Result, reply.Status, reply.Position)])[0];
    }
}
