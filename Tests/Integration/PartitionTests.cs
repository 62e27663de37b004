using Microsoft.Extensions.DependencyInjection;
using Orleans;
using Orleans.Runtime;
using Xunit.Abstractions;

namespace MinBft.Tests.Integration;

/// <summary>
/// Network partitions between replicas, made by an outgoing call filter on every domain silo
/// that drops replica-to-replica calls over the links the test cuts (both directions), under a
/// continuous client load: the primary cut off from one backup, a backup cut off from the rest
/// (a minority split), and the primary cut off from both backups (the majority goes on without
/// it). Safety always holds (one history, every acknowledged write kept) and progress resumes
/// after each heal.
/// </summary>
[Collection(nameof(ViewChangeCollection))]
public sealed class PartitionTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Partitions_of_the_primary_from_a_backup_of_a_minority_and_of_the_primary_from_the_majority_keep_safety_and_heal()
    {
        var network = new Partition();
        await using var cluster = await MinBftTestCluster.StartAsync(new ClusterSetup
        {
            F = 1,
            // Frequent checkpoints: a cut-off replica comes back behind a trimmed log.
            CheckpointInterval = 4,
            Watermark = 8,
            ConfigureSilo = (domain, silo) =>
            {
                if (domain is null) return;
                silo.Services.AddSingleton<IOutgoingGrainCallFilter>(sp => new PartitionFilter(sp.GetRequiredService<IGrainFactory>(), network));
            },
        }, output);
        var all = Enumerable.Range(0, cluster.N).ToArray();
        var load = new PutWorkload(cluster, clients: 3, "p");
        load.Start();
        await load.WaitForMoreAsync(10, "requests complete before any partition");
        var (view, primary) = await ViewChangeIntegrationTests.CurrentViewAsync(cluster, all);
        var (backup, other) = ((primary + 1) % cluster.N, (primary + 2) % cluster.N);

        // 1. The primary and one backup cannot reach each other: the other backup's COMMITs carry
        //    the PREPAREs to the cut-off backup, and the primary's PREPARE with the other backup's
        //    COMMIT make the f+1 the primary needs. Nothing stops.
        network.Cut(primary, backup);
        await load.WaitForMoreAsync(20, $"requests complete with {primary} and {backup} cut apart");
        Assert.True(network.Dropped > 0, "messages between the primary and a backup were dropped");
        network.HealAll();

        // 2. A minority split: one backup alone. The primary and the other backup go on; once
        //    healed, the lone backup catches up (retransmission or state transfer).
        network.Isolate(other, all);
        var droppedBefore = network.Dropped;
        await load.WaitForMoreAsync(20, $"requests complete with backup {other} cut off");
        Assert.True(network.Dropped > droppedBefore, "messages to and from the cut-off backup were dropped");
        network.HealAll();
        var reached = (await cluster.StatusesAsync([primary]))[0].ExecutedSequence;
        await cluster.WaitForStatusesAsync([other], s => s[0].ExecutedSequence >= reached, $"backup {other} catches up to batch {reached} after the heal");

        // 3. The primary alone on its side (the majority split away from it): nothing commits in
        //    this view, the backups suspect it when their request timers run out (the test's
        //    clock) and go on in a new view without it.
        network.Isolate(primary, all);
        var majority = all.Where(i => i != primary).ToArray();
        await cluster.ExpireRequestTimersAsync(majority, view);
        await ViewChangeIntegrationTests.WaitForViewAboveAsync(cluster, majority, view, primary);
        await load.WaitForMoreAsync(20, "requests complete in the new view while the old primary is cut off");
        network.HealAll();

        // After the last heal the old primary joins the new view and every replica agrees.
        await load.WaitForMoreAsync(10, "requests complete after the last heal");
        await load.StopAsync();
        var statuses = await cluster.WaitForAgreementAsync(all);
        foreach (var s in statuses) output.WriteLine(MinBftTestCluster.Describe(s));
        Assert.All(statuses, s => Assert.True(s.View > view && s.Primary != primary, MinBftTestCluster.Describe(s)));
        await load.VerifyAcknowledgedAsync();
    }

    /// <summary>The cut links (from, to), shared by the filters of every domain silo (one process).</summary>
    private sealed class Partition
    {
        private readonly Lock _lock = new();
        private readonly HashSet<(int From, int To)> _cut = [];
        private long _dropped;

        public long Dropped => Interlocked.Read(ref _dropped);

        public void Cut(int a, int b)
        {
            lock (_lock)
            {
                _cut.Add((a, b));
                _cut.Add((b, a));
            }
        }

        public void Isolate(int replica, IEnumerable<int> all)
        {
            foreach (var other in all.Where(o => o != replica)) Cut(replica, other);
        }

        public void HealAll()
        {
            lock (_lock) _cut.Clear();
        }

        public bool Drops(int from, int to)
        {
            bool cut;
            lock (_lock) cut = _cut.Contains((from, to));
            if (cut) Interlocked.Increment(ref _dropped);
            return cut;
        }
    }

    /// <summary>Drops a replica grain's calls to another replica grain over a cut link; a dropped
    /// one-way call is simply never invoked, as if the network had lost it.</summary>
    private sealed class PartitionFilter(IGrainFactory grains, Partition network) : IOutgoingGrainCallFilter
    {
        private GrainType? _replicaType;

        public Task Invoke(IOutgoingGrainCallContext context)
        {
            _replicaType ??= grains.GetGrain<IReplicaGrain>(0).GetGrainId().Type;
            if (context.SourceId is { } source && source.Type == _replicaType && context.TargetId.Type == _replicaType
                && source.TryGetIntegerKey(out var from, out _) && context.TargetId.TryGetIntegerKey(out var to, out _)
                && network.Drops((int)from, (int)to))
            {
                return Task.CompletedTask;
            }
            return context.Invoke();
        }
    }
}
