using MinBft.Application;
using MinBft.Messages;
using MinBft.Protocol;

namespace MinBft.Tests.Protocol;

/// <summary>
/// Where replies go (<see cref="Request.ReplyTo"/>, a routing hint no signature covers), and
/// requests arriving as one proxy's batch.
/// </summary>
public sealed class ReplyRoutingTests
{
    private static byte[] Put(string key, string value) => KeyValueOperation.EncodePut(key, System.Text.Encoding.UTF8.GetBytes(value));

    [Fact]
    public void Each_replica_replies_to_the_proxy_its_own_copy_of_the_request_names_not_the_one_the_primary_wrote()
    {
        var h = new CoreHarness();
        var request = h.NewClient().CreateRequest(1, Put("a", "1")) with { ReplyTo = "proxy-a" };
        // The primary's copy names another proxy (what a Byzantine primary could write into its
        // PREPARE); backup 1 got the client's own copy, backup 2 none.
        h.Request(0, request with { ReplyTo = "elsewhere" });
        h.Request(1, request);
        h.Flush();
        Assert.All(h.Cores, c => Assert.Equal(1UL, c.ExecutedSequence));

        string? ReplyTo(int replica) => Assert.Single(h.Outbox[replica].OfType<SendReply>()).ReplyTo;
        Assert.Equal("elsewhere", ReplyTo(0));
        Assert.Equal("proxy-a", ReplyTo(1));
        Assert.Equal("elsewhere", ReplyTo(2));

        // The proxy retransmits to every replica: each resends its cached reply to the proxy the
        // retransmitted copy names, so a misdirected first reply costs one retransmission.
        var resent = Assert.Single(h.Request(2, request).OfType<SendReply>());
        Assert.Equal("proxy-a", resent.ReplyTo);
        Assert.Equal(request.Seq, resent.Reply.Seq);
    }

    [Fact]
    public void A_request_without_a_hint_is_answered_to_its_clients_own_proxy_and_an_oversized_hint_is_refused()
    {
        var h = new CoreHarness();
        var client = h.NewClient();
        var plain = client.CreateRequest(1, Put("a", "1"));
        for (var i = 0; i < h.N; i++) h.Request(i, plain);
        h.Flush();
        Assert.All(Enumerable.Range(0, h.N), i => Assert.Null(Assert.Single(h.Outbox[i].OfType<SendReply>()).ReplyTo));

        var before = h.Cores[0].StateFingerprint();
        var next = client.CreateRequest(2, Put("a", "2"));
        foreach (var bad in new[] { "", new string('p', MinBft.Encoding.MessageLimits.MaxReplyToLength + 1) })
        {
            var rejected = Assert.Single(h.Request(0, next with { ReplyTo = bad }).OfType<Rejected>());
            Assert.Equal(RejectReason.Malformed, rejected.Reason);
            Assert.Contains("reply-to", rejected.Detail, StringComparison.Ordinal);
        }
        h.Flush();
        Assert.Equal(before, h.Cores[0].StateFingerprint());
        Assert.Equal(1UL, h.Cores[0].ExecutedSequence);
    }

    [Fact]
    public void Requests_a_proxy_sent_together_are_taken_in_one_step_and_ordered_in_one_batch()
    {
        var h = new CoreHarness(tune: s => s with { Tuning = s.Tuning with { MaxBatchSize = 16 } });
        var requests = Enumerable.Range(0, 5).Select(i => h.NewClient().CreateRequest(1, Put("k" + i, "v")) with { ReplyTo = "proxy" }).ToList();
        // A malformed one among them is refused alone; the rest are ordered.
        var effects = h.Step(0, c => c.OnRequests([.. requests, requests[0] with { Signature = new byte[3] }], h.Now));
        Assert.Equal(RejectReason.Malformed, Assert.Single(effects.OfType<Rejected>()).Reason);
        h.Flush();

        var prepare = Assert.Single(h.Sent<Prepare>(0));
        Assert.Equal(requests.Select(r => r.ClientId).Order(), prepare.Batch.Select(r => r.ClientId).Order());
        Assert.All(h.Cores, c => Assert.Equal(1UL, c.ExecutedSequence));
        Assert.Equal(5, h.Outbox[1].OfType<SendReply>().Count(s => s.ReplyTo == "proxy"));
    }
}
