using MinBft.Hosting.Journal;
using MinBft.Messages;
using static MinBft.Tests.Hosting.JournalKit;

namespace MinBft.Tests.Hosting;

/// <summary>Replaying the records the file and grain-storage journals store, including kinds that
/// only earlier builds wrote.</summary>
public sealed class JournalReplayTests
{
    private static JournalRecord Append(ulong first, CertifiedMessage[] intents, UniqueIdentifier[] uis, ulong next) => new()
    {
        Kind = JournalRecordKind.Append,
        FirstIntentCounter = first,
        Intents = intents,
        Uis = uis,
        FirstAfter = 1,
        NextAfter = next,
    };

    [Fact]
    public void A_drop_from_record_of_an_earlier_build_still_removes_the_intents_above_it_and_their_counters_are_used_again()
    {
        // Builds before stop 44 cut intents the USIG had not certified at a restart; their journals
        // hold such records, and must still load.
        var replay = new JournalReplay("replica 1", new JournalHead());
        replay.Apply(0, Append(1, Intents(1, 5), [Ui(1), Ui(2)], next: 6));
        replay.Apply(1, new JournalRecord { Kind = JournalRecordKind.DropFrom, FirstAfter = 1, NextAfter = 3 });
        replay.Apply(2, Append(3, Intents(3, 2, tag: 1), [], next: 5));

        var contents = replay.ToContents();
        Assert.Equal(1UL, contents.FirstCounter);
        var first = Intents(1, 5);
        CertifiedMessage[] expected = [first[0].WithUi(Ui(1)), first[1].WithUi(Ui(2)), .. Intents(3, 2, tag: 1)];
        Assert.Equal(expected.Select(Bytes), contents.Entries.Select(Bytes));
    }

    [Fact]
    public void A_record_whose_next_counter_disagrees_with_the_replay_is_reported_as_corrupt()
    {
        var replay = new JournalReplay("replica 1", new JournalHead());
        var error = Assert.Throws<InvalidDataException>(() => replay.Apply(0, Append(1, Intents(1, 2), [], next: 4)));
        Assert.Contains("next counter", error.Message, StringComparison.Ordinal);
    }
}
