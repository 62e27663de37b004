namespace MinBft.Protocol;

/// <summary>A protocol invariant does not hold: a bug in the core or its host, never bad input.</summary>
public sealed class ProtocolInvariantException(string message) : Exception(message)
{
    /// <summary>Surface a violated invariant loudly, the way TigerBeetle asserts.</summary>
    public static void Check(bool condition, string invariant)
    {
        if (!condition) throw new ProtocolInvariantException("MinBFT invariant violated: " + invariant);
    }
}
