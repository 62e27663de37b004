using System.Globalization;
using Orleans;
using Orleans.Storage;

namespace MinBft.Hosting;

/// <summary>Options of <see cref="SqliteGrainStorage"/>, named after the storage provider.</summary>
public sealed class SqliteGrainStorageOptions
{
    /// <summary>Directory holding the database files; created (owner-only on Unix) if missing.</summary>
    public string DataDirectory { get; set; } = "minbft-data";

    /// <summary>Start of the database file name; the fault domain is appended to it.</summary>
    public string FileNamePrefix { get; set; } = "minbft";

    /// <summary>
    /// The fault domain whose store this is. Null means: the silo's
    /// <see cref="FaultDomainOptions.FaultDomain"/>, which <c>AddMinBftFaultDomain</c> sets.
    /// </summary>
    public int? FaultDomain { get; set; }

    /// <summary>
    /// How states are turned into bytes. Null means the Orleans serializer, so state types use
    /// the same <c>[GenerateSerializer]</c> contracts, version tolerance included, as messages.
    /// </summary>
    public IGrainStorageSerializer? GrainStorageSerializer { get; set; }

    /// <summary>
    /// How long a statement waits for another connection's lock on the same file (another silo
    /// of the same fault domain, or a second provider instance) before failing.
    /// </summary>
    public TimeSpan BusyTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>The silo lifecycle stage at which the database is opened.</summary>
    public int InitStage { get; set; } = ServiceLifecycleStage.ApplicationServices;

    /// <summary>The database file of <paramref name="faultDomain"/>: one file per fault domain.</summary>
    public string GetDatabasePath(int faultDomain) =>
        Path.Combine(DataDirectory, string.Create(CultureInfo.InvariantCulture, $"{FileNamePrefix}-domain-{faultDomain}.db"));
}
