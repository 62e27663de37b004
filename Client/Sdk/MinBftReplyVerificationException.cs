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

/// <summary>
/// The request met an Expired reply, proven by f+1 replicas: the cluster had evicted its
/// identity's client record (more than <c>maxClientRecords</c> other clients were active since
/// the identity's last request) while the request was on its way, and did not run it then. It may
/// have run before the eviction, so its outcome is unknown; read the state to find out before
/// retrying an operation that must not run twice. Later requests of the client run normally.
/// </summary>
public sealed class MinBftRequestExpiredException : MinBftException
{
    public MinBftRequestExpiredException(string clientId, ulong seq, ulong position)
        : base(string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"Request {seq} of client {(clientId.Length > 12 ? clientId[..12] : clientId)} expired at position {position}: the cluster evicted the identity's record while the request was in flight; it may or may not have executed before that"))
    {
        ClientId = clientId;
        Seq = seq;
        Position = position;
    }

    public string ClientId { get; }

    public ulong Seq { get; }

    /// <summary>The position in the replicated history the expiry was decided at.</summary>
    public ulong Position { get; }
}
