using MinBft.Application;
using MinBft.Messages;
using MinBft.Protocol;
using MinBft.Tests.Simulation;

namespace MinBft.Tests.Protocol;

/// <summary>
/// A batch whose messages fit what the USIG keeps is certified while its journal write is in
/// flight, and a crash between the two writes loses none of it (USIG-KEPT-MESSAGES-DESIGN.md).
/// </summary>
public sealed class KeptMessagesTests
{
    private static byte[] Put(string key, string value) => KeyValueOperation.EncodePut(key, System.Text.Encoding.UTF8.GetBytes(value));

    private static (CoreHarness Harness, SimKeptMessageCodec Codec) Harness(Func<ProtocolSettings, ProtocolSettings>? tune = null)
    {
        var codec = new SimKeptMessageCodec();
        var h = new CoreHarness(tune: s => (tune?.Invoke(s) ?? s) with { Tuning = s.Tuning with { MaxBatchSize = 1 } }, keptCodec: codec) { AutoIssueUi = false };
        return (h, codec);
    }

    /// <summary>A fresh replica's first journal write records its view whatever the USIG keeps: the
    /// tests start after it, with counter 1 durable. Returns the next counter.</summary>
    private static ulong PastTheFirstWrite(CoreHarness h)
    {
        var pending = new Queue<Effect>(h.Request(0, h.NewClient().CreateRequest(1, Put("w", "0"))));
        while (pending.TryDequeue(out var effect))
            foreach (var next in h.Complete(0, effect)) pending.Enqueue(next);
        Assert.Equal((1UL, 1UL), (h.Cores[0].OwnLogPositions.Durable, h.Cores[0].OwnLogPositions.Certified));
        return 2;
    }

    [Fact]
    public void A_batch_that_fits_is_certified_with_its_message_kept_while_the_journal_writes_it()
    {
        var (h, codec) = Harness();
        var b = PastTheFirstWrite(h);
        var effects = h.Request(0, h.NewClient().CreateRequest(1, Put("a", "1")));
        // One step asks for both writes at once.
        var write = Assert.Single(effects.OfType<WriteLog>());
        var certify = Assert.Single(effects.OfType<CertifyUis>());
        var intent = Assert.IsType<Prepare>(Assert.Single(write.Write.Intents));
        Assert.Equal(intent, codec.Decode(Assert.Single(certify.Kept!)));
        // The journal holds everything before it: the batch replaces what the USIG kept.
        Assert.Equal((b, b), (certify.FirstCounter, certify.KeptFrom));

        // The USIG's write completes first: the PREPARE leaves, its journal write still in flight.
        var issued = h.Complete(0, certify);
        Assert.Equal(intent.Batch, Assert.IsType<Prepare>(Assert.Single(issued.OfType<Send>()).Message).Batch);
        Assert.Equal(b - 1, h.Cores[0].OwnLogPositions.Durable);
        Assert.Equal(b, h.Cores[0].OwnLogPositions.Certified);
        Assert.Equal(intent, codec.Decode(Assert.Single(h.Usig(0).Kept)));
    }

    [Fact]
    public void The_next_kept_batch_keeps_the_last_one_too_while_its_journal_write_is_in_flight()
    {
        // Replacing it could lose it to a crash before the journal has it; waiting for the journal
        // (as stop 48 did) put a synced write between consecutive small batches.
        var (h, codec) = Harness();
        var b = PastTheFirstWrite(h);
        var first = h.Request(0, h.NewClient().CreateRequest(1, Put("a", "1")));
        h.Complete(0, first.OfType<CertifyUis>().Single());
        var second = h.Request(0, h.NewClient().CreateRequest(1, Put("b", "2")));
        var certify = Assert.Single(second.OfType<CertifyUis>());
        Assert.Equal((b + 1, b), (certify.FirstCounter, certify.KeptFrom));
        Assert.Empty(second.OfType<WriteLog>()); // the first write is in flight: group commit
        h.Complete(0, certify);
        Assert.Equal(2, h.Usig(0).Kept.Count);

        // The first write lands: the second goes to the journal, and the next batch keeps only it.
        var logged = h.Complete(0, first.OfType<WriteLog>().Single());
        Assert.Equal(b, h.Cores[0].OwnLogPositions.Durable);
        var write = Assert.Single(logged.OfType<WriteLog>()).Write;
        Assert.Equal(b + 1, write.FirstIntentCounter);
        var third = Assert.Single(h.Request(0, h.NewClient().CreateRequest(1, Put("c", "3"))).OfType<CertifyUis>());
        Assert.Equal((b + 2, b + 1), (third.FirstCounter, third.KeptFrom));
        h.Complete(0, third);
        Assert.Equal([certify.Kept![0], third.Kept![0]], h.Usig(0).Kept);
    }

    [Fact]
    public void A_batch_with_no_room_beside_the_window_waits_for_the_journal_write_in_flight()
    {
        var (h, _) = Harness();
        var b = PastTheFirstWrite(h);
        WriteLog? write = null;
        var batches = 0;
        // Fill the window while the journal write it made due stays in flight.
        while (true)
        {
            Assert.True(batches < 32, "the window fills");
            var effects = h.Request(0, h.NewClient().CreateRequest(1, Put("a", "1")));
            write ??= effects.OfType<WriteLog>().SingleOrDefault();
            if (effects.OfType<CertifyUis>().SingleOrDefault() is not { } certify) break;
            batches++;
            var completed = h.Complete(0, certify);
            write ??= completed.OfType<WriteLog>().SingleOrDefault();
        }
        Assert.NotNull(write);
        var positions = h.Cores[0].OwnLogPositions;
        Assert.Equal((b + (ulong)batches, b + (ulong)batches - 1), (positions.Appended, positions.Certified));
        // The write lands: the waiting batch goes, keeping what the journal still lacks.
        var logged = h.Complete(0, write);
        var durable = h.Cores[0].OwnLogPositions.Durable;
        Assert.InRange(durable, b, b + (ulong)batches - 2);
        var next = Assert.Single(logged.OfType<CertifyUis>());
        Assert.Equal((b + (ulong)batches, durable + 1), (next.FirstCounter, next.KeptFrom));
    }

    [Fact]
    public void A_batch_too_large_to_keep_is_certified_once_its_journal_write_is_durable()
    {
        var (h, _) = Harness();
        var large = KeyValueOperation.EncodePut("big", new byte[SimUsig.MaxKeptBytes]);
        var effects = h.Request(0, h.NewClient().CreateRequest(1, large));
        Assert.Empty(effects.OfType<CertifyUis>());
        var certify = Assert.Single(h.Complete(0, effects.OfType<WriteLog>().Single()).OfType<CertifyUis>());
        Assert.Null(certify.Kept);
    }

    [Fact]
    public void Without_a_kept_message_codec_every_batch_waits_for_its_journal_write()
    {
        var h = new CoreHarness(tune: s => s with { Tuning = s.Tuning with { MaxBatchSize = 1 } }) { AutoIssueUi = false };
        var effects = h.Request(0, h.NewClient().CreateRequest(1, Put("a", "1")));
        Assert.Empty(effects.OfType<CertifyUis>());
        Assert.Null(Assert.Single(h.Complete(0, effects.OfType<WriteLog>().Single()).OfType<CertifyUis>()).Kept);
    }

    [Fact]
    public void A_crash_after_the_usig_write_and_before_the_journal_write_takes_the_kept_message_back()
    {
        var (h, codec) = Harness();
        var effects = h.Request(0, h.NewClient().CreateRequest(1, Put("a", "1")));
        var certify = effects.OfType<CertifyUis>().Single();
        h.Usig(0).CreateUis(certify.FirstCounter, certify.Digests, certify.Kept, certify.KeptFrom); // durable in the USIG; then the crash
        var intent = codec.Decode(certify.Kept!.Single());

        // What the host finds: an empty journal, the USIG at counter 1 with the PREPARE kept.
        var state = new RecoveredState(0, null, null, [], 1, [], h.Usig(0).Counter).WithKept(h.Usig(0).Kept.Select(m => codec.Decode(m)).ToList());
        Assert.Equal(1UL, state.KeptFrom);
        var reissue = state.UisToReissue();
        Assert.Equal(1UL, Assert.Single(reissue).Counter);
        state = state.WithReissued(reissue.Select(r => h.Usig(0).ReissueUi(r.Counter, r.Digest)).ToList());

        var core = h.Renew(0);
        var restored = core.Restore(state, h.Now).Effects;
        Assert.False(core.RestartedAfterCounterGap);
        Assert.Equal((1UL, 0UL, 1UL), (core.OwnLogPositions.Appended, core.OwnLogPositions.Durable, core.OwnLogPositions.Certified));
        // The first write puts the kept PREPARE into the journal, with its UI.
        var write = Assert.Single(restored.OfType<WriteLog>()).Write;
        var logged = Assert.IsType<Prepare>(Assert.Single(write.Intents));
        Assert.Equal(1UL, logged.PrepareUi.Counter);
        Assert.Equal(((Prepare)intent).Batch, logged.Batch);
        Assert.Empty(write.Uis);
        h.Complete(0, restored.OfType<WriteLog>().Single());
        Assert.Equal(1UL, core.OwnLogPositions.Durable);
        Assert.Equal(1UL, core.OwnLogPositions.UiDurable);
    }

    [Fact]
    public void A_crash_with_several_batches_only_in_the_usig_takes_them_all_back()
    {
        var (h, codec) = Harness();
        var certifies = new List<CertifyUis>();
        for (var i = 0; i < 2; i++)
        {
            var certify = Assert.Single(h.Request(0, h.NewClient().CreateRequest(1, Put("k" + i, "v"))).OfType<CertifyUis>());
            h.Complete(0, certify); // any journal write it makes due never lands: the crash
            certifies.Add(certify);
        }
        Assert.Equal(2, h.Usig(0).Kept.Count);

        var state = new RecoveredState(0, null, null, [], 1, [], h.Usig(0).Counter).WithKept(h.Usig(0).Kept.Select(m => codec.Decode(m)).ToList());
        Assert.Equal(1UL, state.KeptFrom);
        var reissue = state.UisToReissue();
        Assert.Equal([1UL, 2UL], reissue.Select(r => r.Counter));
        state = state.WithReissued(reissue.Select(r => h.Usig(0).ReissueUi(r.Counter, r.Digest)).ToList());

        var core = h.Renew(0);
        var restored = core.Restore(state, h.Now).Effects;
        Assert.False(core.RestartedAfterCounterGap);
        var write = Assert.Single(restored.OfType<WriteLog>()).Write;
        Assert.Equal([1UL, 2UL], write.Intents.Select(m => m.Ui.Counter));
        Assert.Equal(certifies.Select(c => ((Prepare)codec.Decode(c.Kept![0])).Batch[0].Seq), write.Intents.Select(m => ((Prepare)m).Batch[0].Seq));
        h.Complete(0, restored.OfType<WriteLog>().Single());
        Assert.Equal((2UL, 2UL, 2UL), (core.OwnLogPositions.Durable, core.OwnLogPositions.Certified, core.OwnLogPositions.UiDurable));
    }

    [Fact]
    public void Kept_messages_fill_only_the_counters_the_journal_did_not_reach()
    {
        var (h, codec) = Harness();
        h.AutoIssueUi = true;
        var intents = new List<CertifiedMessage>();
        for (var i = 0; i < 3; i++)
            intents.AddRange(h.Request(0, h.NewClient().CreateRequest(1, Put("k", "v"))).OfType<CertifyUis>().SelectMany(c => c.Kept!.Select(m => codec.Decode(m))));
        Assert.Equal(3, intents.Count);
        var kept = intents.Skip(1).ToList(); // the USIG kept counters 2 and 3

        // The journal holds counter 1 only: 2 and 3 come from the USIG.
        var partial = new RecoveredState(0, null, null, [], 1, [intents[0]], 3).WithKept(kept);
        Assert.Equal(2UL, partial.KeptFrom);
        Assert.Equal(intents, partial.Log);
        // The journal holds 1 and 2: only 3 comes from the USIG.
        var overlap = new RecoveredState(0, null, null, [], 1, intents.Take(2).ToList(), 3).WithKept(kept);
        Assert.Equal(3UL, overlap.KeptFrom);
        Assert.Equal(intents, overlap.Log);
        // The journal reaches the USIG's counter: nothing to add.
        var whole = new RecoveredState(0, null, null, [], 1, intents, 3).WithKept(kept);
        Assert.Equal(0UL, whole.KeptFrom);
        Assert.Equal(intents, whole.Log);
        // The kept batch starts after the journal's end: a gap it cannot fill, left as it is.
        var gap = new RecoveredState(0, null, null, [], 1, [], 3).WithKept(kept);
        Assert.Equal(0UL, gap.KeptFrom);
        Assert.Empty(gap.Log);
    }
}
