using StackExchange.Redis;

namespace MinBft.Hosting;

/// <summary>Checks the Redis connection strings of the options, with errors that name the setting.</summary>
public static class RedisConnection
{
    /// <summary>
    /// Parses a StackExchange.Redis connection string ("host:port[,option=value...]"). Throws
    /// <see cref="ArgumentException"/> naming <paramref name="setting"/> when it is missing or
    /// invalid. The message never repeats the string (it may hold a password).
    /// </summary>
    public static ConfigurationOptions Parse(string? connectionString, string setting)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(setting);
        if (string.IsNullOrWhiteSpace(connectionString))
            throw new ArgumentException($"{setting} is required: the Redis connection string (host:port[,option=value...])");
        ConfigurationOptions options;
        try
        {
            options = ConfigurationOptions.Parse(connectionString);
        }
        catch (Exception e) when (e is ArgumentException or FormatException)
        {
            throw new ArgumentException($"{setting} is not a valid Redis connection string (host:port[,option=value...]): {e.Message}", e);
        }
        if (options.EndPoints.Count == 0)
            throw new ArgumentException($"{setting} names no Redis server (host:port)");
        return options;
    }
}
