using MinBft.Messages;

namespace MinBft.Protocol;

/// <summary>
/// How the host encodes this replica's own messages for its USIG to keep
/// (USIG-KEPT-MESSAGES-DESIGN.md): the core encodes an intent with <see cref="Encode"/> to ask the
/// USIG to keep it with its counter, and the host decodes what the USIG kept after a restart, for
/// counters its journal did not reach. The encoding is the host's own (the journal's, in the
/// silo); the core only needs the bytes and their length.
/// </summary>
public interface IKeptMessageCodec
{
    /// <summary>The bytes of <paramref name="message"/> (an intent: no UI), decodable by <see cref="Decode"/>.</summary>
    byte[] Encode(CertifiedMessage message);

    /// <summary>The message <see cref="Encode"/> made these bytes from; throws on bytes it did not make.</summary>
    CertifiedMessage Decode(ReadOnlySpan<byte> bytes);
}
