using MinBft.Messages;
using Orleans.Concurrency;

namespace MinBft;

/// <summary>
/// A client's way into the cluster; one per client SDK instance (any key: requests name it in
/// <see cref="Request.ReplyTo"/>, so replicas send their replies to it), serving all of that
/// instance's client identities. It sends each signed request to the primary, retransmits it to
/// every replica while replies are missing, and returns f+1 matching signed replies. Requests and
/// replies travel in batches: one call per replica for the requests gathered meanwhile, one call
/// per replica for an executed batch's replies. It is not trusted: the client SDK verifies every
/// returned reply itself.
/// </summary>
public interface IClientProxyGrain : IGrainWithStringKey
{
    /// <summary>
    /// Send the request and wait for f+1 replies with equal results from distinct replicas
    /// (signatures checked). Throws <see cref="ArgumentException"/> for a malformed or unsigned
    /// request, <see cref="InvalidOperationException"/> when too many requests are in flight at
    /// this proxy, and <see cref="TimeoutException"/> when the
    /// replies do not arrive within <paramref name="timeout"/> (or the proxy's silo shuts down
    /// meanwhile). After a timeout, send the same request again: replicas execute a seq at most
    /// once and answer a repeated one from their reply cache.
    /// </summary>
    Task<Reply[]> Execute(Request request, TimeSpan timeout);

    /// <summary>
    /// Relays the client's session offer to every replica and returns the accepts that came
    /// back within <paramref name="timeout"/> (the client checks each replica's signature).
    /// </summary>
    Task<ClientSessionAccept[]> OpenSessions(ClientSessionOffer offer, TimeSpan timeout);

    /// <summary>A replica's replies to requests sent through this proxy (one executed batch's, or
    /// resent ones), at most <see cref="MinBft.Encoding.MessageLimits.MaxRepliesPerDelivery"/>.</summary>
    [OneWay]
    Task DeliverReplies(Reply[] replies);

    /// <summary>Requests in flight and what happened to the replies received, for operators and tests.</summary>
    Task<ClientProxyStatus> GetStatus();
}

/// <param name="InFlight">Requests waiting for their f+1 matching replies.</param>
/// <param name="Completed">Requests answered with f+1 matching replies since activation.</param>
/// <param name="RepliesAccepted">Replies that verified and were counted.</param>
/// <param name="RepliesIgnored">Replies dropped by reason: Malformed, UnknownReplica,
/// WrongRequest (a result for another operation under this seq), InvalidSignature, NotPending
/// (late, or no such client and seq in flight here), DuplicateReplica.</param>
[GenerateSerializer, Immutable, Alias("minbft.ClientProxyStatus")]
public sealed record ClientProxyStatus(
    [property: Id(0)] int InFlight,
    [property: Id(1)] long Completed,
    [property: Id(2)] long RepliesAccepted,
    [property: Id(3)] Dictionary<string, long> RepliesIgnored);
