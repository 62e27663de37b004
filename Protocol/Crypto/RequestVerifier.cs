using MinBft.Encoding;
using MinBft.Messages;
using MinBft.Protocol;

namespace MinBft.Crypto;

/// <summary>
/// Accepts a REQUEST only if it is within bounds, its client id is the hash of the public key
/// it carries, and its signature is valid. Requests come from arbitrary (possibly Byzantine)
/// clients through an untrusted proxy, so this never throws: it answers false.
/// </summary>
public sealed class RequestVerifier : IRequestVerifier
{
    public bool Verify(Request request) => Explain(request) is null;

    /// <summary>Null when <paramref name="request"/> is valid, else a short reason (for logs and tests).</summary>
    public static string? Explain(Request? request)
    {
        if (ExplainShape(request) is { } why) return why;
        var r = request!;
        var signed = MessageEncoding.Request(r);
        return Ed25519.Verify(r.ClientPublicKey, signed, r.Signature) ? null : "bad signature";
    }

    /// <summary>Everything <see cref="Explain"/> checks except the signature (cheap: bounds and
    /// one hash); null when those checks pass.</summary>
    public static string? ExplainShape(Request? request)
    {
        // Bounds first: nothing is hashed or verified for an oversized request.
        if (MessageLimits.CheckRequest(request) is { } why) return why;
        // Without this check a client could sign with its own key under a victim's id.
        return ClientIdentity.Matches(request!.ClientId, request.ClientPublicKey) ? null : "client id is not the hash of the public key";
    }
}
