namespace MinBft.Client;

/// <summary>Base of the errors the MinBFT client SDK reports itself.</summary>
public class MinBftException : Exception
{
    public MinBftException(string message)
        : base(message)
    {
    }

    public MinBftException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>
/// The replies returned for a request do not prove a result: fewer than f+1 distinct replicas
/// sent a validly signed REPLY for this client and sequence number with one and the same
/// result. The client proxy and the transport are untrusted, so this is what a faulty proxy,
/// a faulty replica or a tampered message looks like to the client.
/// </summary>
public sealed class MinBftReplyVerificationException : MinBftException
{
    public MinBftReplyVerificationException(string clientId, ulong seq, int required, IReadOnlyList<string> problems)
        : base(FormatMessage(clientId, seq, required, problems))
    {
        ClientId = clientId;
        Seq = seq;
        Required = required;
        Problems = problems;
    }

    /// <summary>The client identity the request was sent under.</summary>
    public string ClientId { get; }

    /// <summary>The request's sequence number.</summary>
    public ulong Seq { get; }

    /// <summary>How many matching replies from distinct replicas were needed (f+1).</summary>
    public int Required { get; }

    /// <summary>Why replies were discarded, or why the valid ones did not suffice; one line each.</summary>
    public IReadOnlyList<string> Problems { get; }

    private static string FormatMessage(string clientId, ulong seq, int required, IReadOnlyList<string> problems)
    {
        var shortId = clientId.Length > 12 ? clientId[..12] : clientId;
        var reasons = problems.Count == 0 ? "no replies" : string.Join("; ", problems);
        return $"Replies for request {seq} of client {shortId} do not prove a result ({required} matching replies from distinct replicas needed): {reasons}.";
    }
}
