using MinBft.Encoding;
using MinBft.Messages;

namespace MinBft.Protocol;

/// <summary>
/// The certified digests of a received message, computed once when its UI is checked: its own,
/// and for a PREPARE or a COMMIT the PREPARE's. The PREPARE's is the costly one (a whole batch),
/// and the handlers need it again: to record the batch, to match a COMMIT's copy against the
/// PREPARE known here, to build this backup's own COMMIT.
/// </summary>
internal readonly record struct MessageDigests(byte[] Certified, byte[]? Prepare)
{
    public static MessageDigests Of(CertifiedMessage message)
    {
        switch (message)
        {
            case Prepare prepare:
                return OfPrepare(MessageEncoding.CertifiedDigest(prepare));
            case Commit commit:
                var prepareDigest = MessageEncoding.CertifiedDigest(commit.Prepare);
                return new(MessageEncoding.CommitDigest(commit, prepareDigest), prepareDigest);
            default:
                return new(MessageEncoding.CertifiedDigest(message), null);
        }
    }

    /// <summary>A PREPARE's: its certified digest is the PREPARE digest.</summary>
    public static MessageDigests OfPrepare(byte[] digest) => new(digest, digest);

    /// <summary>The PREPARE digest of a PREPARE or COMMIT (a bug to ask of another message).</summary>
    public byte[] PrepareDigest => Prepare ?? throw new ProtocolInvariantException("only a PREPARE or a COMMIT has a PREPARE digest");
}
