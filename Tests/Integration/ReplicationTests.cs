using Microsoft.Extensions.DependencyInjection;
using MinBft.Hosting;
using Orleans;
using Orleans.Runtime;
using Orleans.TestingHost;
using MinBft.Application;
using Xunit.Abstractions;

namespace MinBft.Tests.Integration;

/// <summary>
/// End to end on in-process clusters: placement by fault domain, concurrent clients through
/// their proxies, agreement of all replicas, and a fault domain going down.
/// </summary>
public sealed class ReplicationTests(ITestOutputHelper output)
{
    [Fact]
    public async Task F1_hmac_with_a_gateway_silo_replicates_concurrent_clients_and_survives_a_domain_going_down()
    {
        await using var cluster = await MinBftTestCluster.StartAsync(
            new ClusterSetup { F = 1, Scheme = UsigScheme.Hmac, GatewaySilos = 1 }, output);
        await RunScenarioAsync(cluster, clients: 4, operations: 10, stopDomain: 2);
    }

    [Fact]
    public async Task F2_replicates_concurrent_clients_and_survives_a_domain_going_down()
    {
        await using var cluster = await MinBftTestCluster.StartAsync(new ClusterSetup { F = 2 }, output);
        await RunScenarioAsync(cluster, clients: 4, operations: 8, stopDomain: 3);
    }

    [Fact]
    public async Task When_the_primarys_domain_goes_down_the_others_change_view_and_go_on()
    {
        await using var cluster = await MinBftTestCluster.StartAsync(new ClusterSetup { F = 1 }, output);
        var clients = Enumerable.Range(0, 3).Select(c => new TestClient(cluster, "v" + c)).ToArray();
        await Task.WhenAll(clients.Select(c => c.RunAsync(6)));
        var before = await cluster.WaitForAgreementAsync([0, 1, 2]);
        var primary = before[0].Primary;

        await cluster.StopDomainAsync(primary);
        // The backups know the requests, see none executed, suspect the primary once their
        // request timers run out (now: the test moves their clock), and move to the next view
        // with the history carried over; then requests complete again, with every result still
        // what a single correct server would return.
        var alive = Enumerable.Range(0, cluster.N).Where(i => i != primary).ToArray();
        var work = Task.WhenAll(clients.Select(c => c.RunAsync(6)));
        await cluster.ExpireRequestTimersAsync(alive, before[0].View);
        await work;
        var after = await cluster.WaitForAgreementAsync(alive, before[0].ExecutedSequence + 1);
        foreach (var s in after) output.WriteLine(MinBftTestCluster.Describe(s));
        Assert.All(after, s => Assert.True(s.View > before[0].View && s.Primary != primary, MinBftTestCluster.Describe(s)));
        Assert.All(cluster.Activations, a => Assert.Equal((long?)a.Key, a.Domain));
    }

    [Fact]
    public async Task A_request_sent_once_the_primarys_domain_is_down_reaches_every_replica_at_once()
    {
        // A proxy sends a new request to the likely primary alone, and to every replica only at
        // its first retransmission: here a day away on the test clock, which stands still until
        // the test moves it. With the primary's fault domain down, the backups must get the
        // request at once, so that their request timers (rule 7.1) start the view change without
        // waiting for that retransmission.
        await using var cluster = await MinBftTestCluster.StartAsync(new ClusterSetup
        {
            F = 1,
            ConfigureMinBft = o => o.ClientRetransmitInterval = o.ClientRetransmitMaxInterval = TimeSpan.FromDays(1),
        }, output);
        var client = new TestClient(cluster, "c");
        await client.RunAsync(4);
        var before = await cluster.WaitForAgreementAsync([0, 1, 2]);
        var primary = before[0].Primary;
        var backups = Enumerable.Range(0, cluster.N).Where(i => i != primary).ToArray();
        var checkedBefore = before.ToDictionary(s => s.ReplicaId, s => s.RequestSignaturesChecked);

        var stopped = cluster.SiloOf(primary).SiloAddress;
        await cluster.StopDomainAsync(primary);
        // Every silo left running has seen the stop (the proxy may be on any of them).
        foreach (var silo in cluster.Cluster.Silos.OfType<InProcessSiloHandle>())
        {
            var membership = silo.SiloHost.Services.GetRequiredService<IClusterMembershipService>();
            await MinBftTestCluster.EventuallyAsync(
                () => membership.CurrentSnapshot.Members.TryGetValue(stopped, out var member) && member.Status == SiloStatus.Active
                    ? throw new InvalidOperationException("not yet")
                    : Task.FromResult(true),
                $"silo {silo.SiloAddress} sees the silo of domain {primary} gone");
        }

        using var caller = new ProxyCaller(cluster.Grains);
        var request = client.NextRequest(KeyValueOperation.EncodePut("after-the-stop", [1]));
        var submitted = caller.SubmitAsync(cluster.Grains.GetGrain<IClientProxyGrain>(client.ClientId), request, MinBftTestCluster.AttemptTimeout);
        await cluster.WaitForStatusesAsync(backups, s => s.All(r => r.RequestSignaturesChecked > checkedBefore[r.ReplicaId]),
            "both backups got the request without a retransmission");

        // The view change it starts, and the service in the new view.
        await cluster.ExpireRequestTimersAsync(backups, before[0].View);
        await client.RunAsync(2);
        var after = await cluster.WaitForAgreementAsync(backups, before[0].ExecutedSequence + 1);
        Assert.All(after, s => Assert.True(s.View > before[0].View && s.Primary != primary, MinBftTestCluster.Describe(s)));
        // The request submitted by hand ends one way or the other (the clock moved past its timeout).
        await submitted.WaitAsync(MinBftTestCluster.MaxWait);
    }

    private static async Task RunScenarioAsync(MinBftTestCluster cluster, int clients, int operations, int stopDomain)
    {
        var n = cluster.N;
        // Warm USIG i up too, so that its placement is recorded.
        for (var i = 0; i < n; i++) Assert.Equal(i, (await cluster.Usig(i).GetIdentity()).ReplicaId);

        var all = Enumerable.Range(0, n).ToArray();
        var team = Enumerable.Range(0, clients).Select(c => new TestClient(cluster, "c" + c)).ToList();
        // With a gateway silo (no fault domain), one more client's proxy lives there.
        var gateway = cluster.Setup.GatewaySilos > 0
            ? new TestClient(cluster, "gw", cluster.SiloOf(n).ServiceProvider.GetRequiredService<IGrainFactory>())
            : null;
        if (gateway is not null) team.Add(gateway);
        await Task.WhenAll(team.Select(c => c.RunAsync(operations)));
        cluster.Log($"{team.Count} clients x {operations} operations done");
        if (gateway is not null)
        {
            Assert.Contains(cluster.ProxyCalls, p => p.ClientId == gateway.ClientId);
            Assert.All(cluster.ProxyCalls.Where(p => p.ClientId == gateway.ClientId), p => Assert.Null(p.Domain));
        }
        var statuses = await cluster.WaitForAgreementAsync(all);
        // What health checks and the dashboard's sampler poll: the same progress, without the state
        // digest (which costs the replica an encoding of the whole state).
        foreach (var status in statuses)
        {
            var polled = await cluster.Replica(status.ReplicaId).GetStatusWithoutStateDigest();
            Assert.Equal("", polled.StateDigest);
            Assert.NotEqual("", status.StateDigest);
            Assert.Equal((status.View, status.ExecutedSequence, status.HistoryDigest), (polled.View, polled.ExecutedSequence, polled.HistoryDigest));
        }
        // No backup suspects the correct primary however slow the machine (the test's clock decides).
        Assert.All(statuses, s => Assert.Equal(0, s.View));
        Assert.All(statuses, s => Assert.True(s.ExecutedSequence >= 1));
        Assert.All(statuses, s => Assert.Equal(s.SentLogCount, s.DurableSentCount));

        // Replica i and USIG i ran only in fault domain i.
        Assert.All(cluster.Activations, a => Assert.Equal((long?)a.Key, a.Domain));
        foreach (var kind in new[] { "replica", "usig" })
            Assert.Equal(all.Select(i => (long)i), cluster.Activations.Where(a => a.Grain == kind).Select(a => a.Key).Distinct().Order());

        // A client may not use a replica's USIG: it would burn counter values the replica never used.
        var counter = (await cluster.Usig(0).GetIdentity()).LastCounter;
        await Assert.ThrowsAsync<UnauthorizedAccessException>(() => cluster.Usig(0).CreateUis(counter + 1, [new byte[32]], null));
        Assert.Equal(counter, (await cluster.Usig(0).GetIdentity()).LastCounter);

        // Domain down: replica and USIG of that domain are down, not moved elsewhere.
        await cluster.StopDomainAsync(stopDomain);
        var down = await MinBftTestCluster.EventuallyAsync(
            () => Assert.ThrowsAsync<FaultDomainUnavailableException>(() => cluster.Replica(stopDomain).GetStatus()),
            $"replica {stopDomain} reported down");
        Assert.Equal(stopDomain, down.FaultDomain);
        await Assert.ThrowsAsync<FaultDomainUnavailableException>(() => cluster.Usig(stopDomain).GetIdentity());

        // The other 2f replicas go on (the primary, 0, is among them).
        var alive = all.Where(i => i != stopDomain).ToArray();
        await Task.WhenAll(team.Select(c => c.RunAsync(4)));
        cluster.Log("requests completed with a domain down");
        await cluster.WaitForAgreementAsync(alive, statuses[0].ExecutedSequence + 1);
        Assert.All(cluster.Activations, a => Assert.Equal((long?)a.Key, a.Domain));
    }
}
