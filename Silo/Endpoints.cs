using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Net;

namespace MinBft.Silo;

internal static class Endpoints
{
    /// <summary>"ip:port", "[ipv6]:port" or "localhost:port".</summary>
    public static bool TryParse(string? text, [NotNullWhen(true)] out IPEndPoint? endpoint)
    {
        endpoint = null;
        if (string.IsNullOrWhiteSpace(text)) return false;
        var colon = text.LastIndexOf(':');
        if (colon > 0 && text[..colon].Equals("localhost", StringComparison.OrdinalIgnoreCase))
        {
            if (!int.TryParse(text[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535) return false;
            endpoint = new IPEndPoint(IPAddress.Loopback, port);
            return true;
        }
        return IPEndPoint.TryParse(text, out endpoint) && endpoint.Port > 0 && text.Contains(':', StringComparison.Ordinal);
    }
}
