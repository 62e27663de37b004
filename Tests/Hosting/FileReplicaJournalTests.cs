using Microsoft.Extensions.Logging.Abstractions;
using MinBft.Hosting.Journal;
using MinBft.Messages;
using Orleans.Runtime;
using Xunit.Abstractions;
using static MinBft.Tests.Hosting.JournalKit;

namespace MinBft.Tests.Hosting;

/// <summary>
/// <see cref="FileReplicaJournal"/> beyond the contract: its files, what a write appends, torn
/// writes at every byte, a failed sync, compaction, and the move from an earlier build's SQLite journal.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class FileReplicaJournalTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Each_replica_has_a_file_of_its_own_in_the_domains_journal_directory()
    {
        await using var store = new FileJournalBackend();
        var journal = store.CreateFile();
        await journal.OpenAsync();
        var other = store.Factory.Create(GrainId.Create("replica", "1/x"));

        Assert.Equal(Path.Combine(Path.GetFullPath(store.Directory), "minbft-domain-0-journal"), Path.GetDirectoryName(journal.FilePath));
        Assert.StartsWith("replica_1-", Path.GetFileName(journal.FilePath), StringComparison.Ordinal);
        Assert.NotEqual(journal.FilePath, ((FileReplicaJournal)other).FilePath);
        Assert.True(File.Exists(journal.FilePath));
        Assert.True(File.Exists(journal.FilePath + ".owner"));
        await other.DisposeAsync();
    }

    [Fact]
    public async Task A_write_appends_what_it_writes_however_much_is_stored()
    {
        await using var store = new FileJournalBackend();
        var journal = store.CreateFile();
        await journal.OpenAsync();
        var growth = new List<long>();
        ulong next = 1;
        for (var i = 0; i < 200; i++)
        {
            var before = journal.End;
            await journal.AppendAsync(Append(0, next, Intents(next, 1), next > 1 ? [Ui(next - 1)] : []));
            next++;
            growth.Add(journal.End - before);
        }

        // The 200th write adds as many bytes as the 2nd: one frame of one intent and one UI.
        Assert.InRange(growth[^1], growth[1] - 16, growth[1] + 16);
        Assert.InRange(growth[1], 200, 4096);
    }

    [Fact]
    public async Task Writes_land_in_zeros_written_ahead_so_the_file_grows_only_a_step_at_a_time()
    {
        const long step = 16 * 1024;
        await using var store = new FileJournalBackend(preallocationBytes: step);
        var journal = store.CreateFile();
        await journal.OpenAsync();
        var model = new JournalModel();
        var lengths = new List<long>();
        ulong next = 1;
        for (var i = 0; i < 120; i++)
        {
            var append = Append(0, next, Intents(next, 1, requests: 4), next > 1 ? [Ui(next - 1)] : []);
            await journal.AppendAsync(append);
            model.Append(append);
            next++;
            var length = new FileInfo(journal.FilePath).Length;
            Assert.True(length > journal.End, $"the file ({length} bytes) ends after its frames ({journal.End})");
            Assert.Equal(0, length % step);
            lengths.Add(length);
        }

        // Most writes changed no size: only the writes that crossed a step did.
        var grown = lengths.Zip(lengths.Skip(1), (a, b) => b != a).Count(changed => changed);
        output.WriteLine($"{journal.End} bytes of frames, the file grew {grown} times to {lengths[^1]} bytes");
        Assert.InRange(grown, 1, lengths.Count / 4);
        Assert.Equal((journal.End / step + 1) * step, lengths[^1]);
        var image = await File.ReadAllBytesAsync(journal.FilePath);
        Assert.All(image[(int)journal.End..], b => Assert.Equal(0, b));
        model.AssertMatches(await store.ReloadAsync());
    }

    [Fact]
    public async Task A_write_torn_anywhere_reads_back_as_the_writes_before_it_and_the_next_write_goes_on()
    {
        await using var store = new FileJournalBackend();
        var journal = store.CreateFile();
        await journal.OpenAsync();
        var model = new JournalModel();
        var first = Append(3, 1, Intents(1, 2), [Ui(1)]);
        await journal.AppendAsync(first);
        model.Append(first);
        var before = journal.End;
        await journal.AppendAsync(Append(4, 3, Intents(3, 2), [Ui(2), Ui(3)], keepFrom: 2));
        var end = journal.End;
        await journal.DisposeAsync();
        var file = await File.ReadAllBytesAsync(journal.FilePath);
        var whole = file[..(int)end];
        Assert.True(whole.Length > before);

        // Every byte of the frame's header and trailer, and every 13th byte between them.
        var length = whole.Length - (int)before;
        var cuts = Enumerable.Range(0, length).Where(i => i < 24 || i >= length - 8 || i % 13 == 0).Select(i => before + i).ToArray();
        var garbage = new Random(7);
        foreach (var cut in cuts)
        {
            // The crash wrote the frame up to cut; after it, the zeros written ahead, the file's end
            // (their write was lost too), or another torn write's remains.
            var image = whole[..(int)cut];
            if (cut % 3 == 1) image = [.. image, .. Filled(garbage.Next(1, 64), (ulong)cut, 1)];
            if (cut % 3 == 2) image = [.. image, .. new byte[file.Length - image.Length]];
            await File.WriteAllBytesAsync(journal.FilePath, image);

            var reopened = store.CreateFile();
            model.AssertMatches(await reopened.OpenAsync());
            Assert.All((await File.ReadAllBytesAsync(journal.FilePath))[(int)before..], b => Assert.Equal(0, b));
            await reopened.DisposeAsync();
        }

        // After the last torn image: the write goes on where the torn one was, and reads back.
        var journal2 = store.CreateFile();
        await journal2.OpenAsync();
        var next = Append(5, 3, Intents(3, 1, tag: 4));
        await journal2.AppendAsync(next);
        model.Append(next);
        model.AssertMatches(await store.ReloadAsync());
    }

    [Fact]
    public async Task The_remains_of_a_long_torn_write_are_zeroed_so_a_shorter_write_after_them_reads_back()
    {
        await using var store = new FileJournalBackend();
        var journal = store.CreateFile();
        await journal.OpenAsync();
        var model = new JournalModel();
        var first = Append(0, 1, Intents(1, 1));
        await journal.AppendAsync(first);
        model.Append(first);
        var before = journal.End;
        await journal.AppendAsync(Append(0, 2, Intents(2, 20, requests: 8)));
        var end = (int)journal.End;
        await journal.DisposeAsync();
        var whole = await File.ReadAllBytesAsync(journal.FilePath);
        whole.AsSpan(end - 10, 10).Clear(); // torn 10 bytes before its end, inside the zeros written ahead
        await File.WriteAllBytesAsync(journal.FilePath, whole);

        var reopened = store.CreateFile();
        model.AssertMatches(await reopened.OpenAsync());
        var image = await File.ReadAllBytesAsync(journal.FilePath);
        Assert.All(image[(int)before..], b => Assert.Equal(0, b));

        var shorter = Append(0, 2, Intents(2, 1, tag: 3), [Ui(2)]);
        await reopened.AppendAsync(shorter);
        model.Append(shorter);
        model.AssertMatches(await store.ReloadAsync());
    }

    [Fact]
    public async Task A_failed_sync_stops_every_write_until_the_journal_is_opened_again()
    {
        await using var store = new FileJournalBackend();
        var journal = store.CreateFile();
        await journal.OpenAsync();
        var model = new JournalModel();
        var first = Append(0, 1, Intents(1, 2));
        await journal.AppendAsync(first);
        model.Append(first);

        journal.FaultHook = point => { if (point == "before-sync") throw new IOException("injected: fsync returned EIO"); };
        var failed = Append(0, 3, Intents(3, 1));
        await Assert.ThrowsAsync<IOException>(() => journal.AppendAsync(failed));
        journal.FaultHook = null;
        // The kernel may have dropped the frame's pages: no write, not even the retry, is taken on trust.
        var refused = await Assert.ThrowsAsync<IOException>(() => journal.AppendAsync(failed));
        Assert.Contains("opened again", refused.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<IOException>(() => journal.RestartAtAsync(10));

        // Opened again, it reads what the file holds (here the frame reached it) and writes on.
        var contents = await journal.OpenAsync();
        model.Append(failed);
        model.AssertMatches(contents);
        var after = Append(1, 4, Intents(4, 1), [Ui(4)]);
        await journal.AppendAsync(after);
        model.Append(after);
        model.AssertMatches(await store.ReloadAsync());
    }

    [Fact]
    public async Task Compaction_keeps_the_live_entries_only_so_the_file_stays_bounded()
    {
        const long min = 16 * 1024, step = 4096;
        await using var store = new FileJournalBackend(min, step);
        var journal = store.CreateFile();
        await journal.OpenAsync();
        var model = new JournalModel();
        long largest = 0, appended = 0;
        ulong next = 1;
        for (var i = 0; i < 400; i++)
        {
            // About ten entries stay live: what a stable checkpoint leaves.
            var append = Append(i / 50, next, Intents(next, 1), [Ui(next)], keepFrom: next > 10 ? next - 10 : 0);
            var before = journal.End;
            await journal.AppendAsync(append);
            model.Append(append);
            next++;
            appended += Math.Max(0, journal.End - before);
            largest = Math.Max(largest, new FileInfo(journal.FilePath).Length);
        }

        output.WriteLine($"largest file {largest} bytes over {next - 1} appends of {appended} bytes");
        Assert.True(appended > 8 * min);
        Assert.InRange(largest, 1, min + 4096 + step);
        model.AssertMatches(await store.ReloadAsync());
    }

    [Fact]
    public async Task A_compaction_that_fails_before_its_rename_leaves_the_file_in_use_and_loses_nothing()
    {
        const long min = 8 * 1024;
        await using var store = new FileJournalBackend(min);
        var journal = store.CreateFile();
        await journal.OpenAsync();
        var model = new JournalModel();
        var failures = 0;
        journal.FaultHook = point =>
        {
            if (point != "before-rename") return;
            failures++;
            throw new IOException("injected: crash before the rename");
        };
        ulong next = 1;
        for (var i = 0; i < 60; i++)
        {
            var append = Append(0, next, Intents(next, 1), keepFrom: next > 4 ? next - 4 : 0);
            await journal.AppendAsync(append);
            model.Append(append);
            next++;
        }

        Assert.True(failures > 0);
        Assert.True(File.Exists(journal.FilePath + ".new"));
        model.AssertMatches(await store.ReloadAsync());

        // Once renames work again, the next compaction replaces the leftover and shrinks the file.
        journal.FaultHook = null;
        var grown = journal.End;
        var reopened = store.CreateFile();
        await reopened.OpenAsync();
        for (var i = 0; i < 60; i++)
        {
            var append = Append(0, next, Intents(next, 1), keepFrom: next - 4);
            await reopened.AppendAsync(append);
            model.Append(append);
            next++;
        }
        output.WriteLine($"{failures} failed compactions, the frames at {grown} bytes then, {reopened.End} after 60 more appends");
        Assert.True(reopened.End < grown);
        model.AssertMatches(await store.ReloadAsync());
    }

    [Fact]
    public async Task A_damaged_head_is_reported_not_read_as_an_empty_journal()
    {
        await using var store = new FileJournalBackend();
        var journal = store.CreateFile();
        await journal.OpenAsync();
        await journal.AppendAsync(Append(0, 1, Intents(1, 2)));
        await journal.DisposeAsync();
        var bytes = await File.ReadAllBytesAsync(journal.FilePath);
        bytes[20] ^= 0xFF;
        await File.WriteAllBytesAsync(journal.FilePath, bytes);

        var error = await Assert.ThrowsAsync<InvalidDataException>(() => store.Create().OpenAsync());
        Assert.Contains("head", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_journal_an_earlier_build_kept_in_sqlite_moves_into_the_file_once_and_is_then_refused_by_every_build()
    {
        await using var files = new FileJournalBackend();
        var sqlite = files.EarlierSqliteJournals;
        var model = new JournalModel();
        await using (var old = sqlite.Create(Replica))
        {
            await old.OpenAsync();
            foreach (var append in new[] { Append(2, 1, Intents(1, 3), [Ui(1), Ui(2)]), Append(3, 4, Intents(4, 2), [Ui(3)], keepFrom: 2) })
            {
                await old.AppendAsync(append);
                model.Append(append);
            }
        }

        var journal = files.CreateFile();
        model.AssertMatches(await journal.OpenAsync());
        // An older build started on this directory now stops at its journal instead of running on
        // one that lost the stream (what the SQLite journal of any build does with a damaged row).
        Assert.True(SqliteReplicaJournal.IsMarkedMoved(sqlite.DatabasePath, Replica.ToString(), TimeSpan.FromSeconds(5)));
        await using (var older = sqlite.Create(Replica))
        {
            var refused = await Assert.ThrowsAsync<InvalidDataException>(() => older.OpenAsync());
            Assert.Contains("counters [0, 0)", refused.Message, StringComparison.Ordinal);
        }

        var append2 = Append(3, model.Next, Intents(model.Next, 1), [Ui(4)]);
        await journal.AppendAsync(append2);
        model.Append(append2);
        // Opened again: the file, not the SQLite journal, is read.
        model.AssertMatches(await files.ReloadAsync());
    }

    [Fact]
    public async Task After_a_crash_between_the_move_and_the_mark_the_file_is_kept_and_the_sqlite_journal_marked()
    {
        await using var files = new FileJournalBackend();
        var sqlite = files.EarlierSqliteJournals;
        await using (var old = sqlite.Create(Replica))
        {
            await old.OpenAsync();
            await old.AppendAsync(Append(1, 1, Intents(1, 2, tag: 1)));
        }
        // The file already holds the moved stream and what followed it.
        var model = new JournalModel();
        var noMove = new FileReplicaJournalFactory(
            new FileReplicaJournalOptions { DataDirectory = files.Directory, FaultDomain = 0, MoveFromSqliteJournal = false }, Serializer, NullLoggerFactory.Instance);
        await using (var moved = noMove.Create(Replica))
        {
            await moved.OpenAsync();
            foreach (var append in new[] { Append(1, 1, Intents(1, 2, tag: 1)), Append(2, 3, Intents(3, 1), [Ui(3)]) })
            {
                await moved.AppendAsync(append);
                model.Append(append);
            }
        }

        model.AssertMatches(await files.ReloadAsync());
        Assert.True(SqliteReplicaJournal.IsMarkedMoved(sqlite.DatabasePath, Replica.ToString(), TimeSpan.FromSeconds(5)));
    }

    [Fact]
    public async Task A_file_lost_after_the_move_starts_empty_and_never_brings_the_moved_sqlite_journal_back()
    {
        await using var files = new FileJournalBackend();
        var sqlite = files.EarlierSqliteJournals;
        await using (var old = sqlite.Create(Replica))
        {
            await old.OpenAsync();
            await old.AppendAsync(Append(4, 1, Intents(1, 3), [Ui(1)]));
        }
        var journal = files.CreateFile();
        Assert.Equal(3, (await journal.OpenAsync()).Entries.Count);
        await journal.DisposeAsync();

        File.Delete(journal.FilePath);

        // Lost, as a lost SQLite journal was: the replica restarts its stream after its USIG's
        // counter (the gap recovery), never from the older copy of its stream.
        var contents = await files.ReloadAsync();
        Assert.Empty(contents.Entries);
        Assert.Equal(1UL, contents.FirstCounter);
    }
}
