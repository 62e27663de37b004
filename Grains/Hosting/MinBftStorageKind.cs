namespace MinBft.Hosting;

/// <summary>Which store backs a fault domain's grain storage provider "minbft" (<see cref="MinBftOptions.Storage"/>).</summary>
public enum MinBftStorageKind
{
    /// <summary>An embedded SQLite file in <see cref="MinBftOptions.DataDirectory"/> (the default).</summary>
    Sqlite,

    /// <summary>The fault domain's own Redis server, <see cref="MinBftOptions.RedisStorage"/> (official Orleans Redis grain storage).</summary>
    Redis,
}
