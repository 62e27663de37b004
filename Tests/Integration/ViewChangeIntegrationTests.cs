using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using MinBft.Application;
using MinBft.Crypto;
using MinBft.Encoding;
using MinBft.Messages;
using Orleans;
using Orleans.Runtime;
using Org.BouncyCastle.Security;
using Request = MinBft.Messages.Request;
using Xunit.Abstractions;

namespace MinBft.Tests.Integration;

/// <summary>
/// Runs its tests alone, after the parallel collections. When backups suspect is the test's
/// decision (its clock), not the machine's speed, but the waits and client requests still have
/// real-time deadlines, and next to the CPU-heavy simulation tests on a 2-core machine the load
/// with its view changes runs several times slower.
/// </summary>
[CollectionDefinition(nameof(ViewChangeCollection), DisableParallelization = true)]
public sealed class ViewChangeCollection;

/// <summary>
/// View changes on TestingHost clusters with the real grains, under a continuous client load:
/// a primary that withholds its PREPAREs, a primary that equivocates with its real USIG, and
/// (f = 2) two consecutive primaries whose fault domains go down. In each case the correct
/// replicas must move to a later view, requests must keep completing, the correct replicas must
/// end with one history, and every write a client saw acknowledged must still be there.
/// </summary>
[Collection(nameof(ViewChangeCollection))]
public sealed class ViewChangeIntegrationTests(ITestOutputHelper output)
{
    /// <summary>
    /// Replica 0, primary of view 0, first withholds its PREPAREs from backup 2 only. That alone
    /// cannot stall anything: backup 1's COMMITs carry each PREPARE, so backup 2 accepts them
    /// from there (the existing Byzantine test shows it), and requests keep completing in view 0.
    /// Then, under load, the primary withholds every PREPARE from everyone (retransmissions
    /// included): nothing commits, the backups' request timers fire, and they move on without it.
    /// </summary>
    [Fact]
    public async Task A_primary_that_withholds_its_prepares_is_replaced_and_no_acknowledged_write_is_lost()
    {
        var attack = new WithholdingAttack { Byzantine = 0, Starved = 2 };
        await using var cluster = await MinBftTestCluster.StartAsync(new ClusterSetup
        {
            F = 1,
            // Frequent checkpoints: the view change happens above stable checkpoints, with logs
            // that start at an anchor, and the silent primary's stream can be re-anchored past its gap.
            CheckpointInterval = 4,
            Watermark = 8,
            ConfigureSilo = (domain, silo) =>
            {
                // On every domain silo: the attack names the faulty replica at run time.
                if (domain is null) return;
                silo.Services.AddSingleton<IOutgoingGrainCallFilter>(sp => new WithholdingFilter(sp.GetRequiredService<IGrainFactory>(), attack));
            },
        }, output);
        var load = new PutWorkload(cluster, clients: 3, "w");
        load.Start();

        // Phase 1: backup 2 hears the primary's PREPAREs only through backup 1.
        await load.WaitForMoreAsync(30, "requests complete while backup 2 is starved");
        Assert.True(attack.StarvedCount > 0, "PREPAREs to backup 2 were withheld");
        // Replies of replicas 0 and 1 alone would complete requests (f + 1 = 2), so check that the
        // starved backup itself keeps up: it executes what the primary executed, from COMMITs.
        var executed = (await cluster.StatusesAsync([attack.Byzantine]))[0].ExecutedSequence;
        await cluster.WaitForStatusesAsync([attack.Starved], s => s[0].ExecutedSequence >= executed, $"starved backup {attack.Starved} reaches batch {executed}");

        // Phase 2: the primary withholds all its PREPAREs. It is still replica 0 of view 0: backups
        // suspect only when the test makes their request timers run out.
        var (view, primary) = await CurrentViewAsync(cluster, Enumerable.Range(0, cluster.N));
        Assert.Equal((0L, attack.Byzantine), (view, primary));
        attack.Retarget(primary, (primary + 2) % cluster.N);
        attack.Muted = true;
        cluster.Log($"primary {primary} of view {view} now withholds every PREPARE");
        var correct = Enumerable.Range(0, cluster.N).Where(i => i != primary).ToArray();

        // Nothing commits; the backups suspect the primary when their request timers run out.
        await cluster.ExpireRequestTimersAsync(correct, view);
        await WaitForViewAboveAsync(cluster, correct, view, primary);
        await load.WaitForMoreAsync(30, "requests complete in the new view");
        await load.StopAsync();
        Assert.True(attack.MutedCount > 0, "PREPAREs were withheld from every backup");

        var statuses = await cluster.WaitForAgreementAsync(correct);
        foreach (var s in statuses) output.WriteLine(MinBftTestCluster.Describe(s));
        Assert.All(statuses, s => Assert.True(s.View > view && s.Primary != primary, MinBftTestCluster.Describe(s)));
        await load.VerifyAcknowledgedAsync();
    }

    /// <summary>
    /// The primary equivocates as far as its USIG lets it: for the position s of a PREPARE P
    /// (counter c) that backup 1 receives, it has its real USIG certify a conflicting PREPARE P'
    /// for the same view and position with another, validly signed request, and sends P' instead
    /// of P to backup 2. A filter cannot do better: the USIG certifies one message per counter,
    /// so P' gets a later counter, and tampering with P itself would only break its UI. Backup 2
    /// must take P (from backup 1's COMMIT, or a relay) before P' because of the in-order rule,
    /// and then refuse P' for a taken position. The primary then certifies nothing more (its
    /// USIG calls fail), so the backups suspect it and change view. P' must never execute.
    /// </summary>
    [Fact]
    public async Task An_equivocating_primary_is_replaced_and_its_conflicting_batch_never_executes()
    {
        var attack = new EquivocationAttack();
        await using var cluster = await MinBftTestCluster.StartAsync(new ClusterSetup
        {
            F = 1,
            ConfigureSilo = (domain, silo) =>
            {
                if (domain is null) return;
                silo.Services.AddSingleton<IOutgoingGrainCallFilter>(sp => new EquivocationFilter(sp.GetRequiredService<IGrainFactory>(), attack));
            },
        }, output);
        var load = new PutWorkload(cluster, clients: 3, "e");
        load.Start();
        await load.WaitForMoreAsync(20, "requests complete before the attack");

        var (view, primary) = await CurrentViewAsync(cluster, Enumerable.Range(0, cluster.N));
        attack.Arm(primary, (primary + 2) % cluster.N);
        cluster.Log($"primary {primary} of view {view} will equivocate towards replica {(primary + 2) % cluster.N}");
        await MinBftTestCluster.UntilAsync(() => Task.FromResult(attack.Conflicting is not null || attack.Failure is not null), "the primary equivocated");
        Assert.Null(attack.Failure);
        var (original, conflicting) = (attack.Original!, attack.Conflicting!);
        cluster.Log($"position {original.Sequence}: PREPARE counter {original.PrepareUi.Counter} to the others, " +
            $"conflicting PREPARE counter {conflicting.PrepareUi.Counter} to replica {attack.Victim}");

        // A real equivocation: two PREPAREs of one view for one position, both certified by the
        // primary's own USIG (not a forgery the receivers could spot by its UI).
        Assert.Equal(original.View, conflicting.View);
        Assert.Equal(original.Sequence, conflicting.Sequence);
        Assert.NotEqual(Convert.ToHexString(MessageEncoding.CertifiedDigest(original)), Convert.ToHexString(MessageEncoding.CertifiedDigest(conflicting)));
        Assert.Contains(cluster.IssuedUis, ui => ui.Replica == primary && ui.Counter == conflicting.PrepareUi.Counter
            && ui.Digest == Convert.ToHexString(MessageEncoding.CertifiedDigest(conflicting)));

        var correct = Enumerable.Range(0, cluster.N).Where(i => i != primary).ToArray();
        // The victim processes P' (validly certified, next in the primary's stream) as soon as
        // backup 1's COMMIT gives it P, and refuses it for a position P already took. Only then
        // do the backups' request timers run out: in a later view P' would merely be stale, and
        // the check below would depend on which came first.
        await cluster.WaitForStatusesAsync([attack.Victim], s => s[0].Rejections.GetValueOrDefault("InvalidBatch") >= 1,
            $"victim {attack.Victim} refuses the conflicting PREPARE");
        await cluster.ExpireRequestTimersAsync(correct, view);
        await WaitForViewAboveAsync(cluster, correct, view, primary);
        await load.WaitForMoreAsync(20, "requests complete in the new view");
        await load.StopAsync();
        cluster.Log($"after equivocating: {Volatile.Read(ref attack.Withheld)} PREPAREs withheld from the victim, " +
            $"{Volatile.Read(ref attack.RefusedUis)} UI requests of the primary's core refused");

        var statuses = await cluster.WaitForAgreementAsync(correct);
        foreach (var s in statuses) output.WriteLine(MinBftTestCluster.Describe(s));
        Assert.All(statuses, s => Assert.True(s.View > view && s.Primary != primary, MinBftTestCluster.Describe(s)));
        // The victim refused P' (above, before the view change) and still counts it.
        var victim = statuses.Single(s => s.ReplicaId == attack.Victim);
        Assert.True(victim.Rejections.GetValueOrDefault("InvalidBatch") >= 1, MinBftTestCluster.Describe(victim));
        await load.VerifyAcknowledgedAsync();

        // The conflicting batch's request reached replicas only inside P', so if P' had executed
        // anywhere the agreed state would hold its key.
        var reader = new TestClient(cluster, "fork-reader");
        Assert.Equal(KeyValueResult.NotFound, await reader.ExecuteAsync(KeyValueOperation.EncodeGet(EquivocationAttack.ForkedKey)));
    }

    /// <summary>
    /// f = 2 (five fault domains): the domain of the primary of view 0 goes down under load, the
    /// four others change view and go on; then the domain of the new primary goes down too, and
    /// the remaining three (f + 1, just enough) change view again and go on.
    /// </summary>
    [Fact]
    public async Task F2_two_consecutive_primaries_going_down_are_both_replaced_and_no_acknowledged_write_is_lost()
    {
        await using var cluster = await MinBftTestCluster.StartAsync(new ClusterSetup
        {
            F = 2,
            // Frequent checkpoints, so that the second view change starts from a stable checkpoint
            // reached in view 1, with VIEW-CHANGE logs anchored above counter 1.
            CheckpointInterval = 4,
            Watermark = 8,
        }, output);
        var load = new PutWorkload(cluster, clients: 3, "c");
        load.Start();
        await load.WaitForMoreAsync(20, "requests complete before the first crash");

        var live = Enumerable.Range(0, cluster.N).ToList();
        var views = new List<long>();
        for (var crash = 0; crash < 2; crash++)
        {
            var (view, primary) = await CurrentViewAsync(cluster, live);
            views.Add(view);
            var trimmed = await cluster.StatusesAsync(live);
            cluster.Log($"before stopping {primary}: " + string.Join(", ", trimmed.Select(s => $"r{s.ReplicaId} sent log {s.SentLogCount} of {s.LastUiCounter} stable {s.StableCheckpoint}")));
            // The case the small checkpoint interval is for: logs no longer start at counter 1.
            if (crash == 1) Assert.All(trimmed, s => Assert.True((ulong)s.SentLogCount < s.LastUiCounter, MinBftTestCluster.Describe(s)));
            // Under load: the clients keep submitting while the silo stops.
            await cluster.StopDomainAsync(primary);
            live.Remove(primary);
            await cluster.ExpireRequestTimersAsync(live, view);
            await WaitForViewAboveAsync(cluster, live, view, primary);
            await load.WaitForMoreAsync(20, $"requests complete after primary {primary} went down");
        }
        await load.StopAsync();

        var statuses = await cluster.WaitForAgreementAsync(live);
        foreach (var s in statuses) output.WriteLine(MinBftTestCluster.Describe(s));
        // Two view changes, each to a view with a live primary.
        Assert.All(statuses, s => Assert.True(s.View >= 2 && s.View > views[1] && live.Contains(s.Primary), MinBftTestCluster.Describe(s)));
        await load.VerifyAcknowledgedAsync();
    }

    internal static async Task<(long View, int Primary)> CurrentViewAsync(MinBftTestCluster cluster, IEnumerable<int> replicas)
    {
        var statuses = await cluster.StatusesAsync(replicas);
        var highest = statuses.MaxBy(s => s.View)!;
        return (highest.View, highest.Primary);
    }

    /// <summary>Until every given replica is in a view above <paramref name="view"/> led by another replica than <paramref name="faulty"/>.</summary>
    internal static async Task WaitForViewAboveAsync(MinBftTestCluster cluster, IReadOnlyCollection<int> replicas, long view, int faulty)
    {
        var clock = Stopwatch.StartNew();
        var last = await cluster.WaitForStatusesAsync(replicas, statuses => statuses.All(s => s.View > view && s.Primary != faulty),
            $"replicas {string.Join(",", replicas)} leave view {view}");
        cluster.Log($"replicas {string.Join(",", replicas)} in view {last[0].View} after {clock.Elapsed.TotalSeconds:F1}s");
    }

    /// <summary>What the withholding primary does; shared by the filters of all domain silos.</summary>
    private sealed class WithholdingAttack
    {
        private int _starvedCount;
        private int _mutedCount;

        public volatile int Byzantine = -1;
        public volatile int Starved = -1;
        public volatile bool Muted;

        public int StarvedCount => Volatile.Read(ref _starvedCount);
        public int MutedCount => Volatile.Read(ref _mutedCount);

        public void Retarget(int byzantine, int starved)
        {
            Byzantine = byzantine;
            Starved = starved;
        }

        public void CountStarved() => Interlocked.Increment(ref _starvedCount);
        public void CountMuted() => Interlocked.Increment(ref _mutedCount);
    }

    /// <summary>
    /// Swallows the Byzantine replica's PREPAREs: those to the starved backup, or, once muted,
    /// all of them (first sends and retransmissions alike). Everything else goes through.
    /// </summary>
    private sealed class WithholdingFilter(IGrainFactory grains, WithholdingAttack attack) : IOutgoingGrainCallFilter
    {
        public Task Invoke(IOutgoingGrainCallContext context)
        {
            var byzantine = attack.Byzantine;
            if (byzantine >= 0
                && context.MethodName == nameof(IReplicaGrain.Deliver)
                && context.Request.GetArgument(0) is Prepare
                && context.SourceId == grains.GetGrain<IReplicaGrain>(byzantine).GetGrainId())
            {
                if (attack.Muted)
                {
                    attack.CountMuted();
                    return Task.CompletedTask; // withheld: not invoked at all
                }
                if (TargetOf(context) == attack.Starved)
                {
                    attack.CountStarved();
                    return Task.CompletedTask;
                }
            }
            return context.Invoke();
        }
    }

    /// <summary>What the equivocating primary does; shared by the filters of all domain silos.</summary>
    private sealed class EquivocationAttack
    {
        public const string ForkedKey = "forked";

        private int _claimed;

        /// <summary>A request no replica receives except inside the conflicting PREPARE.</summary>
        public Request ForkedRequest { get; } = new ClientSigner(Ed25519KeyPair.Generate(new SecureRandom()))
            .CreateRequest(1, KeyValueOperation.EncodePut(ForkedKey, "equivocated"u8));

        public volatile int Byzantine = -1;
        public volatile int Victim = -1;

        /// <summary>The digest the filter itself asks the USIG to certify (its own call passes the filter too).</summary>
        public volatile byte[]? InjectedDigest;

        /// <summary>Set once the USIG was asked for the conflicting PREPARE: from then on the primary certifies nothing else.</summary>
        public volatile bool Equivocating;

        public volatile Prepare? Original;
        public volatile Prepare? Conflicting;
        public volatile Exception? Failure;
        public int Withheld;
        public int RefusedUis;

        public void Arm(int byzantine, int victim)
        {
            Victim = victim;
            Byzantine = byzantine;
        }

        public bool TryClaim() => Interlocked.Exchange(ref _claimed, 1) == 0;
    }

    private sealed class EquivocationFilter(IGrainFactory grains, EquivocationAttack attack) : IOutgoingGrainCallFilter
    {
        public async Task Invoke(IOutgoingGrainCallContext context)
        {
            var byzantine = attack.Byzantine;
            if (byzantine < 0 || context.SourceId != grains.GetGrain<IReplicaGrain>(byzantine).GetGrainId())
            {
                await context.Invoke();
                return;
            }
            var argument = context.Request.GetArgumentCount() > 0 ? context.Request.GetArgument(context.Request.GetArgumentCount() - 1) : null;
            // By content: Orleans copies a byte[] argument even for a local call.
            if (context.MethodName == nameof(IUsigGrain.CreateUis) && attack.Equivocating
                && !(context.Request.GetArgument(1) is byte[][] { Length: 1 } requested && attack.InjectedDigest is { } injected && requested[0].AsSpan().SequenceEqual(injected)))
            {
                // After equivocating the primary certifies nothing more (its core's USIG pump keeps
                // retrying): without this its core would halt at the next UI, whose counter it did
                // not expect, and a halted replica reactivates and replays, which is only noise here.
                Interlocked.Increment(ref attack.RefusedUis);
                throw new TimeoutException("the Byzantine primary withholds its UIs after equivocating");
            }
            if (context.MethodName == nameof(IReplicaGrain.Deliver) && argument is Prepare prepare && TargetOf(context) == attack.Victim)
            {
                if (attack.Equivocating)
                {
                    // The victim hears no other PREPARE from the primary (retransmissions included).
                    Interlocked.Increment(ref attack.Withheld);
                    return;
                }
                if (prepare.Batch.Length > 0 && attack.TryClaim())
                {
                    // Same view, same position, another batch: certified by the real USIG, which
                    // can only give it the next free counter.
                    var unsigned = prepare with { Batch = [attack.ForkedRequest], PrepareUi = UniqueIdentifier.None };
                    var digest = MessageEncoding.CertifiedDigest(unsigned);
                    attack.InjectedDigest = digest;
                    attack.Equivocating = true;
                    UniqueIdentifier ui;
                    try
                    {
                        var usig = grains.GetGrain<IUsigGrain>(byzantine);
                        ui = (await usig.CreateUis((await usig.GetIdentity()).LastCounter + 1, [digest], null))[0];
                    }
                    catch (Exception e)
                    {
                        attack.Failure = e;
                        throw;
                    }
                    var conflicting = (Prepare)unsigned.WithUi(ui);
                    attack.Original = prepare;
                    attack.Conflicting = conflicting;
                    context.Request.SetArgument(0, conflicting);
                }
            }
            await context.Invoke();
        }
    }

    private static int TargetOf(IOutgoingGrainCallContext context) =>
        context.TargetId.TryGetIntegerKey(out var key, out _) ? (int)key : -1;
}
