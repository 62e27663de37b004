using MinBft.Application;
using MinBft.Encoding;
using MinBft.Messages;
using MinBft.Protocol;

namespace MinBft.Tests.Protocol;

/// <summary>
/// A replica restarted in a view after 0 resumes that view from what it kept (found by the USIG
/// rotation campaign, which restarts every replica once; any restart can meet them).
/// </summary>
public sealed class RestartInLaterViewTests
{
    private static byte[] Put(string key) => KeyValueOperation.EncodePut(key, [1]);

    private static ReqViewChange Suspicion(CoreHarness h, int replica, long view)
    {
        var unsigned = new ReqViewChange(replica, view - 1, view, []);
        return unsigned with { Signature = h.Signer(replica).Sign(MessageEncoding.ReqViewChange(unsigned)) };
    }

    /// <summary>All three replicas move to view 1 (primary 1) before any checkpoint: its start is proven at position 0.</summary>
    private static CoreHarness InViewOne()
    {
        var h = new CoreHarness();
        for (var i = 0; i < h.N; i++)
            foreach (var from in Enumerable.Range(0, h.N).Where(j => j != i))
                h.Deliver(i, Suspicion(h, from, 1));
        h.Flush();
        Assert.All(h.Cores, c => Assert.Equal((1L, false), (c.View, c.ViewChanging)));
        return h;
    }

    private static List<CertifiedMessage> LogOf(CoreHarness h, int i) =>
        h.Sent<CertifiedMessage>(i).Where(m => !m.Ui.IsNone).OrderBy(m => m.Ui.Counter).ToList();

    [Fact]
    public void A_primary_restarted_in_a_view_that_started_at_position_0_resumes_it_and_sends_no_second_new_view()
    {
        var h = InViewOne();
        var client = h.NewClient();
        var request = client.CreateRequest(1, Put("a"));
        for (var i = 0; i < h.N; i++) h.Request(i, request);
        h.Flush();
        Assert.All(h.Cores, c => Assert.Equal(1UL, c.ExecutedSequence));

        // Replica 1, the primary of view 1, restarts from its log alone (no checkpoint yet: nothing stored).
        var log = LogOf(h, 1);
        Assert.Single(log.OfType<NewView>());
        var restarted = h.Renew(1);
        var effects = h.Step(1, c => c.Restore(new RecoveredState(1, null, null, [], 1, log, log[^1].Ui.Counter), h.Now));
        Assert.Equal((1L, false), (restarted.View, restarted.ViewChanging));
        // No second NEW-VIEW for view 1, and position 1 is not proposed again.
        Assert.DoesNotContain(effects.OfType<Send>(), s => s.Message is NewView or ViewChange);
        var after = h.Step(1, c => c.OnRequest(client.CreateRequest(2, Put("b")), h.Now));
        Assert.DoesNotContain(CoreHarness.Intents(after), m => m is Prepare { Sequence: 1 });
        // It hands the view over, as any restarted primary does (what it proposed is not all known).
        Assert.Contains(effects.OfType<Send>(), s => s.Message is ReqViewChange { NewView: 2 });
    }

    [Fact]
    public void A_backup_restarted_without_a_stored_view_start_takes_it_from_its_log_and_its_view_changes_stay_valid()
    {
        var h = InViewOne();
        var request = h.NewClient().CreateRequest(1, Put("a"));
        for (var i = 0; i < h.N; i++) h.Request(i, request);
        h.Flush();

        // Replica 2's log holds its COMMIT to the first PREPARE of view 1, which carries VS(1).
        var log = LogOf(h, 2);
        Assert.Contains(log, m => m is Commit { Prepare.ViewStart: not null });
        var restarted = h.Renew(2);
        h.Step(2, c => c.Restore(new RecoveredState(1, null, null, [], 1, log, log[^1].Ui.Counter), h.Now));
        Assert.Equal((1L, false), (restarted.View, restarted.ViewChanging));

        // Its next VIEW-CHANGE logs that COMMIT, so it must carry VS(1): replica 0 accepts it.
        h.Deliver(2, Suspicion(h, 0, 2));
        h.Deliver(2, Suspicion(h, 1, 2));
        var viewChange = Assert.Single(h.Sent<ViewChange>(2));
        Assert.Contains(viewChange.ViewStarts, vs => vs.Checkpoints[0].View == 1);
        var before = h.Cores[0].RejectionCount(RejectReason.Inconsistent);
        foreach (var message in h.Sent<CertifiedMessage>(2).OrderBy(m => m.Ui.Counter)) h.Deliver(0, message);
        Assert.Equal(before, h.Cores[0].RejectionCount(RejectReason.Inconsistent));
    }
}
