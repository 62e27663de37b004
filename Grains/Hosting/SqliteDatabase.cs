using System.Globalization;
using Microsoft.Data.Sqlite;

namespace MinBft.Hosting;

/// <summary>How MinBFT opens its SQLite files: WAL, synchronous=FULL, owner-only directory.</summary>
internal static class SqliteDatabase
{
    /// <summary>
    /// Opens (creating it and its directory if missing) the database at <paramref name="path"/>
    /// in WAL mode with synchronous=FULL, so that a committed transaction has been flushed to
    /// disk; throws if the file refuses either (the durability argument assumes both).
    /// </summary>
    public static SqliteConnection Open(string path, TimeSpan busyTimeout)
    {
        var directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        if (OperatingSystem.IsWindows())
        {
            Directory.CreateDirectory(directory);
        }
        else
        {
            // Another fault domain's silos (other users) have no business reading this store.
            Directory.CreateDirectory(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }

        var connectionString = new SqliteConnectionStringBuilder
        {
            DataSource = path,
            Mode = SqliteOpenMode.ReadWriteCreate,

            // The owner holds its connection for its lifetime; pooling would only keep the file
            // open after Dispose.
            Pooling = false,
            DefaultTimeout = (int)Math.Ceiling(busyTimeout.TotalSeconds),
        }.ToString();

        var connection = new SqliteConnection(connectionString);
        try
        {
            connection.Open();
            using (var pragma = connection.CreateCommand())
            {
                pragma.CommandText = string.Create(
                    CultureInfo.InvariantCulture,
                    $"PRAGMA busy_timeout = {(long)busyTimeout.TotalMilliseconds}; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;");
                pragma.ExecuteNonQuery();
            }

            using (var check = connection.CreateCommand())
            {
                // journal_mode silently stays as it was when WAL is unavailable (e.g. some network
                // file systems); refuse to run without it.
                check.CommandText = "PRAGMA journal_mode";
                var mode = check.ExecuteScalar() as string;
                if (!string.Equals(mode, "wal", StringComparison.OrdinalIgnoreCase))
                {
                    throw new InvalidOperationException($"SQLite database {path} could not switch to WAL mode (mode is '{mode}').");
                }

                check.CommandText = "PRAGMA synchronous";
                if (check.ExecuteScalar() is not long synchronous || synchronous != 2)
                {
                    throw new InvalidOperationException($"SQLite database {path} did not accept synchronous=FULL.");
                }
            }
        }
        catch
        {
            connection.Dispose();
            throw;
        }

        return connection;
    }
}
