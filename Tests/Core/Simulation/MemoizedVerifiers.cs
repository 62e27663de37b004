using System.Buffers.Binary;
using System.Security.Cryptography;
using MinBft.Encoding;
using MinBft.Messages;
using MinBft.Protocol;

namespace MinBft.Tests.Simulation;

/// <summary>
/// The simulated cluster's verifiers, each answering a check it has already made from memory.
/// Every simulated replica checks the same UIs and signatures (and a VIEW-CHANGE repeats a whole
/// log of them), and Ed25519 verification was about two thirds of a campaign's CPU. The core and
/// the real verifiers are unchanged: a check is made once, by the production verifier, and its
/// answer (valid or not) is replayed for the identical check; anything that differs in one byte
/// (a forged certificate, another message) is a new check. One memo per simulated cluster: its
/// keys are the run's own, and a run is single-threaded.
/// </summary>
internal sealed class MemoizedUiVerifier(IUiVerifier inner) : IUiVerifier
{
    private readonly Memo _answers = new();

    public MinBft.Usig.UsigEpochs Epochs => inner.Epochs;

    public bool Verify(int replicaId, UniqueIdentifier ui, ReadOnlySpan<byte> certifiedDigest)
    {
        if (ui?.Certificate is null) return inner.Verify(replicaId, ui!, certifiedDigest);
        Span<byte> header = stackalloc byte[20];
        BinaryPrimitives.WriteInt32BigEndian(header, replicaId);
        BinaryPrimitives.WriteUInt64BigEndian(header[4..], ui.Epoch);
        BinaryPrimitives.WriteUInt64BigEndian(header[12..], ui.Counter);
        var key = Memo.Key(header, certifiedDigest, ui.Certificate);
        return _answers.TryGet(key, out var valid) ? valid : _answers.Keep(key, inner.Verify(replicaId, ui, certifiedDigest));
    }
}

/// <summary>Replica signatures (REQ-VIEW-CHANGE, retransmission and state requests), memoized as above.</summary>
internal sealed class MemoizedReplicaSignatureVerifier(IReplicaSignatureVerifier inner) : IReplicaSignatureVerifier
{
    private readonly Memo _answers = new();

    public bool Verify(int replicaId, ReadOnlySpan<byte> message, ReadOnlySpan<byte> signature)
    {
        Span<byte> header = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(header, replicaId);
        var key = Memo.Key(header, message, signature);
        return _answers.TryGet(key, out var valid) ? valid : _answers.Keep(key, inner.Verify(replicaId, message, signature));
    }
}

/// <summary>Client requests, memoized by the request's digest (it covers the signature too).</summary>
internal sealed class MemoizedRequestVerifier(IRequestVerifier inner) : IRequestVerifier
{
    private readonly Memo _answers = new();

    public bool Verify(Request request) => Verify(request, MessageEncoding.RequestDigest(request));

    public bool Verify(Request request, ReadOnlySpan<byte> digest)
    {
        var key = Sha256Digest.From(digest);
        return _answers.TryGet(key, out var valid) ? valid : _answers.Keep(key, inner.Verify(request, digest));
    }
}

/// <summary>The answers of one verifier, by the key of the check.</summary>
internal sealed class Memo
{
    private readonly Dictionary<Sha256Digest, bool> _answers = [];

    public bool TryGet(Sha256Digest key, out bool valid) => _answers.TryGetValue(key, out valid);

    /// <summary>Remembers <paramref name="valid"/> for <paramref name="key"/> and returns it.</summary>
    public bool Keep(Sha256Digest key, bool valid)
    {
        _answers[key] = valid;
        return valid;
    }

    /// <summary>SHA-256 over the parts, each prefixed by its length, so no two different checks share a key.</summary>
    public static Sha256Digest Key(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b, ReadOnlySpan<byte> c)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        Append(hash, a);
        Append(hash, b);
        Append(hash, c);
        Span<byte> digest = stackalloc byte[32];
        hash.GetHashAndReset(digest);
        return Sha256Digest.From(digest);
    }

    private static void Append(IncrementalHash hash, ReadOnlySpan<byte> part)
    {
        Span<byte> length = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(length, part.Length);
        hash.AppendData(length);
        hash.AppendData(part);
    }
}
