using MinBft.Messages;
using Orleans.Concurrency;

namespace MinBft;

/// <summary>
/// A client's way into the cluster; one per client SDK instance (any key: requests name it in
/// <see cref="Request.ReplyTo"/>, so replicas send their replies to it), serving all of that
/// instance's client identities. It sends each signed request to the primary, retransmits it to
/// every replica while replies are missing, and reports f+1 matching signed replies. Everything
/// travels in batches: the SDK submits the requests it gathered in one call, the proxy sends one
/// call per replica for the requests gathered meanwhile, each replica answers an executed batch
/// in one call per proxy, and the proxy reports the requests completed during a turn to the
/// SDK's observer in one call. It is not trusted: the client SDK verifies every reply itself.
/// </summary>
public interface IClientProxyGrain : IGrainWithStringKey
{
    /// <summary>
    /// Takes the requests (at most <see cref="MinBft.Encoding.MessageLimits.MaxBatchSize"/>) and
    /// reports each one's outcome to <paramref name="observer"/> as soon as it is known: f+1
    /// replies with equal results from distinct replicas (signatures checked), or why not (a
    /// malformed or unsigned request, too many requests in flight at this proxy, a conflicting
    /// request under the same seq, no quorum within <paramref name="timeout"/>, the proxy's silo
    /// shutting down). The call itself returns once every request of this call has its outcome,
    /// so a caller whose call fails (the proxy's silo died) knows at once that the outcomes it
    /// still lacks will not come. Throws <see cref="ArgumentException"/> for a malformed call
    /// (no requests, too many, a null one, no observer, a timeout out of range).
    /// A request already in flight here is not sent twice: the same request again (a retry)
    /// waits for the same replies, for its own timeout, and goes to every replica at once. After a
    /// failed outcome, submit the same request again: replicas execute a seq at most once and
    /// answer a repeated one from their reply cache.
    /// </summary>
    /// <param name="requests">Signed requests.</param>
    /// <param name="timeout">How long to wait for each request's quorum.</param>
    /// <param name="observer">Where outcomes go. Passed with every call, so that a proxy
    /// activated anew (another silo, after a restart) always has a current reference.</param>
    Task Submit(Request[] requests, TimeSpan timeout, IClientProxyObserver observer);

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

/// <summary>
/// The client SDK's receiver of request outcomes (an Orleans client observer). Its input comes
/// from an untrusted proxy: the SDK matches each outcome to a request it sent and verifies the
/// replies itself.
/// </summary>
public interface IClientProxyObserver : IGrainObserver
{
    /// <summary>Outcomes of requests submitted through <see cref="IClientProxyGrain.Submit"/>: all
    /// those the proxy learned during one turn, at most <see cref="MinBft.Encoding.MessageLimits.MaxBatchSize"/>.</summary>
    [OneWay]
    Task Completed(ClientProxyOutcome[] outcomes);
}

/// <summary>What became of one submitted request: <paramref name="Replies"/> (f+1 matching
/// replies) or <paramref name="Failure"/> (why not; the client may submit it again), which
/// <paramref name="TimedOut"/> marks as the timeout of the submission.</summary>
[GenerateSerializer, Immutable, Alias("minbft.ClientProxyOutcome")]
public sealed record ClientProxyOutcome(
    [property: Id(0)] string ClientId,
    [property: Id(1)] ulong Seq,
    [property: Id(2)] Reply[]? Replies,
    [property: Id(3)] string? Failure,
    [property: Id(4)] bool TimedOut = false);

/// <param name="InFlight">Requests waiting for their f+1 matching replies.</param>
/// <param name="Completed">Requests answered with f+1 matching replies since activation.</param>
/// <param name="RepliesAccepted">Replies that verified and were counted.</param>
/// <param name="RepliesIgnored">Replies dropped by reason: Malformed, UnknownReplica,
/// WrongRequest (a result for another operation under this seq), InvalidSignature, NotPending
/// (late, or no such client and seq in flight here), DuplicateReplica.</param>
/// <param name="Submits">Submit calls received since activation (each carries a batch of requests).</param>
/// <param name="Notifications">Observer calls made since activation (each carries a batch of outcomes).</param>
[GenerateSerializer, Immutable, Alias("minbft.ClientProxyStatus")]
public sealed record ClientProxyStatus(
    [property: Id(0)] int InFlight,
    [property: Id(1)] long Completed,
    [property: Id(2)] long RepliesAccepted,
    [property: Id(3)] Dictionary<string, long> RepliesIgnored,
    [property: Id(4)] long Submits = 0,
    [property: Id(5)] long Notifications = 0);
