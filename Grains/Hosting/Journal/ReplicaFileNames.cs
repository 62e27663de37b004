using System.Globalization;
using System.Security.Cryptography;

namespace MinBft.Hosting.Journal;

/// <summary>How a replica's files (journal, checkpoint snapshots) are named after its grain id.</summary>
internal static class ReplicaFileNames
{
    /// <summary>Readable, and distinct for distinct grain ids: the id's safe characters, then a hash
    /// of the whole id.</summary>
    public static string Stem(string grainName)
    {
        var safe = new System.Text.StringBuilder(grainName.Length);
        foreach (var c in grainName) safe.Append(char.IsAsciiLetterOrDigit(c) || c is '-' or '.' ? c : '_');
        var hash = Convert.ToHexStringLower(SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(grainName)).AsSpan(0, 6));
        return string.Create(CultureInfo.InvariantCulture, $"{safe}-{hash}");
    }
}
