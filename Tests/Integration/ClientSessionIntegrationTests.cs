using MinBft.Application;
using MinBft.Client;
using Xunit;
using Xunit.Abstractions;

namespace MinBft.Tests.Integration;

/// <summary>The SDK's MAC sessions through a real cluster: the replicas skip client signatures, the
/// client skips reply signatures, and results stay the same.</summary>
public sealed class ClientSessionIntegrationTests(ITestOutputHelper output)
{
    [Fact]
    public async Task With_sessions_replicas_and_SDK_take_requests_and_replies_on_their_MACs_and_without_them_check_every_signature()
    {
        await using var cluster = await MinBftTestCluster.StartAsync(new ClusterSetup { F = 1, Sqlite = false }, output);
        var all = Enumerable.Range(0, cluster.N).ToArray();

        using (var client = new MinBftClient(cluster.Grains, cluster.Manifest, new MinBftClientOptions { IdentityPoolSize = 2 }))
        {
            var kv = new KeyValueClient(client);
            for (var i = 0; i < 10; i++) await kv.PutAsync("session-key", System.Text.Encoding.UTF8.GetBytes("v" + i));
            Assert.Equal("v9", System.Text.Encoding.UTF8.GetString((await kv.GetAsync("session-key"))!));
            // Every proving reply (f+1 per request) came with its session MAC: no reply signature was checked.
            Assert.True(client.RepliesProvenByMac >= 11 * cluster.Manifest.ReplyQuorum, $"{client.RepliesProvenByMac} replies proven by MAC");
            Assert.Equal(0, client.ReplySignaturesChecked);
        }
        // Every replica saw the 11 requests (directly, or in the PREPARE) and took each on its MAC.
        var statuses = await cluster.WaitForStatusesAsync(all, s => s.All(r => r.RequestsAuthenticatedByMac >= 11), "replicas took the requests on their MACs");
        Assert.All(statuses, s => Assert.Equal(0, s.RequestSignaturesChecked));
        Assert.All(statuses, s => Assert.InRange(s.ClientSessions, 1, 2));
        Assert.True(statuses.Sum(s => s.RepliesAuthenticatedByMac) >= 11 * cluster.Manifest.ReplyQuorum);

        using (var plain = new MinBftClient(cluster.Grains, cluster.Manifest, new MinBftClientOptions { IdentityPoolSize = 1, SessionRenewal = TimeSpan.Zero }))
        {
            var kv = new KeyValueClient(plain);
            for (var i = 0; i < 5; i++) await kv.PutAsync("plain-key", [(byte)i]);
            Assert.Equal(0, plain.RepliesProvenByMac);
            Assert.True(plain.ReplySignaturesChecked >= 5 * cluster.Manifest.ReplyQuorum, $"{plain.ReplySignaturesChecked} reply signatures checked");
        }
        var after = await cluster.WaitForStatusesAsync(all, s => s.All(r => r.RequestSignaturesChecked >= 5), "replicas checked the session-less client's signatures");
        Assert.All(after.Zip(statuses), p => Assert.Equal(p.Second.RequestsAuthenticatedByMac, p.First.RequestsAuthenticatedByMac));
        await cluster.WaitForAgreementAsync(all);
    }
}
