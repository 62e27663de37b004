using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;
using MinBft.Hosting;
using MinBft.Hosting.Journal;
using static MinBft.Tests.Hosting.JournalKit;

namespace MinBft.Tests.Hosting;

/// <summary><see cref="SqliteReplicaJournal"/> beyond the contract: its file, what a write changes, and crashes inside a write.</summary>
public sealed class SqliteReplicaJournalTests
{
    [Fact]
    public async Task The_journal_has_a_file_of_its_own_next_to_the_domains_grain_storage_file_in_wal_mode()
    {
        await using var store = new SqliteJournalBackend();
        var journal = store.CreateSqlite();
        await journal.OpenAsync();

        Assert.Equal(Path.Combine(store.Directory, "minbft-domain-0-journal.db"), journal.DatabasePath);
        var storageFile = Path.GetFullPath(new SqliteGrainStorageOptions { DataDirectory = store.Directory }.GetDatabasePath(0));
        Assert.Equal(Path.GetDirectoryName(storageFile), Path.GetDirectoryName(journal.DatabasePath));
        Assert.NotEqual(storageFile, journal.DatabasePath);
        using var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = journal.DatabasePath, Pooling = false }.ToString());
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "PRAGMA journal_mode";
        Assert.Equal("wal", command.ExecuteScalar() as string);
    }

    [Fact]
    public async Task An_append_changes_one_row_per_intent_and_per_new_ui_plus_the_journal_row_however_much_is_stored()
    {
        await using var store = new SqliteJournalBackend();
        var journal = store.CreateSqlite();
        await journal.OpenAsync();
        ulong next = 1;
        for (var i = 0; i < 100; i++)
        {
            await journal.AppendAsync(Append(0, next, Intents(next, 5), next > 1 ? [Ui(next - 5)] : []));
            next += 5;
        }

        foreach (var stored in new[] { 500, 503 })
        {
            Assert.Equal((ulong)stored + 1, next);
            var before = journal.TotalChanges();
            // 3 intents, 2 new UIs and one repeated (skipped): 3 + 2 + 1 rows.
            await journal.AppendAsync(Append(0, next, Intents(next, 3), [Ui(next - 1), Ui(next - 2), Ui(next - 1)]));
            next += 3;
            Assert.Equal(6, journal.TotalChanges() - before);
        }

        // Trimming deletes exactly the rows below the new first counter.
        var beforeTrim = journal.TotalChanges();
        await journal.AppendAsync(Append(0, next, Intents(next, 1), keepFrom: 11));
        Assert.Equal(1 + 1 + 10, journal.TotalChanges() - beforeTrim);
    }

    [Fact]
    public async Task A_crash_image_taken_inside_the_transaction_holds_none_of_the_append_and_the_retry_stores_it()
    {
        await using var store = new SqliteJournalBackend();
        var journal = store.CreateSqlite();
        await journal.OpenAsync();
        var model = new JournalModel();
        var first = Append(1, 1, Intents(1, 3), [Ui(1)]);
        await journal.AppendAsync(first);
        model.Append(first);
        var walBefore = new FileInfo(journal.DatabasePath + "-wal").Length;

        // Large enough (about 3 MB) that SQLite spills uncommitted pages into the WAL before COMMIT.
        var big = Append(2, 4, Intents(4, 200, requests: 64), [Ui(2), Ui(3)], keepFrom: 2);
        var crash = Path.Combine(store.Directory, "crash");
        long walAtCrash = 0;
        journal.FaultHook = point =>
        {
            if (point != "before-commit") return;
            Directory.CreateDirectory(crash);
            // What the disk holds if the machine stopped now (the -shm index is rebuilt on open).
            File.Copy(journal.DatabasePath, Path.Combine(crash, Path.GetFileName(journal.DatabasePath)));
            File.Copy(journal.DatabasePath + "-wal", Path.Combine(crash, Path.GetFileName(journal.DatabasePath) + "-wal"));
            walAtCrash = new FileInfo(journal.DatabasePath + "-wal").Length;
            throw new IOException("crash inside the transaction");
        };
        await Assert.ThrowsAsync<IOException>(() => journal.AppendAsync(big));
        journal.FaultHook = null;

        Assert.True(walAtCrash > walBefore + (1 << 20), $"the test needs uncommitted frames in the WAL (before {walBefore}, at the crash {walAtCrash})");
        var image = new SqliteReplicaJournal(
            Path.Combine(crash, Path.GetFileName(journal.DatabasePath)), Replica.ToString(), Serializer, TimeSpan.FromSeconds(5), NullLogger<SqliteReplicaJournal>.Instance);
        await using (image)
        {
            model.AssertMatches(await image.OpenAsync());
        }
        // The live file rolled back too (read without taking the journal over).
        Assert.Equal(4L, NextCounterOnDisk(journal.DatabasePath));

        // The same instance retries: it finds the failed attempt did not land and writes it whole.
        await journal.AppendAsync(big);
        model.Append(big);
        model.AssertMatches(await store.ReloadAsync());
    }

    private static long NextCounterOnDisk(string path)
    {
        using var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = path, Pooling = false, Mode = SqliteOpenMode.ReadOnly }.ToString());
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT next_counter FROM journal";
        return (long)command.ExecuteScalar()!;
    }

    [Fact]
    public async Task A_commit_reported_as_failed_is_found_and_a_retry_writes_only_the_rest()
    {
        await using var store = new SqliteJournalBackend();
        var journal = store.CreateSqlite();
        await journal.OpenAsync();
        var failed = Append(0, 1, Intents(1, 2));
        journal.FaultHook = point =>
        {
            if (point == "after-commit") throw new IOException("the commit's outcome was lost");
        };
        await Assert.ThrowsAsync<IOException>(() => journal.AppendAsync(failed));
        journal.FaultHook = null;

        var before = journal.TotalChanges();
        var retry = Append(0, 1, [.. failed.Intents, Intent(3)], [Ui(1)]);
        await journal.AppendAsync(retry);

        Assert.Equal(1 + 1 + 1, journal.TotalChanges() - before); // intent 3, UI 1, the journal row
        var model = new JournalModel();
        model.Append(retry);
        model.AssertMatches(await store.ReloadAsync());
    }

    [Fact]
    public async Task Overlapping_calls_are_refused_and_the_call_in_flight_completes()
    {
        await using var store = new SqliteJournalBackend();
        var journal = store.CreateSqlite();
        await journal.OpenAsync();
        using var inTransaction = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        journal.FaultHook = point =>
        {
            if (point != "before-commit") return;
            inTransaction.Set();
            release.Wait(TimeSpan.FromSeconds(30));
        };

        var inFlight = journal.AppendAsync(Append(0, 1, Intents(1, 1)));
        Assert.True(inTransaction.Wait(TimeSpan.FromSeconds(30)));
        await Assert.ThrowsAsync<InvalidOperationException>(() => journal.AppendAsync(Append(0, 2, Intents(2, 1))));
        release.Set();
        await inFlight;
        journal.FaultHook = null;

        Assert.Single((await store.ReloadAsync()).Entries);
    }
}
