using MinBft.Messages;

namespace MinBft.Protocol;

/// <summary>
/// What the core asks its host to do. The host applies a Ready's effects in order: the core
/// emits them so that "persist, then send, then execute and reply" holds.
/// </summary>
public abstract record Effect;

/// <summary>Obtain a UI from this replica's USIG for the message, then call OnUiIssued. UIs must
/// be requested from the USIG in the order these effects are emitted.</summary>
public sealed record RequestUi(CertifiedMessage Message, byte[] CertifiedDigest) : Effect;

/// <summary>Make this UI-certified message durable in the sent log before any Send of it.</summary>
public sealed record PersistSent(CertifiedMessage Message) : Effect;

/// <summary>Send to one replica, or to every other replica when <see cref="To"/> is null.</summary>
public sealed record Send(int? To, ReplicaMessage Message) : Effect;

/// <summary>Forward a client's request to the primary (it may never have received it).</summary>
public sealed record ForwardRequest(int To, Request Request) : Effect;

/// <summary>Deliver a signed reply to a client.</summary>
public sealed record SendReply(Reply Reply) : Effect;

/// <summary>A batch was executed as number <see cref="Sequence"/> of this replica's history.</summary>
public sealed record Executed(ulong Sequence, long View, ulong PrimaryCounter, byte[] BatchDigest, IReadOnlyList<Request> Requests) : Effect;

/// <summary>The stable checkpoint advanced to one whose snapshot this replica holds: the host keeps
/// it durably (with the view-start certificates the replica knows), so a restart resumes from it.
/// Not on the send path: a certified checkpoint can always be fetched from f+1 replicas again.</summary>
public sealed record CheckpointStable(CheckpointCertificate Certificate, byte[] Snapshot, long View, IReadOnlyList<CheckpointCertificate> ViewStarts) : Effect;

/// <summary>A snapshot fetched from replica <see cref="From"/> matched its certificate and replaced
/// this replica's state at <see cref="Sequence"/> (state transfer).</summary>
public sealed record StateInstalled(ulong Sequence, int From) : Effect;

/// <summary>An input was rejected; the core counted it and nothing replicated changed.</summary>
public sealed record Rejected(int? From, RejectReason Reason, string Detail) : Effect;

/// <summary>The output of one step: effects in order, and when the core next needs a tick.</summary>
public sealed record Ready(IReadOnlyList<Effect> Effects, TimeSpan? NextTick)
{
    public static Ready Empty { get; } = new([], null);
}
