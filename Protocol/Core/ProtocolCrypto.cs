using MinBft.Messages;

namespace MinBft.Protocol;

/// <summary>Checks a UI: did replica <c>replicaId</c>'s USIG certify this digest with this counter?</summary>
public interface IUiVerifier
{
    /// <param name="replicaId">The replica whose USIG the UI claims to come from.</param>
    /// <param name="ui">The claimed UI: epoch, counter and certificate.</param>
    /// <param name="certifiedDigest">SHA-256 of the message's canonical bytes (MessageEncoding.CertifiedDigest).</param>
    /// <remarks>True for any identity of the replica, current or retired: the caller checks with
    /// <see cref="Epochs"/> which identity the message's place requires.</remarks>
    bool Verify(int replicaId, UniqueIdentifier ui, ReadOnlySpan<byte> certifiedDigest);

    /// <summary>Every replica's USIG identities: which epoch is current, which may lead a view.</summary>
    Usig.UsigEpochs Epochs { get; }
}

/// <summary>This replica's own signing key (REPLY, REQ-VIEW-CHANGE, retransmission requests).</summary>
public interface IReplicaSigner
{
    byte[] Sign(ReadOnlySpan<byte> message);
}

/// <summary>Verifies signatures made by the replicas of the cluster.</summary>
public interface IReplicaSignatureVerifier
{
    bool Verify(int replicaId, ReadOnlySpan<byte> message, ReadOnlySpan<byte> signature);
}

/// <summary>Verifies a client request: client id = hash of its public key, signature valid.</summary>
public interface IRequestVerifier
{
    bool Verify(Request request);

    /// <summary>The same, for a caller that has the request's digest already (saves hashing it again).</summary>
    bool Verify(Request request, ReadOnlySpan<byte> digest) => Verify(request);
}

/// <summary>Everything the core needs to authenticate messages; all deterministic.</summary>
public sealed record ProtocolCrypto(
    IUiVerifier Ui,
    IReplicaSigner Signer,
    IReplicaSignatureVerifier Replicas,
    IRequestVerifier Requests);
