using MinBft.Application;
using MinBft.Messages;
using MinBft.Protocol;

namespace MinBft.Tests.Protocol;

/// <summary>The normal case, PROTOCOL.md section 4: each test names the rule it checks.</summary>
public sealed class NormalCaseTests
{
    private static byte[] Put(string key, string value) => KeyValueOperation.EncodePut(key, System.Text.Encoding.UTF8.GetBytes(value));

    [Fact]
    public void Rule_4_2_primary_batches_a_request_into_a_certified_prepare()
    {
        var h = new CoreHarness();
        var request = h.NewClient().CreateRequest(1, Put("a", "1"));
        var effects = h.Request(0, request);

        var prepare = Assert.IsType<Prepare>(Assert.Single(CoreHarness.Intents(effects)));
        Assert.Equal([request], prepare.Batch);
        var sent = Assert.Single(h.Sent<Prepare>(0));
        Assert.Equal(1UL, sent.PrepareUi.Counter);
        Assert.Equal(0, sent.PrimaryId);
    }

    [Fact]
    public void Rule_4_5_batch_commits_with_f_plus_1_commitments_and_every_replica_executes_it()
    {
        var h = new CoreHarness(f: 2);
        var client = h.NewClient();
        var request = client.CreateRequest(1, Put("a", "1"));
        for (var i = 0; i < h.N; i++) h.Request(i, request);
        h.Flush();
        Assert.All(h.Cores, c => Assert.Equal(1UL, c.ExecutedSequence));
        var digests = h.Cores.Select(c => c.StateFingerprint()).ToHashSet();
        Assert.Single(digests);
        // Every replica replied, with equal results (what the client needs f+1 of).
        var replies = Enumerable.Range(0, h.N).Select(i => Assert.Single(h.Outbox[i].OfType<SendReply>()).Reply).ToList();
        Assert.Single(replies.Select(r => Convert.ToHexString(r.Result)).Distinct());
    }

    [Fact]
    public void Each_replica_hashes_a_prepare_once_per_copy_it_meets()
    {
        // A batch is encoded and hashed where it is made, where it arrives, and once per COMMIT
        // that carries a copy to match against it; the digest is reused after that (issue 9).
        var h = new CoreHarness();
        var request = h.NewClient().CreateRequest(1, Put("a", "1"));
        Assert.Equal(1, PreparesHashed(() => h.Request(0, request)));
        var prepare = Assert.Single(h.Sent<Prepare>(0));
        Assert.Equal(1, PreparesHashed(() => h.Deliver(1, prepare)));
        Assert.Equal(1, PreparesHashed(() => h.Deliver(2, prepare)));
        Assert.Equal(1, PreparesHashed(() => h.Deliver(0, Assert.Single(h.Sent<Commit>(1)))));
        Assert.Equal(1, PreparesHashed(() => h.Deliver(1, Assert.Single(h.Sent<Commit>(2)))));
        Assert.All(h.Cores, c => Assert.Equal(1UL, c.ExecutedSequence));
    }

    [Fact]
    public void A_prepare_that_waits_in_the_reorder_buffer_is_not_hashed_again()
    {
        var h = new CoreHarness();
        h.Request(0, h.NewClient().CreateRequest(1, Put("a", "1")));
        h.Request(0, h.NewClient().CreateRequest(1, Put("b", "2")));
        h.Now += TimeSpan.FromMilliseconds(10); // past MaxBatchWait: the second batch is cut
        h.Tick(0);
        var prepares = h.Sent<Prepare>(0);
        Assert.Equal([1UL, 2UL], prepares.Select(p => p.PrepareUi.Counter));
        // The second arrives first: verified (hashed) and buffered; the first then releases it.
        Assert.Equal(1, PreparesHashed(() => h.Deliver(1, prepares[1])));
        Assert.Equal(0UL, h.Cores[1].ExecutedSequence);
        Assert.Equal(1, PreparesHashed(() => h.Deliver(1, prepares[0])));
        Assert.Equal(2UL, h.Cores[1].ExecutedSequence);
    }

    private static long PreparesHashed(Action step)
    {
        var before = MinBft.Encoding.MessageEncoding.PreparesHashed;
        step();
        return MinBft.Encoding.MessageEncoding.PreparesHashed - before;
    }

    [Fact]
    public void Rule_4_5_a_backup_does_not_execute_with_only_f_commitments()
    {
        // f = 2: the primary's PREPARE plus one backup's own COMMIT are 2 < f+1 = 3.
        var h = new CoreHarness(f: 2);
        var request = h.NewClient().CreateRequest(1, Put("a", "1"));
        h.Request(0, request);
        var prepare = Assert.Single(h.Sent<Prepare>(0));
        h.Deliver(1, prepare);
        Assert.Equal(0UL, h.Cores[1].ExecutedSequence);
        Assert.Single(h.Sent<Commit>(1));
        // A third commitment (backup 2's COMMIT) completes the quorum.
        h.Deliver(2, prepare);
        h.Deliver(1, Assert.Single(h.Sent<Commit>(2)));
        Assert.Equal(1UL, h.Cores[1].ExecutedSequence);
    }

    [Fact]
    public void Rule_4_3_prepare_from_a_replica_that_is_not_the_primary_is_rejected()
    {
        var h = new CoreHarness();
        var request = h.NewClient().CreateRequest(1, Put("a", "1"));
        var forged = h.Certify(1, new Prepare(0, 1, 1, [request], UniqueIdentifier.None));
        var before = h.Cores[2].StateFingerprint();
        var effects = h.Deliver(2, forged);
        Assert.Equal(RejectReason.NotPrimary, Assert.Single(effects.OfType<Rejected>()).Reason);
        Assert.Equal(before, h.Cores[2].StateFingerprint());
        Assert.Equal(0UL, h.Cores[2].LastAccepted(1));
    }

    [Fact]
    public void Rule_4_3_commit_claiming_to_come_from_the_primary_is_rejected()
    {
        var h = new CoreHarness();
        h.Request(0, h.NewClient().CreateRequest(1, Put("a", "1")));
        var prepare = Assert.Single(h.Sent<Prepare>(0));
        var commitFromPrimary = h.Certify(0, new Commit(0, 0, prepare, UniqueIdentifier.None));
        h.Deliver(1, prepare);
        var effects = h.Deliver(1, commitFromPrimary);
        Assert.Equal(RejectReason.CommitFromPrimary, Assert.Single(effects.OfType<Rejected>()).Reason);
    }

    [Fact]
    public void Rule_4_3_prepare_carrying_a_request_no_client_signed_is_rejected()
    {
        var h = new CoreHarness();
        var request = h.NewClient().CreateRequest(1, Put("a", "1"));
        var tampered = request with { Operation = Put("a", "2") };
        var prepare = h.Certify(0, new Prepare(0, 0, 1, [tampered], UniqueIdentifier.None));
        var before = h.Cores[1].StateFingerprint();
        var effects = h.Deliver(1, prepare);
        Assert.Equal(RejectReason.InvalidBatch, Assert.Single(effects.OfType<Rejected>()).Reason);
        Assert.Equal(before, h.Cores[1].StateFingerprint());
        Assert.Empty(CoreHarness.Intents(effects)); // no COMMIT for it
    }

    [Fact]
    public void Rule_4_3_prepare_repeating_an_ordered_request_is_accepted_and_the_request_runs_once()
    {
        // A backup does not judge a PREPARE by what it saw ordered: the client table may evict what a
        // lagging backup still holds (CLIENT-SESSIONS-DESIGN.md). Execution keeps exactly-once.
        var h = new CoreHarness();
        var request = h.NewClient().CreateRequest(1, Put("a", "1"));
        var first = h.Certify(0, new Prepare(0, 0, 1, [request], UniqueIdentifier.None));
        // A different batch (so a different digest and the next counter) re-proposing `request`.
        var other = h.NewClient().CreateRequest(1, Put("b", "1"));
        var replay = h.Certify(0, new Prepare(0, 0, 2, [other, request], UniqueIdentifier.None));
        var effects = h.Deliver(1, first).Concat(h.Deliver(1, replay)).ToList();
        Assert.Empty(effects.OfType<Rejected>());
        var executed = effects.OfType<Executed>().ToList();
        Assert.Equal([1UL, 2UL], executed.Select(e => e.Sequence));
        Assert.Equal([request, other, request], executed.SelectMany(e => e.Requests));
        Assert.Equal([request, other], executed.SelectMany(e => e.Applied));
        // One reply per request that ran; the repeated one is answered by the reply cache on retransmission.
        Assert.Equal([request.ClientId, other.ClientId], effects.OfType<SendReply>().Select(r => r.Reply.ClientId));
    }

    [Fact]
    public void Rule_4_4_commit_carrying_an_unseen_prepare_accepts_the_prepare_first()
    {
        var h = new CoreHarness();
        h.Request(0, h.NewClient().CreateRequest(1, Put("a", "1")));
        var prepare = Assert.Single(h.Sent<Prepare>(0));
        h.Deliver(1, prepare);
        var commit = Assert.Single(h.Sent<Commit>(1));
        // Replica 2 never saw the PREPARE: the COMMIT brings it, and 2 commits and executes.
        h.Deliver(2, commit);
        Assert.Equal(1UL, h.Cores[2].LastAccepted(0));
        Assert.Equal(1UL, h.Cores[2].ExecutedSequence);
        Assert.Single(h.Sent<Commit>(2));
    }

    [Fact]
    public void Rule_4_4_commit_carrying_a_forged_prepare_is_rejected()
    {
        var h = new CoreHarness();
        var request = h.NewClient().CreateRequest(1, Put("a", "1"));
        var forgedPrepare = new Prepare(0, 0, 1, [request], new UniqueIdentifier(1, 1, new byte[64]));
        var commit = h.Certify(1, new Commit(0, 1, forgedPrepare, UniqueIdentifier.None));
        var before = h.Cores[2].StateFingerprint();
        var effects = h.Deliver(2, commit);
        Assert.Equal(RejectReason.InvalidUi, Assert.Single(effects.OfType<Rejected>()).Reason);
        Assert.Equal(before, h.Cores[2].StateFingerprint());
    }

    [Fact]
    public void In_order_rule_a_message_ahead_of_a_gap_waits_and_runs_once_the_gap_fills()
    {
        var h = new CoreHarness();
        var a = h.NewClient();
        var b = h.NewClient();
        h.Request(0, a.CreateRequest(1, Put("a", "1")));
        h.Request(0, b.CreateRequest(1, Put("b", "1")));
        h.Now += TimeSpan.FromMilliseconds(10);
        h.Tick(0); // batch wait elapsed: the second batch is proposed
        var prepares = h.Sent<Prepare>(0);
        Assert.Equal(2, prepares.Count);

        var early = h.Deliver(1, prepares[1]);
        Assert.Equal(0UL, h.Cores[1].LastAccepted(0));
        Assert.Equal(1, h.Cores[1].BufferedMessages);
        // The gap makes replica 1 ask the primary for the missing counter.
        var ask = Assert.IsType<RetransmitRequest>(Assert.Single(early.OfType<Send>()).Message);
        Assert.Equal(1UL, ask.FromCounter);

        h.Deliver(1, prepares[0]);
        Assert.Equal(2UL, h.Cores[1].LastAccepted(0));
        Assert.Equal(0, h.Cores[1].BufferedMessages);
        Assert.Equal(2, h.Sent<Commit>(1).Count);
    }

    [Fact]
    public void In_order_rule_a_counter_already_accepted_is_a_duplicate_and_changes_nothing()
    {
        var h = new CoreHarness();
        h.Request(0, h.NewClient().CreateRequest(1, Put("a", "1")));
        var prepare = Assert.Single(h.Sent<Prepare>(0));
        h.Deliver(1, prepare);
        var before = h.Cores[1].StateFingerprint();
        var effects = h.Deliver(1, prepare);
        Assert.Equal(RejectReason.Duplicate, Assert.Single(effects.OfType<Rejected>()).Reason);
        Assert.Equal(before, h.Cores[1].StateFingerprint());
    }

    [Fact]
    public void In_order_rule_the_reorder_buffer_per_sender_is_bounded()
    {
        var h = new CoreHarness(tune: s => s with { Tuning = s.Tuning with { ReorderBufferPerSender = 4, ReorderWindow = 64 } });
        var client = h.NewClient();
        // Replica 1 (playing Byzantine with its real USIG) withholds counter 1 and sends 2..10.
        h.Usig(1).CreateUi(new byte[32]);
        for (ulong seq = 1; seq <= 9; seq++)
        {
            var prepare = h.Certify(0, new Prepare(0, 0, seq, [client.CreateRequest(seq, Put("k", "v"))], UniqueIdentifier.None));
            h.Deliver(2, h.Certify(1, new Commit(0, 1, prepare, UniqueIdentifier.None)));
        }
        Assert.True(h.Cores[2].BufferedMessages <= 4 + 4, "at most the per-sender bound for each of the two streams");
        Assert.True(h.Cores[2].RejectionCount(RejectReason.ReorderBufferFull) > 0);
    }

    [Fact]
    public void Consecutive_commit_check_a_backup_cannot_skip_a_prepare()
    {
        var h = new CoreHarness();
        var client = h.NewClient();
        var p1 = h.Certify(0, new Prepare(0, 0, 1, [client.CreateRequest(1, Put("a", "1"))], UniqueIdentifier.None));
        var p2 = h.Certify(0, new Prepare(0, 0, 2, [client.CreateRequest(2, Put("a", "2"))], UniqueIdentifier.None));
        h.Deliver(2, p1);
        h.Deliver(2, p2);
        // Byzantine backup 1 commits to p2 without having committed to p1.
        var skipping = h.Certify(1, new Commit(0, 1, p2, UniqueIdentifier.None));
        var before = h.Cores[2].StateFingerprint();
        var effects = h.Deliver(2, skipping);
        Assert.Equal(RejectReason.NonConsecutiveCommit, Assert.Single(effects.OfType<Rejected>()).Reason);
        Assert.Equal(before, h.Cores[2].StateFingerprint());
    }

    [Fact]
    public void Forged_ui_is_rejected_and_counted()
    {
        var h = new CoreHarness();
        var request = h.NewClient().CreateRequest(1, Put("a", "1"));
        var forged = new Prepare(0, 0, 1, [request], new UniqueIdentifier(1, 1, new byte[64]));
        var wrongEpoch = h.Certify(0, new Prepare(0, 0, 1, [request], UniqueIdentifier.None));
        wrongEpoch = wrongEpoch with { PrepareUi = wrongEpoch.PrepareUi with { Epoch = 2 } };
        h.Deliver(1, forged);
        h.Deliver(1, wrongEpoch);
        Assert.Equal(1, h.Cores[1].RejectionCount(RejectReason.InvalidUi));
        // An epoch that is not the sender's current one never enters its stream.
        Assert.Equal(1, h.Cores[1].RejectionCount(RejectReason.StaleEpoch));
        Assert.Equal(0UL, h.Cores[1].LastAccepted(0));
    }

    [Fact]
    public void Bad_input_malformed_or_impersonated_messages_are_rejected_never_thrown()
    {
        var h = new CoreHarness();
        var request = h.NewClient().CreateRequest(1, Put("a", "1"));
        var oversized = new Prepare(0, 0, 1, Enumerable.Repeat(request, 2000).ToArray(), new UniqueIdentifier(1, 1, new byte[64]));
        var nullBatch = new Prepare(0, 0, 1, null!, new UniqueIdentifier(1, 1, new byte[64]));
        var fromSelf = h.Certify(0, new Prepare(0, 0, 1, [request], UniqueIdentifier.None));
        var unknownSender = new Commit(0, 42, fromSelf, new UniqueIdentifier(1, 1, new byte[64]));
        var before = h.Cores[0].StateFingerprint();
        h.Deliver(0, oversized);
        h.Deliver(0, nullBatch);
        h.Deliver(0, fromSelf);
        h.Deliver(0, unknownSender);
        h.Deliver(0, null!);
        h.Request(0, request with { Signature = new byte[3] });
        h.Request(0, null!);
        Assert.Equal(before, h.Cores[0].StateFingerprint());
        Assert.Equal(5, h.Cores[0].RejectionCount(RejectReason.Malformed));
        Assert.Equal(2, h.Cores[0].RejectionCount(RejectReason.UnknownSender));
    }

    [Fact]
    public void Exactly_once_same_seq_resends_the_cached_reply_and_older_seq_is_rejected()
    {
        var h = new CoreHarness();
        var client = h.NewClient();
        var r1 = client.CreateRequest(5, Put("a", "1"));
        for (var i = 0; i < h.N; i++) h.Request(i, r1);
        h.Flush();
        Assert.All(h.Cores, c => Assert.Equal(5UL, c.LastExecutedSeq(client.ClientId)));

        var cached = Assert.Single(h.Outbox[1].OfType<SendReply>()).Reply;
        var again = h.Request(1, r1);
        Assert.Same(cached, Assert.Single(again.OfType<SendReply>()).Reply);

        var older = h.Request(1, client.CreateRequest(4, Put("a", "0")));
        Assert.Equal(RejectReason.StaleRequest, Assert.Single(older.OfType<Rejected>()).Reason);
        Assert.Equal(1UL, h.Cores[1].ExecutedSequence);

        // The executed seq reused for another operation: refused, never answered with the
        // executed operation's reply (a client whose clock stepped back would take it for its own).
        var reused = h.Request(1, client.CreateRequest(5, Put("a", "2")));
        Assert.Equal(RejectReason.ReusedSeq, Assert.Single(reused.OfType<Rejected>()).Reason);
        Assert.Empty(reused.OfType<SendReply>());
        Assert.Equal(MinBft.Encoding.MessageEncoding.RequestDigest(r1), cached.RequestDigest);
    }

    [Fact]
    public void Rule_4_6_a_batch_s_replies_share_one_signature_over_their_root_and_each_proves_its_own_result()
    {
        var h = new CoreHarness(tune: s => s with { Tuning = s.Tuning with { MaxBatchSize = 5, MaxBatchWait = TimeSpan.FromSeconds(1) } }) { AutoIssueUi = false };
        var clients = Enumerable.Range(0, 6).Select(_ => h.NewClient()).ToList();
        var requests = clients.Select((c, i) => c.CreateRequest(1, Put("k" + i, "v" + i))).ToList();
        var first = h.Request(0, requests[0]);
        // Five more while the first PREPARE waits for its log write: one batch of five.
        foreach (var r in requests.Skip(1)) h.Request(0, r);
        h.AutoIssueUi = true;
        h.Complete(0, first.OfType<WriteLog>().Single());
        h.Flush();
        Assert.All(h.Cores, c => Assert.Equal(2UL, c.ExecutedSequence));

        var authenticator = h.Replies();
        var replies = h.Outbox[1].OfType<SendReply>().Select(s => s.Reply).ToList();
        Assert.Equal(6, replies.Count);
        var batch = replies.Where(r => r.Proof.Count == 5).ToList();
        Assert.Equal(5, batch.Count);
        Assert.Single(batch.Select(r => Convert.ToHexString(r.Proof.RootSignature)).Distinct());
        Assert.Equal([0, 1, 2, 3, 4], batch.Select(r => r.Proof.Index).Order());
        foreach (var reply in replies)
        {
            Assert.Null(authenticator.Explain(reply));
            var request = requests.Single(r => r.ClientId == reply.ClientId);
            Assert.Equal(MinBft.Encoding.MessageEncoding.RequestDigest(request), reply.RequestDigest);
        }
        // A reply's proof does not carry another reply of its batch: each proves only its own result.
        var (a, b) = (batch[0], batch[1]);
        Assert.NotNull(authenticator.Explain(a with { Result = [.. a.Result, 1] }));
        Assert.NotNull(authenticator.Explain(a with { ClientId = b.ClientId }));
        Assert.NotNull(authenticator.Explain(a with { Proof = b.Proof }));
        Assert.NotNull(authenticator.Explain(a with { RequestDigest = b.RequestDigest }));
        Assert.NotNull(authenticator.Explain(a with { ReplicaId = 2 }));
    }

    [Fact]
    public void A_backup_executes_once_its_commit_is_durable_and_a_restart_before_its_usig_certified_it_sends_that_commit()
    {
        var h = new CoreHarness(tune: s => s with { Tuning = s.Tuning with { MaxBatchSize = 1 } });
        h.Request(0, h.NewClient().CreateRequest(1, Put("a", "1")));
        var prepare = Assert.Single(h.Sent<Prepare>(0));
        h.AutoIssueUi = false;

        // The COMMIT is an intent in a log write: nothing executed yet.
        var received = h.Deliver(1, prepare);
        var write = Assert.Single(received.OfType<WriteLog>());
        var intent = Assert.IsType<Commit>(Assert.Single(write.Write.Intents));
        Assert.Empty(received.OfType<Executed>());
        // Durable: the PREPARE and this replica's own COMMIT are f+1 commitments, so the batch
        // executes and the client gets its reply now; the USIG certifies the COMMIT after.
        var durable = h.Complete(1, write);
        Assert.Equal(1UL, Assert.Single(durable.OfType<Executed>()).Sequence);
        Assert.Single(durable.OfType<SendReply>());
        var certify = Assert.Single(durable.OfType<CertifyUis>());
        Assert.DoesNotContain(durable.OfType<Send>(), s => s.Message is Commit);

        // A crash before the USIG certified it: the restart certifies the logged COMMIT first,
        // under the counter it was logged with, and sends it (its commitment may have counted).
        var state = new RecoveredState(0, null, null, [], certify.FirstCounter, [intent], UsigCounter: certify.FirstCounter - 1);
        Assert.Empty(state.UisToReissue());
        var restarted = new CoreHarness(seed: 7).Cores[1];
        var ready = restarted.Restore(state, h.Now);
        var again = Assert.Single(ready.Effects.OfType<CertifyUis>());
        Assert.Equal(certify.FirstCounter, again.FirstCounter);
        Assert.Equal(certify.Digests[0], Assert.Single(again.Digests));
        var sent = restarted.OnUisIssued(h.Usig(1).CreateUis(again.FirstCounter, again.Digests), h.Now);
        var commit = Assert.IsType<Commit>(Assert.Single(sent.Effects.OfType<Send>()).Message);
        Assert.Equal(prepare.PrepareUi.Counter, commit.Prepare.PrepareUi.Counter);
        Assert.Equal(certify.FirstCounter, commit.Ui.Counter);
        // The PREPARE, delivered again, does not make a second COMMIT under a new counter.
        var redelivered = restarted.OnMessage(prepare, h.Now);
        Assert.DoesNotContain(redelivered.Effects.OfType<WriteLog>(), w => w.Write.Intents.OfType<Commit>().Any());
    }

    [Fact]
    public void Persist_before_send_a_message_is_logged_then_certified_then_sent()
    {
        var h = new CoreHarness(tune: s => s with { Tuning = s.Tuning with { MaxBatchSize = 1 } }) { AutoIssueUi = false };
        // 1. The PREPARE is created as an intent in a log write: nothing certified, nothing sent.
        var created = h.Request(0, h.NewClient().CreateRequest(1, Put("a", "1")));
        var write = Assert.Single(created.OfType<WriteLog>()).Write;
        var intent = Assert.IsType<Prepare>(Assert.Single(write.Intents));
        Assert.True(intent.Ui.IsNone);
        Assert.Empty(created.OfType<CertifyUis>());
        Assert.DoesNotContain(created.OfType<Send>(), s => s.Message is CertifiedMessage);
        // 2. Once the intent is durable, the USIG is asked to certify it; still nothing sent.
        var logged = h.Complete(0, created.OfType<WriteLog>().Single());
        var certify = Assert.Single(logged.OfType<CertifyUis>());
        Assert.Equal(1UL, certify.FirstCounter);
        Assert.DoesNotContain(logged.OfType<Send>(), s => s.Message is CertifiedMessage);
        // 3. Certified: sent. Its UI waits for the next write of intents (the USIG can re-issue
        // it until then), so certifying costs no write of its own.
        var issued = h.Complete(0, certify);
        var sent = Assert.IsType<Prepare>(Assert.Single(issued.OfType<Send>()).Message);
        Assert.Equal(1UL, sent.PrepareUi.Counter);
        Assert.Empty(issued.OfType<WriteLog>());
        Assert.Equal(0UL, h.Cores[0].OwnLogPositions.UiDurable);
        // 4. The next PREPARE's intent carries it.
        var second = h.Request(0, h.NewClient().CreateRequest(1, Put("b", "2")));
        var next = Assert.Single(second.OfType<WriteLog>()).Write;
        Assert.Equal(1UL, Assert.Single(next.Uis).Counter);
        Assert.True(Assert.Single(next.Intents).Ui.IsNone);
        Assert.Equal(2UL, next.FirstIntentCounter);
    }

    [Fact]
    public void Lazy_uis_get_a_write_of_their_own_before_they_could_hold_up_the_usig()
    {
        // Window 4, batch 2: UIs alone are written once 2 wait, so certification always has room.
        var h = new CoreHarness(tune: s => s with { UsigReissueWindow = 4, UsigMaxBatch = 2, Tuning = s.Tuning with { MaxBatchSize = 1 } }) { AutoIssueUi = false };
        var first = Assert.Single(h.Request(0, h.NewClient().CreateRequest(1, Put("a", "1"))).OfType<WriteLog>());
        Assert.Empty(h.Request(0, h.NewClient().CreateRequest(1, Put("b", "2"))).OfType<WriteLog>()); // group commit
        var logged = h.Complete(0, first);
        var second = Assert.Single(logged.OfType<WriteLog>());
        Assert.Equal(2UL, second.Write.FirstIntentCounter);
        Assert.Empty(h.Complete(0, Assert.Single(logged.OfType<CertifyUis>())).OfType<WriteLog>()); // in flight
        var certify = Assert.Single(h.Complete(0, second).OfType<CertifyUis>());
        Assert.Equal(1UL, h.Cores[0].OwnLogPositions.Certified);
        Assert.Equal(0UL, h.Cores[0].OwnLogPositions.UiDurable); // one UI waits: below the threshold
        var uisOnly = Assert.Single(h.Complete(0, certify).OfType<WriteLog>()).Write;
        Assert.Empty(uisOnly.Intents);
        Assert.Equal([1UL, 2UL], uisOnly.Uis.Select(u => u.Counter));
    }

    [Fact]
    public void Lazy_uis_of_an_idle_replica_are_written_once_they_waited_lazy_ui_wait()
    {
        var h = new CoreHarness(tune: s => s with { Tuning = s.Tuning with { MaxBatchSize = 1 } }) { AutoIssueUi = false };
        var created = h.Request(0, h.NewClient().CreateRequest(1, Put("a", "1")));
        var certify = Assert.Single(h.Complete(0, created.OfType<WriteLog>().Single()).OfType<CertifyUis>());
        Assert.Empty(h.Complete(0, certify).OfType<WriteLog>());
        var wait = h.Cores[0].Settings.Tuning.LazyUiWait;
        // A tick before then writes nothing; one at LazyUiWait writes the UI alone.
        h.Now += wait / 2;
        Assert.Empty(h.Tick(0).OfType<WriteLog>());
        h.Now += wait / 2;
        var write = Assert.Single(h.Tick(0).OfType<WriteLog>()).Write;
        Assert.Empty(write.Intents);
        Assert.Equal(1UL, Assert.Single(write.Uis).Counter);
    }

    [Fact]
    public void Group_commit_what_is_created_while_a_log_write_is_in_flight_goes_into_the_next_write()
    {
        var h = new CoreHarness(tune: s => s with { Tuning = s.Tuning with { MaxBatchSize = 1 } }) { AutoIssueUi = false };
        var clients = Enumerable.Range(0, 3).Select(_ => h.NewClient()).ToList();
        var first = h.Request(0, clients[0].CreateRequest(1, Put("k", "v")));
        Assert.Single(first.OfType<WriteLog>());
        // Two more PREPAREs while the first write is in flight: no second write yet.
        var more = clients.Skip(1).SelectMany(c => h.Request(0, c.CreateRequest(1, Put("k", "v")))).ToList();
        Assert.Empty(more.OfType<WriteLog>());
        var next = h.Complete(0, first.OfType<WriteLog>().Single());
        var write = Assert.Single(next.OfType<WriteLog>()).Write;
        Assert.Equal(2, write.Intents.Count);
        Assert.Equal(2UL, write.FirstIntentCounter);
    }

    [Fact]
    public void Own_usig_counters_out_of_order_are_an_invariant_violation()
    {
        var h = new CoreHarness { AutoIssueUi = false };
        var created = h.Request(0, h.NewClient().CreateRequest(1, Put("a", "1")));
        var certify = Assert.Single(h.Complete(0, created.OfType<WriteLog>().Single()).OfType<CertifyUis>());
        h.Usig(0).CreateUi(new byte[32]); // counter 1 burned elsewhere: the host broke the order
        var uis = h.Usig(0).CreateUis(certify.FirstCounter + 1, certify.Digests);
        Assert.Throws<ProtocolInvariantException>(() => h.Cores[0].OnUisIssued(uis, h.Now));
    }

    [Fact]
    public void Batching_primary_fills_batches_while_others_are_in_flight_up_to_the_batch_size()
    {
        var h = new CoreHarness(tune: s => s with { Tuning = s.Tuning with { MaxBatchSize = 3, MaxBatchWait = TimeSpan.FromSeconds(1) } }) { AutoIssueUi = false };
        var clients = Enumerable.Range(0, 7).Select(_ => h.NewClient()).ToList();
        var first = h.Request(0, clients[0].CreateRequest(1, Put("k", "v")));
        Assert.Single(CoreHarness.Intents(first)); // nothing in flight: proposed at once
        // Six more while the first is in flight: two full batches of three, in the next log write.
        foreach (var c in clients.Skip(1)) h.Request(0, c.CreateRequest(1, Put("k", "v")));
        var later = CoreHarness.Intents(h.Complete(0, first.OfType<WriteLog>().Single()));
        Assert.Equal(2, later.Count);
        Assert.All(later, m => Assert.Equal(3, ((Prepare)m).Batch.Length));
    }

    [Fact]
    public void Batching_with_an_empty_pipeline_the_primary_waits_for_the_clients_it_just_answered()
    {
        var wait = TimeSpan.FromMilliseconds(5);
        var h = new CoreHarness(tune: s => s with { Tuning = s.Tuning with { MaxBatchWait = wait } });
        var (answered, waiting) = (h.NewClient(), h.NewClient());
        h.Request(0, answered.CreateRequest(1, Put("a", "1"))); // proposed at once
        h.Request(0, waiting.CreateRequest(1, Put("b", "1")));  // waits: a batch is in flight
        h.Flush();
        Assert.All(h.Cores, c => Assert.Equal(1UL, c.ExecutedSequence));
        // The pipeline is empty, but the client just answered is expected back: no batch of one yet.
        Assert.Single(h.Sent<Prepare>(0));
        Assert.Equal(h.Now + wait, h.Cores[0].OnTick(h.Now).NextTick);
        h.Request(0, answered.CreateRequest(2, Put("a", "2")));
        var prepares = h.Sent<Prepare>(0);
        Assert.Equal(2, prepares.Count);
        Assert.Equal(["b", "a"], prepares[1].Batch.Select(r => KeyOf(r)));
    }

    [Fact]
    public void Batching_the_wait_for_answered_clients_ends_after_max_batch_wait()
    {
        var wait = TimeSpan.FromMilliseconds(5);
        var h = new CoreHarness(tune: s => s with { Tuning = s.Tuning with { MaxBatchWait = wait } });
        var (answered, waiting) = (h.NewClient(), h.NewClient());
        h.Request(0, answered.CreateRequest(1, Put("a", "1")));
        h.Request(0, waiting.CreateRequest(1, Put("b", "1")));
        h.Flush();
        h.Now += wait - TimeSpan.FromTicks(1);
        h.Tick(0);
        Assert.Single(h.Sent<Prepare>(0));
        h.Now += TimeSpan.FromTicks(1); // the answered client never came back
        h.Tick(0);
        var second = h.Sent<Prepare>(0)[1];
        Assert.Equal(["b"], second.Batch.Select(r => KeyOf(r)));
    }

    [Fact]
    public void Batching_a_client_back_before_the_primary_executed_is_not_waited_for()
    {
        var h = new CoreHarness(tune: s => s with { Tuning = s.Tuning with { MaxBatchWait = TimeSpan.FromSeconds(1) } });
        var client = h.NewClient();
        h.Request(0, client.CreateRequest(1, Put("a", "1")));
        h.Deliver(1, Assert.Single(h.Sent<Prepare>(0)));
        // Backups execute on their own COMMIT and reply first: the client's next request can
        // reach the primary before the COMMIT that lets the primary execute.
        h.Request(0, client.CreateRequest(2, Put("a", "2")));
        Assert.Single(h.Sent<Prepare>(0)); // a batch is in flight
        h.Deliver(0, Assert.Single(h.Sent<Commit>(1)));
        Assert.Equal(1UL, h.Cores[0].ExecutedSequence);
        Assert.Equal(2, h.Sent<Prepare>(0).Count);
    }

    [Fact]
    public void Batching_a_lone_client_s_next_request_is_proposed_at_once()
    {
        var h = new CoreHarness(tune: s => s with { Tuning = s.Tuning with { MaxBatchWait = TimeSpan.FromSeconds(1) } });
        var client = h.NewClient();
        h.Request(0, client.CreateRequest(1, Put("a", "1")));
        h.Flush();
        Assert.Equal(1UL, h.Cores[0].ExecutedSequence);
        // Every client answered is back: nothing to wait for.
        h.Request(0, client.CreateRequest(2, Put("a", "2")));
        Assert.Equal(2, h.Sent<Prepare>(0).Count);
    }

    private static string KeyOf(Request request) =>
        KeyValueOperation.TryDecode(request.Operation, out var operation) ? operation.Key : throw new InvalidOperationException("not a key-value operation");

    [Fact]
    public void Retransmission_a_peer_resends_its_sent_log_to_a_signed_request_only()
    {
        var h = new CoreHarness();
        h.Request(0, h.NewClient().CreateRequest(1, Put("a", "1")));
        var prepare = Assert.Single(h.Sent<Prepare>(0));
        // Replica 2 lost the PREPARE; it knows of the request and, stalled, asks everyone.
        h.Request(2, prepare.Batch[0]);
        h.Now += TimeSpan.FromSeconds(1);
        var asks = h.Tick(2).OfType<Send>().Select(s => s.Message).OfType<RetransmitRequest>().ToList();
        var toPrimary = Assert.Single(asks, a => a.TargetId == 0);
        var answer = h.Deliver(0, toPrimary).OfType<Send>().ToList();
        Assert.Same(prepare, Assert.Single(answer).Message);

        var forged = toPrimary with { ReplicaId = 1 };
        h.Now += TimeSpan.FromSeconds(1);
        var rejected = h.Deliver(0, forged);
        Assert.Equal(RejectReason.InvalidSignature, Assert.Single(rejected.OfType<Rejected>()).Reason);
    }
}
