using System.Security.Cryptography;
using MinBft.Encoding;
using MinBft.Messages;
using MinBft.Protocol;

namespace MinBft.Tests.Simulation;

/// <summary>
/// The simulator's stand-in for the silo's encoding of kept messages (the journal's serializer,
/// which this test project does not reference). The bytes are the message's canonical certified
/// encoding (a COMMIT's followed by its PREPARE's), so their length is close to the real one and the
/// USIG's limit bites where it would; decoding looks the message up by those bytes. One per run.
/// </summary>
internal sealed class SimKeptMessageCodec : IKeptMessageCodec
{
    private readonly Dictionary<string, CertifiedMessage> _encoded = new(StringComparer.Ordinal);

    public byte[] Encode(CertifiedMessage message)
    {
        ProtocolInvariantException.Check(message.Ui.IsNone, "a kept message is an intent");
        byte[] bytes = message is Commit commit ? [.. MessageEncoding.Certified(commit), .. MessageEncoding.Certified(commit.Prepare)] : MessageEncoding.Certified(message);
        _encoded[Key(bytes)] = message;
        return bytes;
    }

    public CertifiedMessage Decode(ReadOnlySpan<byte> bytes) =>
        _encoded.TryGetValue(Key(bytes), out var message) ? message : throw new InvalidDataException("bytes this codec did not encode");

    private static string Key(ReadOnlySpan<byte> bytes) => Convert.ToHexString(SHA256.HashData(bytes));
}
