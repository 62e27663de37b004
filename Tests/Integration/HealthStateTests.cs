using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Logging;
using MinBft.Hosting;
using MinBft.Hosting.Journal;
using MinBft.Messages;
using MinBft.Tests.Hosting;
using Orleans;
using Orleans.Runtime;
using Orleans.Storage;
using Xunit.Abstractions;

namespace MinBft.Tests.Integration;

/// <summary>
/// The replica health check (<see cref="MinBftHealthCheck"/>, issue 12: <c>/healthz</c>) on a
/// running cluster, state by state, asked of each domain silo's registered
/// <see cref="HealthCheckService"/> (what the silo host's <c>/healthz</c> serves): Healthy under
/// load; Degraded while a view change or a state transfer is held open by a call filter (so the
/// window lasts until the test ends it, not for as long as a race allows); Unhealthy while a
/// replica's store keeps failing and after it halted; Healthy again afterwards. Each run ends with
/// one history and every acknowledged write read back.
/// </summary>
[Collection(nameof(ViewChangeCollection))]
public sealed class HealthStateTests(ITestOutputHelper output)
{
    /// <summary>
    /// Under load every replica is Healthy. The primary is cut off and the backups' request timers
    /// expire: they change view, and the NEW-VIEW is held back from the backup that is not the
    /// new primary, which stays Degraded ("changing views") for as long as it is held. Released,
    /// it joins the view, ordering resumes and it is Healthy again; healed, so is the old primary.
    /// </summary>
    [Fact]
    public async Task Healthy_under_load_and_degraded_while_a_held_view_change_lasts()
    {
        var network = new Network();
        await using var cluster = await MinBftTestCluster.StartAsync(new ClusterSetup
        {
            F = 1,
            ConfigureSilo = (domain, silo) =>
            {
                if (domain is null) return;
                silo.Services.AddHealthChecks().AddMinBftReplica();
                silo.Services.AddSingleton<IOutgoingGrainCallFilter>(sp => new NetworkFilter(sp.GetRequiredService<IGrainFactory>(), network));
            },
        }, output);
        var all = Enumerable.Range(0, cluster.N).ToArray();
        var load = new PutWorkload(cluster, clients: 3, "h");
        load.Start();
        await load.WaitForMoreAsync(10, "requests complete");
        // No fault yet: nothing is retrying, changing views or fetching state.
        foreach (var i in all) await ExpectAsync(cluster, i, HealthStatus.Healthy, "view 0");

        var (view, primary) = await ViewChangeIntegrationTests.CurrentViewAsync(cluster, all);
        var majority = all.Where(i => i != primary).ToArray();
        var newPrimary = (int)((view + 1) % cluster.N);
        var waiting = majority.Single(i => i != newPrimary);
        network.HoldNewViews();
        network.Isolate(primary, all);
        await cluster.ExpireRequestTimersAsync(majority, view);
        var degraded = await ExpectAsync(cluster, waiting, HealthStatus.Degraded, "changing views");
        Assert.Equal((view + 1).ToString(System.Globalization.CultureInfo.InvariantCulture), Convert.ToString(degraded.Data["view"], System.Globalization.CultureInfo.InvariantCulture));
        // It lasts: the NEW-VIEW is still held, so it is still between views.
        await MinBftTestCluster.UntilAsync(() => Task.FromResult(network.HeldNewViews > 0), $"the new primary {newPrimary} sent its NEW-VIEW (held)");
        var still = (await cluster.StatusesAsync([waiting]))[0];
        Assert.True(still.ViewChanging, MinBftTestCluster.Describe(still));
        Assert.Equal(HealthStatus.Degraded, (await HealthAsync(cluster, waiting)).Status);

        network.ReleaseNewViews();
        await ViewChangeIntegrationTests.WaitForViewAboveAsync(cluster, majority, view, primary);
        await load.WaitForMoreAsync(10, "requests complete in the new view");
        foreach (var i in majority) await ExpectAsync(cluster, i, HealthStatus.Healthy, $"view {view + 1}");

        network.HealAll();
        await load.WaitForMoreAsync(10, "requests complete after the heal");
        await load.StopAsync();
        var statuses = await cluster.WaitForAgreementAsync(all);
        foreach (var i in all) await ExpectAsync(cluster, i, HealthStatus.Healthy, "");
        Assert.All(statuses, s => Assert.True(s.View > view, MinBftTestCluster.Describe(s)));
        await load.VerifyAcknowledgedAsync();
    }

    /// <summary>
    /// A backup cut off while the others move past its checkpoints (every 4 batches, watermark 8)
    /// must fetch their state when the link heals. The snapshot comes in several small chunks and
    /// all but the first are held back: the transfer is under way and the backup is Degraded
    /// ("fetching state") for as long as they are held. Released, it installs the snapshot,
    /// catches up and is Healthy.
    /// </summary>
    [Fact]
    public Task Degraded_while_a_held_state_transfer_lasts_and_healthy_once_caught_up() =>
        HeldStateTransferAsync(chunkSize: 256, holdFromChunk: 1);

    /// <summary>
    /// The same with the default chunk size, so the snapshot is one chunk, installed the moment it
    /// arrives, and that chunk is held: the backup is Degraded from its probe for a newer
    /// checkpoint on, not only once a chunk is in (it used to show Healthy throughout).
    /// </summary>
    [Fact]
    public Task Degraded_while_the_only_chunk_of_a_one_chunk_state_transfer_is_held() =>
        HeldStateTransferAsync(chunkSize: null, holdFromChunk: 0);

    private async Task HeldStateTransferAsync(int? chunkSize, int holdFromChunk)
    {
        var network = new Network();
        await using var cluster = await MinBftTestCluster.StartAsync(new ClusterSetup
        {
            F = 1,
            CheckpointInterval = 4,
            Watermark = 8,
            // Small chunks make even this test's state a snapshot of several. The peers keep their
            // logs for the held backup however long the hold lasts on a slow machine.
            ConfigureMinBft = o =>
            {
                o.Protocol = o.Protocol with { StateTransferRetention = 1 << 20 };
                if (chunkSize is { } size) o.Protocol = o.Protocol with { StateChunkSize = size };
            },
            ConfigureSilo = (domain, silo) =>
            {
                if (domain is null) return;
                silo.Services.AddHealthChecks().AddMinBftReplica();
                silo.Services.AddSingleton<IOutgoingGrainCallFilter>(sp => new NetworkFilter(sp.GetRequiredService<IGrainFactory>(), network));
            },
        }, output);
        var all = Enumerable.Range(0, cluster.N).ToArray();
        var load = new PutWorkload(cluster, clients: 3, "t");
        load.Start();
        await load.WaitForMoreAsync(10, "requests complete");
        var (_, primary) = await ViewChangeIntegrationTests.CurrentViewAsync(cluster, all);
        var lagging = (primary + 1) % cluster.N;

        network.Isolate(lagging, all);
        var behind = (await cluster.StatusesAsync([lagging]))[0].ExecutedSequence;
        // The others' stable checkpoint moves well past what the cut-off backup could be sent again.
        await cluster.WaitForStatusesAsync([primary], s => s[0].StableCheckpoint > behind + 8 + 4, $"the others' stable checkpoint passes batch {behind + 12}");
        // Cut off, it cannot tell that it is behind (no peer's message reaches it): still Healthy.
        await ExpectAsync(cluster, lagging, HealthStatus.Healthy, "");

        network.HoldStateChunksTo(lagging, holdFromChunk);
        network.HealAll();
        await ExpectAsync(cluster, lagging, HealthStatus.Degraded, "fetching state");
        await MinBftTestCluster.UntilAsync(() => Task.FromResult(network.HeldStateChunks > 0), $"chunk {holdFromChunk} or a later one of the snapshot is held back");
        var during = (await cluster.StatusesAsync([lagging, primary]));
        Assert.True(during[0].ExecutedSequence < during[1].StableCheckpoint, "it has not installed the snapshot: " + MinBftTestCluster.Describe(during[0]));
        // Still fetching for as long as the chunks are held.
        await ExpectAsync(cluster, lagging, HealthStatus.Degraded, "fetching state");

        // The load goes on while the chunks are released. With this test's tiny chunks and a
        // checkpoint every 4 batches, the snapshot takes longer to send than the others take to
        // their next checkpoint: its peers keep the checkpoint being fetched and their logs after
        // it, so the backup installs that one and replays the rest while the load lasts.
        network.ReleaseStateChunks();
        var reached = (await cluster.StatusesAsync([primary]))[0].ExecutedSequence;
        await cluster.WaitForStatusesAsync([lagging], s => s[0].ExecutedSequence >= reached, $"backup {lagging} catches up to batch {reached} under load");
        await ExpectAsync(cluster, lagging, HealthStatus.Healthy, "");
        await load.WaitForMoreAsync(10, "requests complete after the transfer");
        await load.StopAsync();
        await cluster.WaitForAgreementAsync(all);
        await load.VerifyAcknowledgedAsync();
    }

    /// <summary>
    /// A backup's journal writes keep failing: Degraded while it retries, Unhealthy once they have
    /// failed for <see cref="MinBftHealthCheckOptions.UnhealthyAfterFailingFor"/> (the replicas'
    /// clock is moved past it), Healthy again once the store works. Then another owner takes its
    /// journal over: the replica halts (and comes back from its durable state at the next call);
    /// it is Unhealthy for <see cref="MinBftHealthCheckOptions.UnhealthyAfterHaltFor"/>, then Healthy.
    /// </summary>
    [Fact]
    public async Task Unhealthy_while_its_store_keeps_failing_and_after_it_halted()
    {
        var failingFor = TimeSpan.FromMinutes(1);
        var haltWindow = TimeSpan.FromMinutes(2);
        var stores = new FaultyGrainStorage?[3];
        await using var cluster = await MinBftTestCluster.StartAsync(new ClusterSetup
        {
            F = 1,
            Sqlite = false, // journals in grain storage, so that the faults sit under the journal
            ConfigureSilo = (domain, silo) =>
            {
                if (domain is not { } d) return;
                silo.Services.AddHealthChecks().AddMinBftReplica(o =>
                {
                    o.UnhealthyAfterFailingFor = failingFor;
                    o.UnhealthyAfterHaltFor = haltWindow;
                });
                silo.Services.AddSingleton<IReplicaJournalFactory>(sp =>
                {
                    var store = stores[d] = new FaultyGrainStorage(sp.GetRequiredKeyedService<IGrainStorage>(SqliteGrainStorageSiloBuilderExtensions.DefaultProviderName));
                    return new GrainStorageReplicaJournalFactory(() => store, sp.GetRequiredService<ILoggerFactory>());
                });
            },
        }, output);
        var all = Enumerable.Range(0, cluster.N).ToArray();
        var load = new PutWorkload(cluster, clients: 3, "u");
        load.Start();
        await load.WaitForMoreAsync(10, "requests complete");
        var (_, primary) = await ViewChangeIntegrationTests.CurrentViewAsync(cluster, all);
        var backup = (primary + 1) % cluster.N;
        foreach (var i in all) await ExpectAsync(cluster, i, HealthStatus.Healthy, "");

        // 1. Its journal writes fail, again and again: Degraded while that is recent...
        var store = stores[backup]!;
        for (var i = 0; i < 10_000; i++) store.FailNextWrite(WriteFailure.Before, IsRecord);
        await ExpectAsync(cluster, backup, HealthStatus.Degraded, "retrying a failed store or USIG write");
        await MinBftTestCluster.UntilAsync(() => Task.FromResult(store.Injected >= 3), $"replica {backup} retried its failed write twice");
        // ... Unhealthy once it has lasted (the replicas' clock moves; their request timers are
        // far longer, so nothing else notices).
        cluster.Clock.Advance(failingFor);
        await ExpectAsync(cluster, backup, HealthStatus.Unhealthy, "has been failing for");
        store.ClearFailures();
        await ExpectAsync(cluster, backup, HealthStatus.Healthy, "");
        await load.WaitForMoreAsync(10, "requests complete once its store works again");

        // 2. A second owner opens its journal: the replica's next append is refused and it halts.
        var journals = cluster.SiloOf(backup).SiloHost.Services.GetRequiredService<IReplicaJournalFactory>();
        IReplicaJournal? second = null;
        // The running replica moves the journal's head too: an open that lost that race is tried again.
        await MinBftTestCluster.UntilAsync(async () =>
        {
            var journal = journals.Create(cluster.Replica(backup).GetGrainId());
            try
            {
                await journal.OpenAsync(CancellationToken.None);
                second = journal;
                return true;
            }
            catch (InconsistentStateException)
            {
                await journal.DisposeAsync();
                return false;
            }
        }, $"a second owner opens replica {backup}'s journal");
        await using (second)
        {
            var halted = await ExpectAsync(cluster, backup, HealthStatus.Unhealthy, "another activation of this replica wrote its log");
            output.WriteLine("while halted: " + halted.Description);
        }
        // It came back from its durable state (the check's own status call reactivates it), and
        // it stays Unhealthy for the window after its halt, whatever else it does.
        await load.WaitForMoreAsync(10, $"requests complete after replica {backup} halted");
        var back = (await cluster.StatusesAsync([backup]))[0];
        Assert.Null(back.Halted);
        Assert.NotNull(back.LastHalt);
        Assert.Equal(HealthStatus.Unhealthy, (await HealthAsync(cluster, backup)).Status);
        cluster.Clock.Advance(haltWindow);
        await ExpectAsync(cluster, backup, HealthStatus.Healthy, "");

        await load.StopAsync();
        await cluster.WaitForAgreementAsync(all);
        foreach (var i in all) await ExpectAsync(cluster, i, HealthStatus.Healthy, "");
        await load.VerifyAcknowledgedAsync();
    }

    private static bool IsRecord(string stateName) => stateName.StartsWith("journal-", StringComparison.Ordinal) && stateName != "journal-head";

    /// <summary>Replica <paramref name="domain"/>'s entry of its own silo's health report.</summary>
    private static async Task<HealthReportEntry> HealthAsync(MinBftTestCluster cluster, int domain)
    {
        var health = cluster.SiloOf(domain).SiloHost.Services.GetRequiredService<HealthCheckService>();
        var report = await health.CheckHealthAsync();
        return report.Entries["minbft"];
    }

    /// <summary>Until replica <paramref name="domain"/>'s health is <paramref name="status"/> with a description containing <paramref name="says"/>.</summary>
    private async Task<HealthReportEntry> ExpectAsync(MinBftTestCluster cluster, int domain, HealthStatus status, string says)
    {
        HealthReportEntry last = default;
        try
        {
            await MinBftTestCluster.UntilAsync(async () =>
            {
                last = await HealthAsync(cluster, domain);
                return last.Status == status && last.Description!.Contains(says, StringComparison.Ordinal);
            }, $"replica {domain} is {status} ({says})");
        }
        catch (TimeoutException e)
        {
            throw new TimeoutException($"{e.Message}; last: {last.Status}: {last.Description}", e);
        }
        cluster.Log($"replica {domain}: {last.Status}: {last.Description}");
        return last;
    }

    /// <summary>What the tests do to replica-to-replica calls; shared by the filters of every domain silo.</summary>
    private sealed class Network
    {
        private readonly Lock _lock = new();
        private readonly HashSet<(int From, int To)> _cut = [];
        private TaskCompletionSource? _newViews;
        private TaskCompletionSource? _chunks;
        private int _chunksTo = -1;
        private int _chunksFrom;
        private int _heldNewViews;
        private int _heldChunks;

        public int HeldNewViews => Volatile.Read(ref _heldNewViews);
        public int HeldStateChunks => Volatile.Read(ref _heldChunks);

        public void Isolate(int replica, IEnumerable<int> all)
        {
            lock (_lock)
            {
                foreach (var other in all.Where(o => o != replica))
                {
                    _cut.Add((replica, other));
                    _cut.Add((other, replica));
                }
            }
        }

        public void HealAll()
        {
            lock (_lock) _cut.Clear();
        }

        public bool Drops(int from, int to)
        {
            lock (_lock) return _cut.Contains((from, to));
        }

        public void HoldNewViews()
        {
            lock (_lock) _newViews = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        public void ReleaseNewViews()
        {
            lock (_lock)
            {
                _newViews?.SetResult();
                _newViews = null;
            }
        }

        /// <summary>Chunks from index <paramref name="fromChunk"/> on of any snapshot sent to
        /// <paramref name="replica"/> wait until released.</summary>
        public void HoldStateChunksTo(int replica, int fromChunk)
        {
            lock (_lock)
            {
                _chunks = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                _chunksTo = replica;
                _chunksFrom = fromChunk;
            }
        }

        public void ReleaseStateChunks()
        {
            lock (_lock)
            {
                _chunks?.SetResult();
                _chunks = null;
                _chunksTo = -1;
            }
        }

        /// <summary>What the message waits for before it is sent (null: nothing).</summary>
        public Task? Hold(int to, ReplicaMessage? message)
        {
            lock (_lock)
            {
                if (message is NewView && _newViews is { } views)
                {
                    Interlocked.Increment(ref _heldNewViews);
                    return views.Task;
                }
                if (message is StateChunk chunk && chunk.Index >= _chunksFrom && to == _chunksTo && _chunks is { } chunks)
                {
                    Interlocked.Increment(ref _heldChunks);
                    return chunks.Task;
                }
                return null;
            }
        }
    }

    /// <summary>
    /// Drops a replica's calls to another over a cut link (a lost message), and holds back the
    /// messages <see cref="Network.Hold"/> names until released (a slow link): the sender never
    /// waits on a one-way send, so it goes on meanwhile.
    /// </summary>
    private sealed class NetworkFilter(IGrainFactory grains, Network network) : IOutgoingGrainCallFilter
    {
        private GrainType? _replicaType;

        public Task Invoke(IOutgoingGrainCallContext context)
        {
            _replicaType ??= grains.GetGrain<IReplicaGrain>(0).GetGrainId().Type;
            if (context.SourceId is { } source && source.Type == _replicaType && context.TargetId.Type == _replicaType
                && source.TryGetIntegerKey(out var from, out _) && context.TargetId.TryGetIntegerKey(out var to, out _))
            {
                if (network.Drops((int)from, (int)to)) return Task.CompletedTask;
                if (context.MethodName == nameof(IReplicaGrain.Deliver) && network.Hold((int)to, context.Request.GetArgument(0) as ReplicaMessage) is { } hold)
                    return HeldAsync(hold, context);
            }
            return context.Invoke();
        }

        private static async Task HeldAsync(Task hold, IOutgoingGrainCallContext context)
        {
            await hold;
            await context.Invoke();
        }
    }
}
