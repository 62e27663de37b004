using MinBft.Application;
using MinBft.Encoding;
using MinBft.Messages;
using MinBft.Protocol;

namespace MinBft.Tests.Protocol;

/// <summary>
/// A NEW-VIEW travels by reference (PROTOCOL.md section 7, step 4; VIEW-CHANGE-DESIGN.md): its
/// VIEW-CHANGEs are named by sender, digest and UI, resolved from what each replica holds, and
/// fetched one by one when missing. So no message carries more than one VIEW-CHANGE's log.
/// </summary>
public sealed class NewViewByReferenceTests
{
    private static byte[] Put(string key, int bytes) => KeyValueOperation.EncodePut(key, new byte[bytes]);

    private static CoreHarness Harness(int f = 1) =>
        new(f, tune: s => s with { Tuning = s.Tuning with { RequestTimeout = TimeSpan.FromSeconds(1), ViewChangeTimeout = TimeSpan.FromSeconds(1) } });

    private static ReqViewChange Suspicion(CoreHarness h, int replica, long view)
    {
        var unsigned = new ReqViewChange(replica, view - 1, view, []);
        return unsigned with { Signature = h.Signer(replica).Sign(MessageEncoding.ReqViewChange(unsigned)) };
    }

    /// <summary>Replicas <paramref name="joining"/> receive f+1 suspicions of view 1 from the others.</summary>
    private static void Suspect(CoreHarness h, params int[] joining)
    {
        foreach (var i in joining)
            foreach (var other in Enumerable.Range(0, h.N).Where(o => o != i).Take(h.Cores[0].F + 1))
                h.Deliver(i, Suspicion(h, other, 1));
    }

    /// <summary>Replicas 0 and 1 change view; replica 0's VIEW-CHANGE reaches the new primary (1)
    /// only; replica 2 gets replica 1's stream (its VIEW-CHANGE, then the NEW-VIEW) and must fetch
    /// replica 0's. Returns what replica 2's step emitted on the NEW-VIEW.</summary>
    private static (ViewChange Missing, NewView NewView, IReadOnlyList<Effect> Waiting) BackupMissingAViewChange(CoreHarness h)
    {
        Suspect(h, 0, 1);
        var vc0 = Assert.Single(h.Sent<ViewChange>(0));
        h.Deliver(1, vc0);
        var newView = Assert.Single(h.Sent<NewView>(1));
        h.Deliver(2, Assert.Single(h.Sent<ViewChange>(1)));
        return (vc0, newView, h.Deliver(2, newView));
    }

    [Fact]
    public void New_view_is_sent_by_reference_and_resolved_from_the_view_changes_each_replica_holds()
    {
        var h = Harness();
        var client = h.NewClient();
        // Two executed batches of 60 KB each: every VIEW-CHANGE logs them (about 120 KB of log).
        for (ulong seq = 1; seq <= 2; seq++)
        {
            var request = client.CreateRequest(seq, Put("k", 60_000));
            for (var i = 0; i < h.N; i++) h.Request(i, request);
            h.Flush();
        }
        Suspect(h, 0, 1, 2);
        h.Flush();

        Assert.All(h.Cores, c => Assert.Equal(1, c.View));
        Assert.All(h.Cores, c => Assert.False(c.ViewChanging));
        var viewChange = h.Sent<ViewChange>(2).Single();
        Assert.True(MessageLimits.ApproximateBytes(viewChange) > 100_000);
        var newView = Assert.Single(h.Sent<NewView>(1));
        Assert.All(newView.ViewChanges, vc => Assert.IsType<CertifiedStub>(vc));
        Assert.Equal(h.Cores[0].F + 1, newView.ViewChanges.Length);
        Assert.True(MessageLimits.ApproximateBytes(newView) < 4_096, $"a NEW-VIEW of {MessageLimits.ApproximateBytes(newView)} bytes");
        // Everyone held the VIEW-CHANGEs from their senders' streams: nothing was fetched.
        Assert.All(h.Cores, c => Assert.Equal(0, c.ViewChangeFetchesSent));
        Assert.All(h.Cores, c => Assert.Equal(0, c.RejectionCount(RejectReason.Inconsistent) + c.RejectionCount(RejectReason.InvalidUi)));
    }

    [Fact]
    public void A_view_change_that_never_reached_a_backup_is_fetched_from_the_new_primary()
    {
        var h = Harness();
        var (vc0, newView, waiting) = BackupMissingAViewChange(h);
        Assert.Contains(newView.ViewChanges, vc => vc is CertifiedStub { ReplicaId: 0 });
        Assert.Equal(0, h.Cores[2].View);
        var fetch = Assert.Single(waiting.OfType<Send>(), s => s.Message is ViewChangeFetch);
        Assert.Equal(1, fetch.To); // the primary first: it referred to it, so it holds it
        Assert.Equal(0, Assert.Single(((ViewChangeFetch)fetch.Message).Wanted).ReplicaId);

        var answer = h.Deliver(1, fetch.Message);
        var relay = Assert.Single(answer.OfType<Send>(), s => s.Message is ViewChangeRelay);
        Assert.Equal(2, relay.To);
        Assert.Equal(vc0.Ui.Counter, ((ViewChangeRelay)relay.Message).ViewChange.Ui.Counter);

        h.Deliver(2, relay.Message);
        Assert.Equal(1, h.Cores[2].View);
        Assert.False(h.Cores[2].ViewChanging);
        Assert.Equal(1, h.Cores[2].RelayedViewChangesAccepted);
        Assert.Equal(0, h.Cores[2].HeldRelayedViewChanges); // done with once the view is entered
    }

    [Fact]
    public void A_backup_asks_every_replica_when_the_new_primary_does_not_answer()
    {
        var h = Harness();
        BackupMissingAViewChange(h); // asks replica 1, which does not answer
        h.Now += TimeSpan.FromMilliseconds(300);
        var again = h.Tick(2).OfType<Send>().Where(s => s.Message is ViewChangeFetch).ToList();
        Assert.Null(Assert.Single(again).To); // everyone now: replica 0 holds its own

        var answer = h.Deliver(0, again[0].Message);
        h.Deliver(2, Assert.Single(answer.OfType<Send>(), s => s.Message is ViewChangeRelay).Message);
        Assert.Equal(1, h.Cores[2].View);
        Assert.False(h.Cores[2].ViewChanging);
    }

    [Fact]
    public void Fetches_for_a_copy_that_does_not_come_back_off()
    {
        var h = Harness();
        BackupMissingAViewChange(h); // the first fetch, to the primary
        int FetchesAfter(int milliseconds)
        {
            h.Now += TimeSpan.FromMilliseconds(milliseconds);
            return h.Tick(2).OfType<Send>().Count(s => s.Message is ViewChangeFetch);
        }
        Assert.Equal(1, FetchesAfter(250)); // one interval (200 ms): to everyone
        Assert.Equal(0, FetchesAfter(250)); // then two intervals
        Assert.Equal(1, FetchesAfter(200));
        Assert.Equal(0, FetchesAfter(700)); // then four
        Assert.Equal(1, FetchesAfter(150));
        Assert.Equal(0, FetchesAfter(1_500)); // then eight, and no slower
        Assert.Equal(1, FetchesAfter(150));
        Assert.Equal(1, FetchesAfter(1_650));
        Assert.Equal(6, h.Cores[2].ViewChangeFetchesSent);
    }

    [Fact]
    public void Attack_new_view_referring_to_a_view_change_with_a_forged_ui_is_rejected()
    {
        var h = Harness();
        Suspect(h, 2);
        var vc2 = Assert.Single(h.Sent<ViewChange>(2));
        // Replica 1, the new primary, is Byzantine: it certifies a NEW-VIEW that refers to a
        // VIEW-CHANGE of replica 0 that does not exist (a made-up digest under a borrowed UI).
        var made = new CertifiedStub(0, new byte[32], vc2.Ui);
        var vc1 = h.Certify(1, new ViewChange(1, 1, CheckpointCertificate.Genesis, [], UniqueIdentifier.None, []));
        var newView = h.Certify(1, new NewView(1, 1, [MessageEncoding.ForLog(vc1), made], UniqueIdentifier.None));
        h.Deliver(2, vc1);
        var before = h.Cores[2].StateFingerprint();
        var effects = h.Deliver(2, newView);
        Assert.Contains(effects.OfType<Rejected>(), r => r.From == 1 && r.Reason == RejectReason.InvalidUi);
        Assert.DoesNotContain(effects.OfType<Send>(), s => s.Message is ViewChangeFetch);
        Assert.Equal(before, h.Cores[2].StateFingerprint());
        Assert.True(h.Cores[2].ViewChanging);
    }

    [Fact]
    public void Attack_unasked_relayed_view_change_is_rejected_and_not_held()
    {
        var h = Harness();
        Suspect(h, 0);
        var vc0 = Assert.Single(h.Sent<ViewChange>(0));
        var effects = h.Deliver(2, new ViewChangeRelay(1, vc0));
        Assert.Equal(RejectReason.Duplicate, Assert.Single(effects.OfType<Rejected>()).Reason);
        Assert.Equal(0, h.Cores[2].HeldRelayedViewChanges);
        Assert.Equal(0, h.Cores[2].HeldViewChanges);
    }

    [Fact]
    public void Attack_relayed_copy_that_is_not_the_referenced_view_change_is_rejected_and_the_backup_keeps_waiting()
    {
        var h = Harness();
        BackupMissingAViewChange(h);
        // Replica 0 (Byzantine) answers with another VIEW-CHANGE of its own, validly certified.
        var other = h.Certify(0, new ViewChange(0, 2, CheckpointCertificate.Genesis, [], UniqueIdentifier.None, []));
        var effects = h.Deliver(2, new ViewChangeRelay(0, other));
        Assert.Single(effects.OfType<Rejected>());
        Assert.Equal(0, h.Cores[2].HeldRelayedViewChanges);
        Assert.Equal(0, h.Cores[2].View);
        Assert.Equal(1, h.Cores[2].BufferedFrom(1)); // the NEW-VIEW waits in its primary's stream
    }

    [Fact]
    public void Attack_new_view_referring_to_an_invalid_view_change_is_rejected_once_its_copy_arrives()
    {
        // f = 2: replicas 0 and 1 are Byzantine. Replica 0 certifies a VIEW-CHANGE whose log leaves
        // out a message it sent and gives it to no one but the new primary (1), which refers to it.
        var h = Harness(f: 2);
        h.Certify(0, new Checkpoint(0, 0, 0, new byte[32], UniqueIdentifier.None));
        var vc0 = h.Certify(0, new ViewChange(0, 1, CheckpointCertificate.Genesis, [], UniqueIdentifier.None, []));
        var vc1 = h.Certify(1, new ViewChange(1, 1, CheckpointCertificate.Genesis, [], UniqueIdentifier.None, []));
        Suspect(h, 2);
        var vc2 = Assert.Single(h.Sent<ViewChange>(2));
        var newView = h.Certify(1, new NewView(1, 1, [vc0, vc1, vc2], UniqueIdentifier.None)).ByReference();

        h.Deliver(3, vc1);
        h.Deliver(3, vc2);
        var waiting = h.Deliver(3, newView);
        Assert.Contains(waiting.OfType<Send>(), s => s.Message is ViewChangeFetch);
        var before = h.Cores[3].StateFingerprint();
        var effects = h.Deliver(3, new ViewChangeRelay(1, vc0));
        Assert.Contains(effects.OfType<Rejected>(), r => r.From == 0 && r.Reason == RejectReason.Inconsistent);
        Assert.Contains(effects.OfType<Rejected>(), r => r.From == 1 && r.Reason == RejectReason.Inconsistent);
        Assert.Equal(0, h.Cores[3].View);
        Assert.Equal(before, h.Cores[3].StateFingerprint());
        Assert.Equal(0, h.Cores[3].HeldRelayedViewChanges);
    }

    [Fact]
    public void Attack_forged_view_change_fetch_is_rejected_and_answered_with_nothing()
    {
        var h = Harness();
        Suspect(h, 0, 1);
        var vc0 = Assert.Single(h.Sent<ViewChange>(0));
        var forged = new ViewChangeFetch(2, [(CertifiedStub)MessageEncoding.ForLog(vc0)], new byte[64]);
        var effects = h.Deliver(0, forged);
        Assert.Equal(RejectReason.InvalidSignature, Assert.Single(effects.OfType<Rejected>()).Reason);
        Assert.DoesNotContain(effects.OfType<Send>(), s => s.Message is ViewChangeRelay);
    }
}
