using MinBft.Hosting.Journal;
using MinBft.Messages;
using MinBft.Tests.Application;
using Orleans.Storage;
using Xunit.Abstractions;
using static MinBft.Tests.Hosting.JournalKit;

namespace MinBft.Tests.Hosting;

/// <summary>
/// The <see cref="IReplicaJournal"/> contract, on every implementation: SQLite rows, grain
/// storage records over the SQLite grain storage, and the same on a real Redis server.
/// "Reload" is a new journal instance over the same store: what a restarted replica reads.
/// </summary>
public sealed class ReplicaJournalContractTests(RedisStorageFixture redis, ITestOutputHelper output) : IClassFixture<RedisStorageFixture>
{
    private JournalBackend Backend(string backend) => JournalKit.Create(backend, redis.ConnectionString);

    [Theory, MemberData(nameof(Backends), MemberType = typeof(JournalKit))]
    public async Task A_journal_never_written_is_empty_at_counter_1_in_view_0(string backend)
    {
        await using var store = Backend(backend);

        var contents = await store.Create().OpenAsync();

        Assert.Equal(0, contents.View);
        Assert.Equal(1UL, contents.FirstCounter);
        Assert.Empty(contents.Entries);
        Assert.Equal(1UL, contents.NextCounter);
    }

    [Theory, MemberData(nameof(Backends), MemberType = typeof(JournalKit))]
    public async Task Appended_intents_read_back_in_order_after_reopening(string backend)
    {
        await using var store = Backend(backend);
        var journal = store.Create();
        await journal.OpenAsync();
        var model = new JournalModel();
        foreach (var count in new[] { 1, 3, 0, 2, 5 })
        {
            var append = Append(view: 2, model.Next, Intents(model.Next, count));
            await journal.AppendAsync(append);
            model.Append(append);
        }

        model.AssertMatches(await store.ReloadAsync());
    }

    [Theory, MemberData(nameof(Backends), MemberType = typeof(JournalKit))]
    public async Task Uis_appended_later_are_applied_to_their_intents_and_intents_may_arrive_with_their_ui(string backend)
    {
        await using var store = Backend(backend);
        var journal = store.Create();
        await journal.OpenAsync();
        var model = new JournalModel();
        var steps = new[]
        {
            Append(0, 1, Intents(1, 3)),
            Append(0, 4, Intents(4, 2), [Ui(1), Ui(2)]),
            // An intent that already has its UI, and the UI of an intent of the same append.
            Append(0, 6, [Intent(6).WithUi(Ui(6)), Intent(7)], [Ui(7), Ui(3)]),
        };
        foreach (var step in steps)
        {
            await journal.AppendAsync(step);
            model.Append(step);
        }

        var contents = await store.ReloadAsync();
        model.AssertMatches(contents);
        Assert.Equal([true, true, true, false, false, true, true], contents.Entries.Select(e => !e.Ui.IsNone));
        Assert.Equal(Enumerable.Range(1, 3).Select(c => (ulong)c), contents.Entries.Take(3).Select(e => e.Ui.Counter));
    }

    [Theory, MemberData(nameof(Backends), MemberType = typeof(JournalKit))]
    public async Task The_view_of_the_last_append_is_restored_even_from_an_append_without_entries(string backend)
    {
        await using var store = Backend(backend);
        var journal = store.Create();
        await journal.OpenAsync();
        await journal.AppendAsync(Append(1, 1, Intents(1, 2)));
        await journal.AppendAsync(Append(4, 0, []));

        var contents = await store.ReloadAsync();

        Assert.Equal(4, contents.View);
        Assert.Equal(2, contents.Entries.Count);
    }

    [Theory, MemberData(nameof(Backends), MemberType = typeof(JournalKit))]
    public async Task KeepFrom_drops_the_entries_below_it_and_appending_goes_on_after_them(string backend)
    {
        await using var store = Backend(backend);
        var journal = store.Create();
        await journal.OpenAsync();
        var model = new JournalModel();
        // Many small appends, so that the grain-storage journal moves its head too.
        for (var i = 0; i < 24; i++)
        {
            var append = Append(0, model.Next, Intents(model.Next, 2), model.Next > 1 ? [Ui(model.Next - 2), Ui(model.Next - 1)] : []);
            await journal.AppendAsync(append);
            model.Append(append);
        }
        var trim = Append(1, model.Next, Intents(model.Next, 1), keepFrom: 31);
        await journal.AppendAsync(trim);
        model.Append(trim);
        var after = Append(1, model.Next, Intents(model.Next, 2));
        await journal.AppendAsync(after);
        model.Append(after);

        var contents = await store.ReloadAsync();
        model.AssertMatches(contents);
        Assert.Equal(31UL, contents.FirstCounter);
        Assert.Equal(52UL, contents.NextCounter);
    }

    [Theory, MemberData(nameof(Backends), MemberType = typeof(JournalKit))]
    public async Task KeepFrom_at_the_next_counter_leaves_an_empty_journal_that_resumes_there(string backend)
    {
        await using var store = Backend(backend);
        var journal = store.Create();
        await journal.OpenAsync();
        await journal.AppendAsync(Append(0, 1, Intents(1, 4), [Ui(1), Ui(2), Ui(3), Ui(4)], keepFrom: 5));

        var contents = await store.ReloadAsync();
        Assert.Equal(5UL, contents.FirstCounter);
        Assert.Empty(contents.Entries);

        var reopened = store.Create();
        await reopened.OpenAsync();
        await reopened.AppendAsync(Append(0, 5, Intents(5, 1)));
        var resumed = await store.ReloadAsync();
        Assert.Equal(5UL, resumed.FirstCounter);
        Assert.Equal(5UL, ((Commit)resumed.Entries.Single()).Prepare.Sequence);
    }

    [Theory, MemberData(nameof(Backends), MemberType = typeof(JournalKit))]
    public async Task RestartAt_removes_every_entry_and_the_next_intent_takes_the_new_counter(string backend)
    {
        await using var store = Backend(backend);
        var journal = store.Create();
        await journal.OpenAsync();
        await journal.AppendAsync(Append(3, 1, Intents(1, 4), [Ui(1), Ui(2)]));

        await journal.RestartAtAsync(40);

        (journal, var contents) = await store.ReopenAsync();
        Assert.Equal(40UL, contents.FirstCounter);
        Assert.Empty(contents.Entries);
        Assert.Equal(3, contents.View);
        await Assert.ThrowsAsync<ArgumentException>(() => journal.AppendAsync(Append(3, 5, Intents(5, 1))));
        await journal.AppendAsync(Append(3, 40, Intents(40, 2)));
        Assert.Equal([40UL, 41UL], (await store.ReloadAsync()).Entries.Select(e => ((Commit)e).Prepare.Sequence));
    }

    [Theory, MemberData(nameof(Backends), MemberType = typeof(JournalKit))]
    public async Task RestartAt_refuses_to_reuse_a_counter_whose_ui_is_durable(string backend)
    {
        await using var store = Backend(backend);
        var journal = store.Create();
        await journal.OpenAsync();
        await journal.AppendAsync(Append(0, 1, Intents(1, 4), [Ui(1), Ui(2)]));

        await Assert.ThrowsAsync<ArgumentException>(() => journal.RestartAtAsync(2));
        await Assert.ThrowsAsync<ArgumentException>(() => journal.RestartAtAsync(0));
        // Above every durable UI, even below uncertified intents: allowed.
        await journal.RestartAtAsync(3);

        Assert.Equal(3UL, (await store.ReloadAsync()).FirstCounter);
    }

    [Theory, MemberData(nameof(Backends), MemberType = typeof(JournalKit))]
    public async Task A_second_open_fences_the_first_instance_whose_writes_then_fail_and_store_nothing(string backend)
    {
        await using var store = Backend(backend);
        var stale = store.Create();
        await stale.OpenAsync();
        await stale.AppendAsync(Append(0, 1, Intents(1, 2)));

        var current = store.Create();
        var loaded = await current.OpenAsync();
        Assert.Equal(2, loaded.Entries.Count);

        await Assert.ThrowsAsync<InconsistentStateException>(() => stale.AppendAsync(Append(0, 3, Intents(3, 1, tag: 9))));
        // Fencing sticks: every later write of the stale instance fails too.
        await Assert.ThrowsAsync<InconsistentStateException>(() => stale.AppendAsync(Append(0, 3, Intents(3, 1, tag: 9))));
        await Assert.ThrowsAsync<InconsistentStateException>(() => stale.RestartAtAsync(10));

        await current.AppendAsync(Append(0, 3, Intents(3, 1, tag: 1)));
        var contents = await store.ReloadAsync();
        var model = new JournalModel();
        model.Append(Append(0, 1, Intents(1, 2)));
        model.Append(Append(0, 3, Intents(3, 1, tag: 1)));
        model.AssertMatches(contents);
    }

    [Theory, MemberData(nameof(Backends), MemberType = typeof(JournalKit))]
    public async Task A_stale_instance_cannot_restart_the_log_either(string backend)
    {
        await using var store = Backend(backend);
        var stale = store.Create();
        await stale.OpenAsync();
        await stale.AppendAsync(Append(0, 1, Intents(1, 3)));
        await store.Create().OpenAsync();

        await Assert.ThrowsAsync<InconsistentStateException>(() => stale.RestartAtAsync(10));

        Assert.Equal(3, (await store.ReloadAsync()).Entries.Count);
    }

    [Theory, MemberData(nameof(Backends), MemberType = typeof(JournalKit))]
    public async Task Invalid_writes_are_refused_with_a_clear_error_and_store_nothing(string backend)
    {
        await using var store = Backend(backend);
        var journal = store.Create();
        await journal.OpenAsync();
        var model = new JournalModel();
        var valid = Append(5, 1, Intents(1, 3), [Ui(1), Ui(2)], keepFrom: 2);
        await journal.AppendAsync(valid);
        model.Append(valid);

        // Stored now: counters 2 (with UI) and 3; the next intent goes at 4.
        var invalid = new (string Rule, JournalAppend Append)[]
        {
            ("a gap before the first intent", Append(5, 5, Intents(5, 1))),
            ("intents overlapping stored ones", Append(5, 3, Intents(3, 2))),
            ("an intent carrying another counter's UI", Append(5, 4, [Intent(4).WithUi(Ui(9))])),
            ("a UI for a counter not stored", Append(5, 4, Intents(4, 1), [Ui(6)])),
            ("a UI for a counter already trimmed", Append(5, 0, [], [Ui(1)])),
            ("a UI that is none", Append(5, 0, [], [UniqueIdentifier.None])),
            ("a second, different UI for a counter", Append(5, 0, [], [Ui(2, variant: 1)])),
            ("two different UIs for one counter in one append", Append(5, 0, [], [Ui(3), Ui(3, variant: 1)])),
            ("a view going back", Append(4, 4, Intents(4, 1))),
            ("KeepFrom beyond the next counter", Append(5, 4, Intents(4, 1), keepFrom: 6)),
            ("a null intent", new JournalAppend(5, 4, [null!], [], 0)),
        };
        foreach (var (rule, append) in invalid)
        {
            var error = await Assert.ThrowsAsync<ArgumentException>(() => journal.AppendAsync(append));
            output.WriteLine($"{rule}: {error.Message}");
            Assert.Contains("Nothing was stored", error.Message, StringComparison.Ordinal);
        }
        await Assert.ThrowsAsync<ArgumentException>(() => journal.RestartAtAsync(1));

        // The same instance still takes valid writes, and the store holds exactly the valid ones.
        var next = Append(5, 4, Intents(4, 1), [Ui(3)]);
        await journal.AppendAsync(next);
        model.Append(next);
        model.AssertMatches(await store.ReloadAsync());
    }

    [Theory, MemberData(nameof(Backends), MemberType = typeof(JournalKit))]
    public async Task A_ui_repeated_with_the_same_value_is_accepted_as_a_retry(string backend)
    {
        await using var store = Backend(backend);
        var journal = store.Create();
        await journal.OpenAsync();
        await journal.AppendAsync(Append(0, 1, Intents(1, 2), [Ui(1)]));

        await journal.AppendAsync(Append(0, 3, Intents(3, 1), [Ui(1), Ui(2), Ui(2)]));

        var contents = await store.ReloadAsync();
        Assert.Equal([true, true, false], contents.Entries.Select(e => !e.Ui.IsNone));
    }

    [Theory, MemberData(nameof(Backends), MemberType = typeof(JournalKit))]
    public async Task Writes_need_an_open_journal(string backend)
    {
        await using var store = Backend(backend);
        var journal = store.Create();

        await Assert.ThrowsAsync<InvalidOperationException>(() => journal.AppendAsync(Append(0, 1, Intents(1, 1))));
        await Assert.ThrowsAsync<InvalidOperationException>(() => journal.RestartAtAsync(1));

        await journal.OpenAsync();
        await journal.AppendAsync(Append(0, 1, Intents(1, 1)));
        Assert.Single((await store.ReloadAsync()).Entries);
    }

    [Theory, MemberData(nameof(Backends), MemberType = typeof(JournalKit))]
    public async Task Random_writes_and_reopens_always_read_back_what_the_contract_says(string backend)
    {
        var random = FuzzSeed.Create(output);
        await using var store = Backend(backend);
        var journal = store.Create();
        var model = new JournalModel();
        model.AssertMatches(await journal.OpenAsync());
        var steps = backend == Redis ? 150 : 300;
        for (var step = 0; step < steps; step++)
        {
            var roll = random.Next(100);
            if (roll < 82)
            {
                var append = RandomAppend(random, model);
                await journal.AppendAsync(append);
                model.Append(append);
            }
            else if (roll < 85)
            {
                var counter = model.Next + (ulong)random.Next(5);
                await journal.RestartAtAsync(counter);
                model.RestartAt(counter);
            }
            else
            {
                journal = store.Create();
                model.AssertMatches(await journal.OpenAsync());
            }
        }
        model.AssertMatches(await store.ReloadAsync());
    }

    private static JournalAppend RandomAppend(Random random, JournalModel model)
    {
        var view = model.View + (random.Next(10) == 0 ? 1 : 0);
        var intents = Intents(model.Next, random.Next(4), tag: random.Next(1000), requests: 1 + random.Next(3));
        var next = model.Next + (ulong)intents.Length;
        // UIs for some stored or new intents, in any order; sometimes a repeat of a stored one.
        var uis = new List<UniqueIdentifier>();
        for (var counter = model.First; counter < next; counter++)
        {
            var stored = counter < model.Next && model.HasUi(counter);
            if (stored ? random.Next(20) == 0 : random.Next(3) == 0) uis.Add(Ui(counter));
        }
        Shuffle(random, uis);
        var keepFrom = random.Next(6) == 0 ? model.First + (ulong)random.Next((int)(next - model.First) + 1) : 0;
        return Append(view, model.Next, intents, [.. uis], keepFrom);
    }

    private static void Shuffle<T>(Random random, List<T> list)
    {
        for (var i = list.Count - 1; i > 0; i--)
        {
            var j = random.Next(i + 1);
            (list[i], list[j]) = (list[j], list[i]);
        }
    }
}
