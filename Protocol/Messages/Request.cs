namespace MinBft.Messages;

/// <summary>
/// REQUEST: a client operation, signed by the client (Ed25519). The client id is the
/// hex SHA-256 of the client's public key, so a request is self-certifying: nobody can
/// issue a request in another client's name.
/// <see cref="Authenticator"/> is a shortcut, not a proof: one MAC per replica under keys from
/// the client's session with that replica (<see cref="ClientSessionOffer"/>). A replica whose
/// MAC checks skips the signature; for any other replica the signature decides. It is covered
/// by neither the signature nor the request's digest, so whoever relays it may damage it, which
/// only costs a signature check.
/// <see cref="ReplyTo"/> is a routing hint of the same kind: the client proxy that wants the
/// replies (by default the one keyed by the client id). A Byzantine primary that changes it in a
/// PREPARE only sends honest replicas' replies astray once: the proxy retransmits to every
/// replica, and each resends its cached reply to the hint of the copy it received itself.
/// <see cref="Incarnation"/> bounds the client table (see Protocol/Core/CLIENT-SESSIONS-DESIGN.md):
/// the highest position of the replicated history that f+1 replies proved to the client (0 before
/// any). A replica with no record of the client executes the request only if it is at or above
/// the expiry horizon, which old requests of an evicted client never are. Signed.
/// </summary>
[GenerateSerializer, Immutable, Alias("minbft.Request")]
public sealed record Request(
    [Id(0)] string ClientId,
    [Id(1)] byte[] ClientPublicKey,
    [Id(2)] ulong Seq,
    [Id(3)] byte[] Operation,
    [Id(4)] byte[] Signature,
    [Id(5)] byte[]? Authenticator = null,
    [Id(6)] string? ReplyTo = null,
    [Id(7)] ulong Incarnation = 0);
