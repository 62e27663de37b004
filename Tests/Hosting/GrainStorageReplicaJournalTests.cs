using MinBft.Hosting.Journal;
using MinBft.Messages;
using MinBft.Tests.Integration;
using Orleans.Storage;
using static MinBft.Tests.Hosting.JournalKit;

namespace MinBft.Tests.Hosting;

/// <summary>
/// <see cref="GrainStorageReplicaJournal"/> beyond the contract: what it writes, how it trims,
/// and how it resolves writes whose outcome it could not see. The store is the project's
/// SQLite grain storage behind a <see cref="FaultyGrainStorage"/> that records and fails calls.
/// </summary>
public sealed class GrainStorageReplicaJournalTests(RedisStorageFixture redis) : IClassFixture<RedisStorageFixture>
{
    private static bool IsRecord(string stateName) => stateName.StartsWith("journal-", StringComparison.Ordinal) && stateName != "journal-head";

    [Fact]
    public async Task An_append_writes_one_record_holding_only_what_it_appends_however_much_is_stored()
    {
        await using var store = new GrainStorageJournalBackend(trimRecords: 10_000);
        var journal = store.CreateJournal();
        await journal.OpenAsync();
        ulong next = 1;
        for (var i = 0; i < 100; i++)
        {
            await journal.AppendAsync(Append(0, next, Intents(next, 3), next > 1 ? [Ui(next - 1)] : []));
            next += 3;
        }

        foreach (var stored in new[] { 300, 303 })
        {
            Assert.Equal((ulong)stored + 1, next);
            store.Storage.ResetCalls();
            await journal.AppendAsync(Append(0, next, Intents(next, 3), [Ui(next - 2), Ui(next - 3)]));
            next += 3;

            var call = Assert.Single(store.Storage.Calls);
            Assert.Equal("write", call.Operation);
            Assert.Equal(GrainStorageReplicaJournal.RecordName(journal.NextRecord - 1), call.StateName);
            var record = Assert.IsType<JournalRecord>(call.State);
            Assert.Equal(JournalRecordKind.Append, record.Kind);
            Assert.Equal(3, record.Intents.Length);
            Assert.Equal([next - 5, next - 6], record.Uis.Select(u => u.Counter));
        }
    }

    [Fact]
    public async Task Opening_reads_up_to_the_first_missing_record_and_claims_it_with_an_open_record_and_the_head()
    {
        await using var store = new GrainStorageJournalBackend(trimRecords: 10_000);
        var first = store.CreateJournal();
        await first.OpenAsync();
        for (ulong c = 1; c <= 5; c++) await first.AppendAsync(Append(0, c, Intents(c, 1)));
        Assert.Equal(6, first.NextRecord); // its open record 0, then 1..5

        store.Storage.ResetCalls();
        var second = store.CreateJournal();
        await second.OpenAsync();

        var writes = store.Storage.Writes();
        Assert.Equal([GrainStorageReplicaJournal.RecordName(6), "journal-head"], writes.Select(w => w.StateName));
        Assert.Equal(JournalRecordKind.Open, Assert.IsType<JournalRecord>(writes[0].State).Kind);
        Assert.Equal(6, Assert.IsType<JournalHead>(writes[1].State).Owner);
        Assert.Equal(7, second.NextRecord);
    }

    [Fact]
    public async Task Trimming_moves_the_head_and_deletes_the_records_before_it_except_open_records()
    {
        await using var store = new GrainStorageJournalBackend(trimRecords: 4);
        var journal = store.CreateJournal();
        await journal.OpenAsync();
        ulong next = 1;
        for (var i = 0; i < 20; i++)
        {
            // Each append certifies the previous one and keeps only from it on.
            await journal.AppendAsync(Append(0, next, Intents(next, 2), next > 1 ? [Ui(next - 2), Ui(next - 1)] : [], keepFrom: next > 1 ? next - 2 : 0));
            next += 2;
        }

        Assert.True(journal.FirstRecord >= 16, $"the head should have moved well past the first records, is at {journal.FirstRecord}");
        await journal.WhenDeletedAsync();
        for (long index = 0; index < journal.FirstRecord; index++)
        {
            var record = await store.Storage.ReadRecordAsync(index);
            Assert.Equal(index == 0, record.RecordExists); // only the open record stays
        }
        for (var index = journal.FirstRecord; index < journal.NextRecord; index++)
            Assert.True((await store.Storage.ReadRecordAsync(index)).RecordExists, $"record {index} after the head is missing");

        var contents = await store.ReloadAsync();
        Assert.Equal(next - 4, contents.FirstCounter);
        Assert.Equal(4, contents.Entries.Count);
    }

    [Fact]
    public async Task A_write_that_failed_after_landing_is_found_and_a_retry_writes_only_the_rest()
    {
        await using var store = new GrainStorageJournalBackend();
        var journal = store.CreateJournal();
        await journal.OpenAsync();
        var failed = Append(0, 1, Intents(1, 2), []);
        store.Storage.FailNextWrite(WriteFailure.After, IsRecord);
        await Assert.ThrowsAsync<IOException>(() => journal.AppendAsync(failed));

        store.Storage.ResetCalls();
        var retry = Append(0, 1, [.. failed.Intents, Intent(3)], [Ui(1)]);
        await journal.AppendAsync(retry);

        var record = Assert.IsType<JournalRecord>(store.Storage.Writes().Single().State);
        Assert.Equal(3UL, record.FirstIntentCounter);
        Assert.Single(record.Intents);
        var model = new JournalModel();
        model.Append(retry);
        model.AssertMatches(await store.ReloadAsync());
    }

    [Fact]
    public async Task Retries_that_each_land_and_fail_are_rebased_past_every_landed_write_and_store_each_intent_once()
    {
        // Found by StorageFaultTests: the first retry landed (the rest of the append) and failed
        // too; the second retry still repeats the first call's intents, which the journal must
        // recognise as stored by the first attempt, not refuse as out of order.
        await using var store = new GrainStorageJournalBackend();
        var journal = store.CreateJournal();
        await journal.OpenAsync();
        var failed = Append(0, 1, Intents(1, 2), []);
        store.Storage.FailNextWrite(WriteFailure.After, IsRecord);
        await Assert.ThrowsAsync<IOException>(() => journal.AppendAsync(failed));
        var retry = Append(0, 1, [.. failed.Intents, Intent(3)], [Ui(1)]);
        store.Storage.FailNextWrite(WriteFailure.After, IsRecord);
        await Assert.ThrowsAsync<IOException>(() => journal.AppendAsync(retry));

        var again = Append(0, 1, [.. retry.Intents, Intent(4)], [Ui(1), Ui(2)]);
        store.Storage.ResetCalls();
        await journal.AppendAsync(again);
        var record = Assert.IsType<JournalRecord>(store.Storage.Writes().Single().State);
        Assert.Equal(4UL, record.FirstIntentCounter);
        Assert.Single(record.Intents);

        // A call that succeeds ends the failed sequence: the next append starts where the journal is.
        await journal.AppendAsync(Append(0, 5, Intents(5, 1)));
        var model = new JournalModel();
        model.Append(again);
        model.Append(Append(0, 5, Intents(5, 1)));
        model.AssertMatches(await store.ReloadAsync());
    }

    [Fact]
    public async Task A_write_that_failed_before_landing_is_written_whole_by_the_retry()
    {
        await using var store = new GrainStorageJournalBackend();
        var journal = store.CreateJournal();
        await journal.OpenAsync();
        var append = Append(0, 1, Intents(1, 2), [Ui(1)]);
        store.Storage.FailNextWrite(WriteFailure.Before, IsRecord);
        await Assert.ThrowsAsync<IOException>(() => journal.AppendAsync(append));
        // Nothing of it is stored: the append is one record, and the record is not there.
        Assert.False((await store.Storage.ReadRecordAsync(journal.NextRecord)).RecordExists);

        await journal.AppendAsync(append);

        var model = new JournalModel();
        model.Append(append);
        model.AssertMatches(await store.ReloadAsync());
    }

    [Fact]
    public async Task A_retry_after_a_failed_write_that_landed_must_repeat_its_intents()
    {
        await using var store = new GrainStorageJournalBackend();
        var journal = store.CreateJournal();
        await journal.OpenAsync();
        var failed = Append(0, 1, Intents(1, 2));
        store.Storage.FailNextWrite(WriteFailure.After, IsRecord);
        await Assert.ThrowsAsync<IOException>(() => journal.AppendAsync(failed));

        var error = await Assert.ThrowsAsync<ArgumentException>(() => journal.AppendAsync(Append(0, 1, Intents(1, 2, tag: 5))));
        Assert.Contains("retry", error.Message, StringComparison.Ordinal);

        // The landed write stands; appending after it works.
        await journal.AppendAsync(Append(0, 3, Intents(3, 1)));
        var model = new JournalModel();
        model.Append(failed);
        model.Append(Append(0, 3, Intents(3, 1)));
        model.AssertMatches(await store.ReloadAsync());
    }

    [Fact]
    public async Task A_failed_write_that_lands_late_under_the_retry_is_found_and_the_retry_goes_after_it()
    {
        await using var store = new GrainStorageJournalBackend();
        var journal = store.CreateJournal();
        await journal.OpenAsync();
        var failed = Append(0, 1, Intents(1, 2));
        store.Storage.FailNextWrite(WriteFailure.Delayed, IsRecord);
        await Assert.ThrowsAsync<TimeoutException>(() => journal.AppendAsync(failed));

        // The timed-out write reaches the store just before the retry's write (same record).
        var landed = false;
        store.Storage.BeforeWrite = async name =>
        {
            if (landed || !IsRecord(name)) return;
            landed = true;
            await store.Storage.LandDelayedAsync();
        };
        var retry = Append(0, 1, [.. failed.Intents, Intent(3)], [Ui(2)]);
        await journal.AppendAsync(retry);

        Assert.True(landed);
        var model = new JournalModel();
        model.Append(retry);
        model.AssertMatches(await store.ReloadAsync());
    }

    [Fact]
    public async Task A_stale_owner_whose_failed_write_landed_is_fenced_when_it_retries_after_another_open()
    {
        await using var store = new GrainStorageJournalBackend();
        var stale = store.CreateJournal();
        await stale.OpenAsync();
        var failed = Append(0, 1, Intents(1, 2));
        store.Storage.FailNextWrite(WriteFailure.After, IsRecord);
        await Assert.ThrowsAsync<IOException>(() => stale.AppendAsync(failed));

        var current = store.CreateJournal();
        Assert.Equal(2, (await current.OpenAsync()).Entries.Count);

        await Assert.ThrowsAsync<InconsistentStateException>(() => stale.AppendAsync(Append(0, 1, [.. failed.Intents, Intent(3, tag: 7)])));

        await current.AppendAsync(Append(0, 3, Intents(3, 1)));
        var model = new JournalModel();
        model.Append(failed);
        model.Append(Append(0, 3, Intents(3, 1)));
        model.AssertMatches(await store.ReloadAsync());
    }

    [Fact]
    public async Task Overlapping_calls_are_refused_and_the_call_in_flight_completes()
    {
        await using var store = new GrainStorageJournalBackend();
        var journal = store.CreateJournal();
        await journal.OpenAsync();
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        store.Storage.BeforeWrite = _ => release.Task;

        var inFlight = journal.AppendAsync(Append(0, 1, Intents(1, 1)));
        Assert.False(inFlight.IsCompleted);
        await Assert.ThrowsAsync<InvalidOperationException>(() => journal.AppendAsync(Append(0, 2, Intents(2, 1))));
        release.SetResult();
        await inFlight;

        store.Storage.BeforeWrite = null;
        Assert.Single((await store.ReloadAsync()).Entries);
    }

    [Fact]
    public async Task A_failed_head_write_leaves_the_append_durable_and_records_are_dropped_at_a_later_trim()
    {
        await using var store = new GrainStorageJournalBackend(trimRecords: 2);
        var journal = store.CreateJournal();
        await journal.OpenAsync();
        await journal.AppendAsync(Append(0, 1, Intents(1, 2), [Ui(1), Ui(2)]));
        store.Storage.FailNextWrite(WriteFailure.Before, name => name == "journal-head");

        // This append makes records 0 and 1 droppable: the head write fails, the append stands.
        await journal.AppendAsync(Append(0, 3, Intents(3, 1), keepFrom: 3));
        Assert.Equal(0, journal.FirstRecord);
        await journal.AppendAsync(Append(0, 4, Intents(4, 1), [Ui(3)], keepFrom: 4));

        Assert.Equal(3, journal.FirstRecord);
        await journal.WhenDeletedAsync();
        Assert.False((await store.Storage.ReadRecordAsync(1)).RecordExists);
        var contents = await store.ReloadAsync();
        Assert.Equal(4UL, contents.FirstCounter);
        Assert.Single(contents.Entries);
    }

    [Fact]
    public async Task Deletions_an_interrupted_trim_left_behind_are_finished_by_a_later_trim_after_reopening()
    {
        await using var store = new GrainStorageJournalBackend(trimRecords: 2);
        var journal = store.CreateJournal();
        await journal.OpenAsync();
        store.Storage.FailClears = _ => true;
        ulong next = 1;
        for (var i = 0; i < 6; i++)
        {
            await journal.AppendAsync(Append(0, next, Intents(next, 1), next > 1 ? [Ui(next - 1)] : [], keepFrom: next));
            next++;
        }
        var head = journal.FirstRecord;
        Assert.True(head >= 4);
        await journal.WhenDeletedAsync();
        Assert.True((await store.Storage.ReadRecordAsync(1)).RecordExists, "deletes failed, so the records are still there");

        store.Storage.FailClears = null;
        var reopened = store.CreateJournal();
        await reopened.OpenAsync();
        for (var i = 0; i < 4; i++)
        {
            await reopened.AppendAsync(Append(0, next, Intents(next, 1), [Ui(next - 1)], keepFrom: next));
            next++;
        }

        Assert.True(reopened.FirstRecord > head);
        await reopened.WhenDeletedAsync();
        for (long index = 0; index < reopened.FirstRecord; index++)
        {
            var record = await store.Storage.ReadRecordAsync(index);
            var isOpen = record.RecordExists && record.State!.Kind == JournalRecordKind.Open;
            Assert.True(!record.RecordExists || isOpen, $"record {index} below the head was not deleted");
        }
    }

    [RedisFact]
    public async Task On_redis_trimmed_records_are_deleted_not_left_as_tombstones()
    {
        await using var store = new RedisJournalBackend(redis.ConnectionString);
        var journal = store.Create();
        await journal.OpenAsync();
        ulong next = 1;
        for (var i = 0; i < 60; i++)
        {
            await journal.AppendAsync(Append(0, next, Intents(next, 1), next > 1 ? [Ui(next - 1)] : [], keepFrom: next));
            next++;
        }

        await ((GrainStorageReplicaJournal)journal).WhenDeletedAsync();
        // The head, the open record and fewer than two trim batches of live records.
        var keys = await store.KeysAsync();
        Assert.InRange(keys.Count, 3, 2 + (2 * 4));
        var contents = await store.ReloadAsync();
        Assert.Equal(60UL, contents.FirstCounter);
        Assert.Single(contents.Entries);
    }
}
