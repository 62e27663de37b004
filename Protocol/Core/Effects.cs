using MinBft.Messages;

namespace MinBft.Protocol;

/// <summary>
/// What the core asks its host to do. Every effect can be applied as soon as it is emitted: the
/// core emits a certified message's Send only once its intent is durable (in the journal, or kept
/// by the USIG with its counter) and its UI issued (persist before send), so the host keeps no
/// ordering of its own. The three durable operations
/// are at most one in flight each; the host reports each completion back to the core, retrying
/// a failed one unchanged.
/// </summary>
public abstract record Effect;

/// <summary>Apply this write to the replica's durable log (atomically), then call
/// <see cref="ReplicaCore.OnLogWritten"/>. Never more than one in flight.</summary>
public sealed record WriteLog(LogWrite Write) : Effect;

/// <summary>Have this replica's USIG certify these digests with the counters from
/// <see cref="FirstCounter"/> on (one durable USIG write), then call
/// <see cref="ReplicaCore.OnUisIssued"/> with the UIs in order. Never more than one in flight;
/// a failed call is retried with the same digests (the USIG returns the same UIs if it had in
/// fact issued them). <see cref="Kept"/>, when not null: the messages, one per digest, encoded by
/// the core's <see cref="IKeptMessageCodec"/>, that the USIG must keep in the same write (their
/// intents may not be durable in the journal yet).</summary>
public sealed record CertifyUis(ulong FirstCounter, IReadOnlyList<byte[]> Digests, IReadOnlyList<byte[]>? Kept = null) : Effect;

/// <summary>Send to one replica, or to every other replica when <see cref="To"/> is null.</summary>
public sealed record Send(int? To, ReplicaMessage Message) : Effect;

/// <summary>Forward a client's request to the primary (it may never have received it).</summary>
public sealed record ForwardRequest(int To, Request Request) : Effect;

/// <summary>Deliver a signed reply to a client, through the proxy its request named
/// (<see cref="Request.ReplyTo"/>; null: the proxy keyed by the client id).</summary>
public sealed record SendReply(Reply Reply, string? ReplyTo = null) : Effect;

/// <summary>A batch was executed as number <see cref="Sequence"/> of this replica's history:
/// <see cref="Requests"/> as ordered, and <see cref="Applied"/>, those that ran in the application
/// (not a seq already executed, not an expired client, not a probe).</summary>
public sealed record Executed(ulong Sequence, long View, ulong PrimaryCounter, byte[] BatchDigest, IReadOnlyList<Request> Requests,
    IReadOnlyList<Request> Applied) : Effect;

/// <summary>Keep this stable checkpoint durably (snapshot, view and the view-start certificates
/// the replica knows), replacing the stored one, then call <see cref="ReplicaCore.OnCheckpointStored"/>.
/// A restart resumes from it. Not on the send path (a certified checkpoint can always be fetched
/// from f+1 replicas again); the durable log is trimmed only below what it covers. Never more than
/// one in flight; only the newest waiting one is asked for next.</summary>
public sealed record StoreCheckpoint(CheckpointCertificate Certificate, EncodedSnapshot Snapshot, long View, IReadOnlyList<CheckpointCertificate> ViewStarts) : Effect;

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
