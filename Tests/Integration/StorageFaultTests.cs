using System.Collections.Concurrent;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using MinBft.Hosting;
using MinBft.Hosting.Journal;
using MinBft.Messages;
using Orleans;
using Orleans.Runtime;
using MinBft.Tests.Hosting;
using Orleans.Storage;
using Xunit.Abstractions;

namespace MinBft.Tests.Integration;

/// <summary>
/// Storage faults under the replica grain, injected by a fault-injecting <see cref="IGrainStorage"/>
/// under each domain's grain-storage journal, under a continuous client load: writes that fail
/// before storing anything, writes that are stored but report failure (an ambiguous outcome the
/// journal must resolve on the retry), and a write that hangs. The replica retries each as
/// documented (HOSTING.md, DurableOperations), reports how long it has been failing, never sends
/// a certified message before the append of its intent returned or its USIG kept it with its
/// counter (an outgoing call filter checks every one), and the cluster ends with one history and
/// every acknowledged write.
/// </summary>
[Collection(nameof(ViewChangeCollection))]
public sealed class StorageFaultTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Failed_ambiguous_and_hanging_journal_writes_are_retried_and_nothing_is_sent_before_it_is_durable()
    {
        var stores = new FaultyGrainStorage?[3];
        var durable = Enumerable.Range(0, 3).Select(_ => new DurableCounters()).ToArray();
        var violations = new ConcurrentQueue<string>();
        await using var cluster = await MinBftTestCluster.StartAsync(new ClusterSetup
        {
            F = 1,
            Sqlite = false, // journals in grain storage, so that the faults sit under the journal
            ConfigureSilo = (domain, silo) =>
            {
                if (domain is not { } d) return;
                silo.Services.AddSingleton<IReplicaJournalFactory>(sp =>
                {
                    var store = stores[d] = new FaultyGrainStorage(sp.GetRequiredKeyedService<IGrainStorage>(SqliteGrainStorageSiloBuilderExtensions.DefaultProviderName));
                    return new RecordingJournalFactory(new GrainStorageReplicaJournalFactory(() => store, sp.GetRequiredService<ILoggerFactory>()), durable[d]);
                });
                silo.Services.AddSingleton<IOutgoingGrainCallFilter>(sp => new PersistBeforeSendFilter(sp.GetRequiredService<IGrainFactory>(), durable, violations));
            },
        }, output);
        var all = Enumerable.Range(0, cluster.N).ToArray();
        var load = new PutWorkload(cluster, clients: 3, "s");
        load.Start();
        await load.WaitForMoreAsync(10, "requests complete before any fault");
        var (_, primary) = await ViewChangeIntegrationTests.CurrentViewAsync(cluster, all);
        var backup = (primary + 1) % cluster.N;
        var (primaryStore, backupStore) = (stores[primary]!, stores[backup]!);

        // 1. The primary's journal writes fail before storing anything, again and again: it
        //    retries with backoff, reports the failure in its status, and orders nothing meanwhile.
        for (var i = 0; i < 1000; i++) primaryStore.FailNextWrite(WriteFailure.Before, IsRecord);
        await MinBftTestCluster.UntilAsync(async () => primaryStore.Injected >= 3
            && (await cluster.StatusesAsync([primary]))[0].DurableFailingFor > TimeSpan.Zero, "the primary's failing writes are retried and reported");
        var executed = (await cluster.StatusesAsync([primary]))[0].ExecutedSequence;
        primaryStore.ClearFailures();
        await load.WaitForMoreAsync(10, "requests complete once the primary's store works again");
        await cluster.WaitForStatusesAsync([primary], s => s[0].DurableFailingFor == TimeSpan.Zero && s[0].ExecutedSequence > executed,
            "the primary orders again and no longer reports failing writes");

        // 2. A backup's next three journal writes are stored but report failure, each retry's
        //    too: the journal finds out what landed and writes only the rest.
        var injected = backupStore.Injected;
        for (var i = 0; i < 3; i++) backupStore.FailNextWrite(WriteFailure.After, IsRecord);
        await MinBftTestCluster.UntilAsync(() => Task.FromResult(backupStore.Injected >= injected + 3), $"backup {backup} had three ambiguous writes");
        await load.WaitForMoreAsync(10, $"requests complete after backup {backup}'s ambiguous writes");
        await cluster.WaitForStatusesAsync([backup], s => s[0].DurableFailingFor == TimeSpan.Zero, $"backup {backup} no longer reports failing writes");

        // 3. One write of the primary hangs: nothing it has not stored leaves it (the filter
        //    checks), then the write completes and ordering goes on.
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var hanging = 0;
        primaryStore.BeforeWrite = name => IsRecord(name) && Interlocked.CompareExchange(ref hanging, 1, 0) == 0 ? release.Task : Task.CompletedTask;
        await MinBftTestCluster.UntilAsync(() => Task.FromResult(Volatile.Read(ref hanging) == 1), "a journal write of the primary hangs");
        release.SetResult();
        await load.WaitForMoreAsync(10, "requests complete after the hanging write completed");

        await load.StopAsync();
        var statuses = await cluster.WaitForAgreementAsync(all);
        foreach (var s in statuses) output.WriteLine(MinBftTestCluster.Describe(s));
        Assert.All(statuses, s => Assert.Null(s.Halted));
        await load.VerifyAcknowledgedAsync();
        Assert.Empty(violations);
        Assert.True(durable.Sum(d => d.Checked) > 0, "the filter checked certified messages against the journals");
    }

    private static bool IsRecord(string stateName) => stateName.StartsWith("journal-", StringComparison.Ordinal) && stateName != "journal-head";

    /// <summary>The counters whose appends returned at one domain: what its replica may send.</summary>
    private sealed class DurableCounters
    {
        private readonly ConcurrentDictionary<ulong, byte> _counters = new();
        public long Checked;

        public void Mark(ulong first, int count)
        {
            for (var i = 0; i < count; i++) _counters[first + (ulong)i] = 0;
        }

        public bool Contains(ulong counter) => _counters.ContainsKey(counter);
    }

    private sealed class RecordingJournalFactory(IReplicaJournalFactory inner, DurableCounters durable) : IReplicaJournalFactory
    {
        public IReplicaJournal Create(GrainId owner) => new RecordingJournal(inner.Create(owner), durable);
    }

    private sealed class RecordingJournal(IReplicaJournal inner, DurableCounters durable) : IReplicaJournal
    {
        public async Task<JournalContents> OpenAsync(CancellationToken cancellationToken)
        {
            var contents = await inner.OpenAsync(cancellationToken);
            durable.Mark(contents.FirstCounter, contents.Entries.Count);
            return contents;
        }

        public async Task AppendAsync(JournalAppend append, CancellationToken cancellationToken)
        {
            await inner.AppendAsync(append, cancellationToken);
            durable.Mark(append.FirstIntentCounter, append.Intents.Count);
        }

        public Task RestartAtAsync(ulong nextCounter, CancellationToken cancellationToken) => inner.RestartAtAsync(nextCounter, cancellationToken);

        public ValueTask DisposeAsync() => inner.DisposeAsync();
    }

    /// <summary>Checks every certified message a replica grain sends against what its journal made
    /// durable, or its USIG kept in the write that certified it (USIG-KEPT-MESSAGES-DESIGN.md).</summary>
    private sealed class PersistBeforeSendFilter(IGrainFactory grains, DurableCounters[] durable, ConcurrentQueue<string> violations) : IOutgoingGrainCallFilter
    {
        private GrainType? _replicaType;

        public async Task Invoke(IOutgoingGrainCallContext context)
        {
            _replicaType ??= grains.GetGrain<IReplicaGrain>(0).GetGrainId().Type;
            if (context.MethodName == nameof(IUsigGrain.CreateUis)
                && context.SourceId is { } caller && caller.Type == _replicaType && caller.TryGetIntegerKey(out var replica, out _))
            {
                // Read before the call: Orleans may recycle the request once it completes.
                var (first, kept) = ((ulong)context.Request.GetArgument(0)!, context.Request.GetArgument(2) as byte[][]);
                await context.Invoke();
                // Returned: the counters and the kept messages are durable in the USIG.
                if (kept is { Length: > 0 }) durable[(int)replica].Mark(first, kept.Length);
                return;
            }
            if (context.MethodName == nameof(IReplicaGrain.Deliver)
                && context.SourceId is { } source && source.Type == _replicaType && source.TryGetIntegerKey(out var sender, out _)
                && context.Request.GetArgument(0) is CertifiedMessage message && message.Sender == (int)sender)
            {
                var counters = durable[(int)sender];
                Interlocked.Increment(ref counters.Checked);
                if (!counters.Contains(message.Ui.Counter))
                    violations.Enqueue($"replica {sender} sent {message.GetType().Name} counter {message.Ui.Counter} before its intent was durable");
            }
            await context.Invoke();
        }
    }
}
