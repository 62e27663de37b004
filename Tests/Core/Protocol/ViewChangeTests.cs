using MinBft.Application;
using MinBft.Encoding;
using MinBft.Messages;
using MinBft.Protocol;

namespace MinBft.Tests.Protocol;

/// <summary>View change, PROTOCOL.md section 7: each test names the rule it checks.</summary>
public sealed class ViewChangeTests
{
    private static byte[] Put(string key, string value) => KeyValueOperation.EncodePut(key, System.Text.Encoding.UTF8.GetBytes(value));

    private static CoreHarness Harness(int f = 1) =>
        new(f, tune: s => s with { Tuning = s.Tuning with { RequestTimeout = TimeSpan.FromSeconds(1), ViewChangeTimeout = TimeSpan.FromSeconds(1) } });

    private static ReqViewChange Suspicion(CoreHarness h, int replica, long view)
    {
        var unsigned = new ReqViewChange(replica, view - 1, view, []);
        return unsigned with { Signature = h.Signer(replica).Sign(MessageEncoding.ReqViewChange(unsigned)) };
    }

    [Fact]
    public void Rule_7_1_a_backup_holding_an_unexecuted_request_past_the_timeout_suspects_the_primary()
    {
        var h = Harness();
        h.Request(1, h.NewClient().CreateRequest(1, Put("a", "1")));
        h.Now += TimeSpan.FromSeconds(2);
        var sent = h.Tick(1).OfType<Send>().Select(s => s.Message).OfType<ReqViewChange>().ToList();
        var suspicion = Assert.Single(sent);
        Assert.Equal(1, suspicion.NewView);
        Assert.Equal(0, h.Cores[1].View); // one suspicion (its own) is not f+1
    }

    [Fact]
    public void Rule_7_2_f_suspicions_do_not_move_a_replica_f_plus_1_do()
    {
        var h = Harness(f: 2);
        h.Deliver(0, Suspicion(h, 3, 1));
        h.Deliver(0, Suspicion(h, 4, 1));
        Assert.Equal(0, h.Cores[0].View);
        Assert.False(h.Cores[0].ViewChanging);
        h.Deliver(0, Suspicion(h, 2, 1));
        Assert.Equal(1, h.Cores[0].View);
        Assert.True(h.Cores[0].ViewChanging);
        Assert.Single(h.Sent<ViewChange>(0));
    }

    [Fact]
    public void Rule_7_2_a_forged_suspicion_is_rejected_and_counted()
    {
        var h = Harness();
        var forged = Suspicion(h, 2, 1) with { ReplicaId = 1 };
        var effects = h.Deliver(0, forged);
        Assert.Equal(RejectReason.InvalidSignature, Assert.Single(effects.OfType<Rejected>()).Reason);
    }

    [Fact]
    public void Rule_7_3_a_view_change_whose_log_leaves_out_earlier_messages_is_rejected()
    {
        var h = Harness();
        var client = h.NewClient();
        for (ulong seq = 1; seq <= 2; seq++)
        {
            var request = client.CreateRequest(seq, Put("a", seq.ToString()));
            for (var i = 0; i < h.N; i++) h.Request(i, request);
            h.Flush();
        }
        // Replica 1 (Byzantine, with its real USIG) sends a VIEW-CHANGE without its COMMITs.
        var truncated = h.Certify(1, new ViewChange(1, 1, CheckpointCertificate.Genesis, [], UniqueIdentifier.None, []));
        var before = h.Cores[2].StateFingerprint();
        var effects = h.Deliver(2, truncated);
        var rejection = Assert.Single(effects.OfType<Rejected>());
        Assert.Equal(RejectReason.Inconsistent, rejection.Reason);
        Assert.Equal(before, h.Cores[2].StateFingerprint());
    }

    [Fact]
    public void Rule_7_4_a_crashed_primary_is_replaced_and_executed_batches_survive_the_new_view()
    {
        var h = Harness();
        var client = h.NewClient();
        var first = client.CreateRequest(1, Put("a", "1"));
        for (var i = 0; i < h.N; i++) h.Request(i, first);
        h.Flush();
        Assert.All(h.Cores, c => Assert.Equal(1UL, c.ExecutedSequence));

        // The primary (0) crashes. Replicas 1 and 2 suspect it after the request timeout.
        var second = client.CreateRequest(2, Put("a", "2"));
        h.Request(1, second);
        h.Request(2, second);
        h.Now += TimeSpan.FromSeconds(2);
        var s1 = h.Tick(1).OfType<Send>().Select(s => s.Message).OfType<ReqViewChange>().Single();
        h.Tick(2);
        h.Deliver(2, s1);
        h.Deliver(1, h.Sent<ReqViewChange>(2).Single());
        Assert.All(new[] { 1, 2 }, i => Assert.Equal(1, h.Cores[i].View));

        // VIEW-CHANGEs reach the new primary (1), whose NEW-VIEW reaches 2; VS forms; the new
        // primary first proposes the carried batch again (position 1, already executed
        // everywhere: committed again, not executed twice), then the pending request at 2.
        h.Flush(1, 2);
        Assert.All(new[] { 1, 2 }, i => Assert.False(h.Cores[i].ViewChanging));
        Assert.All(new[] { 1, 2 }, i => Assert.Equal(2UL, h.Cores[i].ExecutedSequence));
        Assert.Equal(Convert.ToHexString(h.Cores[1].StateDigest()), Convert.ToHexString(h.Cores[2].StateDigest()));
        var prepares = h.Sent<Prepare>(1).OrderBy(p => p.Sequence).ToList();
        Assert.All(prepares, p => Assert.Equal(1, p.View));
        Assert.Equal([1UL, 2UL], prepares.Select(p => p.Sequence));
        Assert.Equal(first, Assert.Single(prepares[0].Batch));
        Assert.NotNull(prepares[0].ViewStart); // the first PREPARE of view 1 proves where it starts
        Assert.Equal(second, Assert.Single(prepares[1].Batch));
    }

    [Fact]
    public void Rule_7_4_a_first_prepare_of_a_new_view_without_a_view_start_certificate_is_rejected()
    {
        var h = Harness();
        for (var i = 0; i < h.N; i++)
        {
            h.Deliver(i, Suspicion(h, (i + 1) % h.N, 1));
            h.Deliver(i, Suspicion(h, (i + 2) % h.N, 1));
        }
        h.Flush();
        Assert.All(h.Cores, c => Assert.False(c.ViewChanging));
        var request = h.NewClient().CreateRequest(1, Put("a", "1"));
        var bare = h.Certify(1, new Prepare(1, 1, 1, [request], UniqueIdentifier.None));
        var effects = h.Deliver(2, bare);
        Assert.Equal(RejectReason.InvalidBatch, Assert.Single(effects.OfType<Rejected>()).Reason);
    }

    [Theory]
    [InlineData("one VIEW-CHANGE only")]
    [InlineData("a forged VIEW-CHANGE")]
    [InlineData("a VIEW-CHANGE with a truncated log")]
    public void Rule_7_4_a_new_view_that_would_omit_a_committed_batch_is_rejected(string how)
    {
        // Batch 1 commits at replicas 0 and 1 (replica 2 saw nothing); then 0 crashes and the
        // new primary, replica 1, is Byzantine: to drop batch 1 from view 1 it must leave out
        // its own VIEW-CHANGE (which carries its COMMIT) or replace it with one without it.
        var h = Harness();
        var request = h.NewClient().CreateRequest(1, Put("a", "1"));
        h.Request(0, request);
        h.Request(1, request);
        h.Flush(0, 1);
        Assert.Equal(1UL, h.Cores[1].ExecutedSequence);
        var commit = Assert.Single(h.Sent<Commit>(1));

        h.Deliver(2, Suspicion(h, 0, 1));
        h.Deliver(2, Suspicion(h, 1, 1));
        Assert.True(h.Cores[2].ViewChanging);
        var vc2 = Assert.Single(h.Sent<ViewChange>(2));

        ViewChange[] chosen = how switch
        {
            "one VIEW-CHANGE only" => [vc2],
            "a forged VIEW-CHANGE" => [vc2, new ViewChange(1, 1, CheckpointCertificate.Genesis, [], commit.CommitUi, [])],
            _ => [vc2, h.Certify(1, new ViewChange(1, 1, CheckpointCertificate.Genesis, [], UniqueIdentifier.None, []))],
        };
        var newView = h.Certify(1, new NewView(1, 1, chosen, UniqueIdentifier.None));
        h.Deliver(2, commit); // replica 1's stream, in order (a view-0 COMMIT: no effect in view 1)
        var before = h.Cores[2].StateFingerprint();
        var effects = new List<Effect>();
        // A certified VIEW-CHANGE is itself in replica 1's stream, before the NEW-VIEW: rejected
        // there, it also leaves the NEW-VIEW behind it unprocessed.
        if (chosen.Length == 2 && !chosen[1].Ui.IsNone && chosen[1].Ui.Counter > commit.CommitUi.Counter) effects.AddRange(h.Deliver(2, chosen[1]));
        effects.AddRange(h.Deliver(2, newView));
        Assert.Contains(effects.OfType<Rejected>(), r => r.From == 1 && r.Reason is RejectReason.Inconsistent or RejectReason.InvalidUi);
        Assert.Equal(before, h.Cores[2].StateFingerprint());
        Assert.True(h.Cores[2].ViewChanging, "no view entered without the committed batch");
        Assert.Equal(0UL, h.Cores[2].ExecutedSequence);
    }
}
