using MinBft.Application;
using MinBft.Encoding;
using MinBft.Messages;
using MinBft.Protocol;
using MinBft.Usig;

namespace MinBft.Tests.Protocol;

/// <summary>
/// A rotated USIG (Protocol/Core/USIG-ROTATION-DESIGN.md): its old identity certifies history only,
/// one identity leads each view, the rotated replica's memory counts only from its first checkpoint
/// on, and a restart checks its stored log against the manifest. Each test names the rule.
/// </summary>
public sealed class UsigRotationTests
{
    private static byte[] Put(string key, string value) => KeyValueOperation.EncodePut(key, System.Text.Encoding.UTF8.GetBytes(value));

    private static CoreHarness Harness() =>
        new(tune: s => s with
        {
            CheckpointInterval = 2,
            Tuning = s.Tuning with { RequestTimeout = TimeSpan.FromSeconds(1), ViewChangeTimeout = TimeSpan.FromSeconds(1) },
        });

    private static void Order(CoreHarness h, MinBft.Crypto.ClientSigner client, ulong seq)
    {
        var request = client.CreateRequest(seq, Put("k", seq.ToString()));
        for (var i = 0; i < h.N; i++) h.Request(i, request);
        h.Flush();
    }

    private static void RenewAll(CoreHarness h)
    {
        for (var i = 0; i < h.N; i++) h.Renew(i);
    }

    [Fact]
    public void Rule_2_a_message_of_a_retired_epoch_is_refused_in_its_senders_stream_and_the_current_epoch_is_accepted()
    {
        var h = Harness();
        var old = h.Usig(1);
        h.RotateUsig(1, firstView: 3);
        RenewAll(h);
        var checkpoint = new Checkpoint(1, 0, 0, new byte[32], UniqueIdentifier.None);
        var stale = (Checkpoint)checkpoint.WithUi(old.CreateUi(MessageEncoding.CertifiedDigest(checkpoint)));

        var before = h.Cores[2].StateFingerprint();
        var effects = h.Deliver(2, stale);
        Assert.Equal(RejectReason.StaleEpoch, Assert.Single(effects.OfType<Rejected>()).Reason);
        Assert.Equal(0UL, h.Cores[2].LastAccepted(1));
        Assert.Equal(before, h.Cores[2].StateFingerprint());

        // The new identity's stream starts at counter 1 and is accepted.
        var current = h.Certify(1, checkpoint);
        Assert.Equal(1UL, current.Ui.Counter);
        Assert.Empty(h.Deliver(2, current).OfType<Rejected>());
        Assert.Equal(1UL, h.Cores[2].LastAccepted(1));
    }

    [Fact]
    public void Rule_2_a_stored_checkpoint_certificate_with_checkpoints_of_a_retired_epoch_still_restores()
    {
        var h = Harness();
        var client = h.NewClient();
        for (ulong seq = 1; seq <= 2; seq++) Order(h, client, seq);
        var stored = h.Outbox[0].OfType<StoreCheckpoint>().Last();
        Assert.Equal(2UL, stored.Certificate.Sequence);
        Assert.Contains(stored.Certificate.Checkpoints, cp => cp.ReplicaId != 0 && cp.Ui.Epoch == ClusterKeysEpoch);
        var usigCounter = h.Usig(0).Counter;

        // Every other USIG is rotated; replica 0 restarts under the new manifest from what it stored.
        h.RotateUsig(1, firstView: 3, firstCheckpoint: 6);
        h.RotateUsig(2, firstView: 3, firstCheckpoint: 6);
        var core = h.Renew(0);
        h.Step(0, c => c.Restore(new RecoveredState(0, stored.Certificate, stored.Snapshot, stored.ViewStarts, usigCounter + 1, [], usigCounter), h.Now));
        Assert.Equal(2UL, core.ExecutedSequence);
        Assert.Equal(2UL, core.StableCheckpoint.Sequence);
    }

    private const ulong ClusterKeysEpoch = MinBft.Tests.Simulation.ClusterKeys.Epoch;

    [Fact]
    public void Rule_3_a_rotated_primary_proposes_nothing_below_its_first_view_and_suspects_itself()
    {
        var h = Harness();
        h.RotateUsig(0, firstView: 3);
        RenewAll(h);
        var request = h.NewClient().CreateRequest(1, Put("a", "1"));
        h.Request(0, request);
        Assert.True(h.Cores[0].IsPrimary);
        Assert.Empty(h.Sent<Prepare>(0));
        h.Now += TimeSpan.FromMilliseconds(100);
        h.Tick(0);
        Assert.Empty(h.Sent<Prepare>(0));
        Assert.Contains(h.Sent<ReqViewChange>(0), r => r.NewView == 1);
        // The backups suspect it as soon as they tick, without a request timing out: the view's
        // leader identity is retired.
        h.Tick(1);
        h.Tick(2);
        h.Flush();
        Assert.All(h.Cores, c => Assert.True(c.View >= 1));
    }

    [Fact]
    public void Rule_3_a_prepare_of_the_new_identity_below_its_first_view_is_refused()
    {
        var h = Harness();
        h.RotateUsig(0, firstView: 3);
        RenewAll(h);
        var request = h.NewClient().CreateRequest(1, Put("a", "1"));
        h.Request(1, request);
        var prepare = h.Certify(0, new Prepare(0, 0, 1, [request], UniqueIdentifier.None));
        var before = h.Cores[1].StateFingerprint();
        var effects = h.Deliver(1, prepare);
        Assert.Equal(RejectReason.EpochNotForView, Assert.Single(effects.OfType<Rejected>()).Reason);
        Assert.Equal(before, h.Cores[1].StateFingerprint());
        Assert.Empty(h.Sent<Commit>(1));
    }

    [Fact]
    public void Rule_3_a_view_change_log_may_hold_a_prepare_of_the_retired_identity_below_the_first_view_and_not_at_it()
    {
        var h = Harness();
        var old = h.Usig(0);
        var request = h.NewClient().CreateRequest(1, Put("a", "1"));
        Prepare OldPrepare(long view) => (Prepare)new Prepare(view, 0, 1, [request], UniqueIdentifier.None)
            .WithUi(old.CreateUi(MessageEncoding.CertifiedDigest(new Prepare(view, 0, 1, [request], UniqueIdentifier.None))));
        var inView0 = OldPrepare(0);
        h.RotateUsig(0, firstView: 3);
        RenewAll(h);

        // Replica 2's VIEW-CHANGE to view 1 logs its COMMIT to the old identity's PREPARE of view 0: history.
        var commit = h.Certify(2, new Commit(0, 2, inView0, UniqueIdentifier.None));
        var valid = h.Certify(2, new ViewChange(2, 1, CheckpointCertificate.Genesis, [commit], UniqueIdentifier.None, []));
        Assert.DoesNotContain(h.Deliver(1, commit).OfType<Rejected>(), r => r.Reason is RejectReason.EpochNotForView or RejectReason.InvalidUi);
        Assert.DoesNotContain(h.Deliver(1, valid).OfType<Rejected>(), r => r.Detail.Contains("VIEW-CHANGE", StringComparison.Ordinal));

        // The old identity's PREPARE of view 3 (its first view under the new one) is not.
        var h2 = Harness();
        var old2 = h2.Usig(0);
        var late = (Prepare)new Prepare(3, 0, 1, [request], UniqueIdentifier.None)
            .WithUi(old2.CreateUi(MessageEncoding.CertifiedDigest(new Prepare(3, 0, 1, [request], UniqueIdentifier.None))));
        h2.RotateUsig(0, firstView: 3);
        RenewAll(h2);
        var lateCommit = h2.Certify(2, new Commit(3, 2, late, UniqueIdentifier.None));
        var invalid = h2.Certify(2, new ViewChange(2, 4, CheckpointCertificate.Genesis, [lateCommit], UniqueIdentifier.None, []));
        // Checked where it counts: in the NEW-VIEW of view 4 (primary 1) that carries it.
        var own = h2.Certify(1, new ViewChange(1, 4, CheckpointCertificate.Genesis, [], UniqueIdentifier.None, []));
        var newView = h2.Certify(1, new NewView(1, 4, [own, invalid], UniqueIdentifier.None));
        h2.Deliver(0, own);
        var rejected = h2.Deliver(0, newView).OfType<Rejected>().ToList();
        Assert.Contains(rejected, r => r.Reason == RejectReason.EpochNotForView);
        Assert.Equal(0, h2.Cores[0].View);
    }

    [Fact]
    public void Rule_6_a_view_change_of_a_rotated_replica_below_its_first_checkpoint_does_not_count_towards_a_new_view()
    {
        // Replica 2 was rotated: its VIEW-CHANGE (nothing stable yet) does not vouch for what its old
        // identity committed, so the new primary (1) needs replica 0's as well.
        var h = Harness();
        h.RotateUsig(2, firstView: 3, firstCheckpoint: 4);
        RenewAll(h);
        var suspicion = (int replica) =>
        {
            var unsigned = new ReqViewChange(replica, 0, 1, []);
            return unsigned with { Signature = h.Signer(replica).Sign(MessageEncoding.ReqViewChange(unsigned)) };
        };
        // Replicas 1 and 2 move to view 1 (replica 0's suspicion is the second vote each needs).
        h.Deliver(1, suspicion(2));
        h.Deliver(1, suspicion(0));
        h.Deliver(2, suspicion(1));
        h.Deliver(2, suspicion(0));
        h.Flush(1, 2);
        Assert.True(h.Cores[1].ViewChanging);
        Assert.Single(h.Sent<ViewChange>(2));
        Assert.Empty(h.Sent<NewView>(1));

        // Replica 0 joins: with its VIEW-CHANGE the new primary has f+1 that count.
        h.Deliver(0, suspicion(1));
        h.Deliver(0, suspicion(2));
        h.Flush();
        var newView = Assert.Single(h.Sent<NewView>(1));
        Assert.Contains(newView.ViewChanges, vc => vc.Sender == 0);
        Assert.All(h.Cores, c => Assert.False(c.ViewChanging));
    }

    [Fact]
    public void Rule_6_a_new_view_whose_quorum_leans_on_a_rotated_replicas_view_change_is_refused()
    {
        var h = Harness();
        h.RotateUsig(2, firstView: 3, firstCheckpoint: 4);
        RenewAll(h);
        var vc1 = h.Certify(1, new ViewChange(1, 1, CheckpointCertificate.Genesis, [], UniqueIdentifier.None, []));
        var vc2 = h.Certify(2, new ViewChange(2, 1, CheckpointCertificate.Genesis, [], UniqueIdentifier.None, []));
        var newView = h.Certify(1, new NewView(1, 1, [vc1, vc2], UniqueIdentifier.None));
        h.Deliver(0, vc1);
        var effects = h.Deliver(0, newView);
        Assert.Contains(effects.OfType<Rejected>(), r => r.Reason == RejectReason.Inconsistent && r.Detail.Contains("count", StringComparison.Ordinal));
        Assert.Equal(0, h.Cores[0].View);
    }

    [Fact]
    public void Rule_4_a_replica_refuses_to_restore_a_log_of_a_retired_epoch_of_its_own()
    {
        var h = Harness();
        var client = h.NewClient();
        Order(h, client, 1);
        var log = HarnessLog(h, 1);
        h.RotateUsig(1, firstView: 3);
        var core = h.Renew(1);
        var error = Assert.Throws<InvalidDataException>(() => core.Restore(new RecoveredState(0, null, null, [], 1, log, (ulong)log.Count), h.Now));
        Assert.Contains("restarts empty", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Rule_4_a_replica_refuses_to_restore_a_prepare_its_primary_led_under_an_identity_the_manifest_no_longer_allows_there()
    {
        // Replica 1 committed to a PREPARE replica 0 made in view 3 under its first identity; the
        // operator then rotated USIG 0 with first view 3, too low: view 3 had PREPAREs of the old one.
        RecoveredState Stored(CoreHarness h, long view)
        {
            var request = h.NewClient().CreateRequest(1, Put("a", "1"));
            var prepare = h.Certify(0, new Prepare(view, 0, 1, [request], UniqueIdentifier.None));
            var commit = h.Certify(1, new Commit(view, 1, prepare, UniqueIdentifier.None));
            return new RecoveredState(view, null, null, [], 1, [commit], 1);
        }

        var tooLow = Harness();
        var state = Stored(tooLow, 3);
        tooLow.RotateUsig(0, firstView: 3);
        var error = Assert.Throws<InvalidDataException>(() => tooLow.Renew(1).Restore(state, tooLow.Now));
        Assert.Contains("led view 3", error.Message, StringComparison.Ordinal);

        // With a first view above every view the cluster used, the same log restores.
        var high = Harness();
        var kept = Stored(high, 3);
        high.RotateUsig(0, firstView: 6);
        high.Renew(1).Restore(kept, high.Now);
    }

    /// <summary>What replica <paramref name="i"/> wrote to its log, with the UIs it got (its durable log).</summary>
    private static List<CertifiedMessage> HarnessLog(CoreHarness h, int i) =>
        h.Sent<CertifiedMessage>(i).Where(m => !m.Ui.IsNone).OrderBy(m => m.Ui.Counter).ToList();
}
