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

    [Fact]
    public void A_batch_that_fits_is_certified_with_its_message_kept_while_the_journal_writes_it()
    {
        var (h, codec) = Harness();
        var effects = h.Request(0, h.NewClient().CreateRequest(1, Put("a", "1")));
        // One step asks for both writes at once.
        var write = Assert.Single(effects.OfType<WriteLog>());
        var certify = Assert.Single(effects.OfType<CertifyUis>());
        var intent = Assert.IsType<Prepare>(Assert.Single(write.Write.Intents));
        var kept = Assert.Single(certify.Kept!);
        Assert.Equal(intent, codec.Decode(kept));
        Assert.Equal(1UL, certify.FirstCounter);

        // The USIG's write completes first: the PREPARE leaves, its journal write still in flight.
        var issued = h.Complete(0, certify);
        Assert.Equal(1UL, Assert.IsType<Prepare>(Assert.Single(issued.OfType<Send>()).Message).PrepareUi.Counter);
        Assert.Equal(0UL, h.Cores[0].OwnLogPositions.Durable);
        Assert.Equal(1UL, h.Cores[0].OwnLogPositions.Certified);
        Assert.Equal(intent, codec.Decode(Assert.Single(h.Usig(0).Kept)));
    }

    [Fact]
    public void The_next_kept_batch_waits_until_the_last_one_is_durable_in_the_journal()
    {
        // It replaces what the USIG kept: asked earlier, a crash could lose the first batch.
        var (h, _) = Harness();
        var client = h.NewClient();
        var first = h.Request(0, client.CreateRequest(1, Put("a", "1")));
        h.Complete(0, first.OfType<CertifyUis>().Single());
        var second = h.Request(0, h.NewClient().CreateRequest(1, Put("b", "2")));
        Assert.Empty(second.OfType<CertifyUis>());
        Assert.Empty(second.OfType<WriteLog>()); // the first write is in flight: group commit

        var logged = h.Complete(0, first.OfType<WriteLog>().Single());
        var certify = Assert.Single(logged.OfType<CertifyUis>());
        Assert.Equal(2UL, certify.FirstCounter);
        Assert.NotNull(certify.Kept);
        var write = Assert.Single(logged.OfType<WriteLog>()).Write;
        Assert.Equal(2UL, write.FirstIntentCounter);
        Assert.Equal(1UL, Assert.Single(write.Uis).Counter); // the first UI rides with the next intent
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
        h.Usig(0).CreateUis(certify.FirstCounter, certify.Digests, certify.Kept); // durable in the USIG; then the crash
        var intent = effects.OfType<WriteLog>().Single().Write.Intents.Single();

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
    public void Kept_messages_fill_only_the_counters_the_journal_did_not_reach()
    {
        var (h, _) = Harness();
        h.AutoIssueUi = true;
        var intents = new List<CertifiedMessage>();
        for (var i = 0; i < 3; i++) intents.AddRange(CoreHarness.Intents(h.Request(0, h.NewClient().CreateRequest(1, Put("k", "v")))));
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
