using MinBft.Messages;
using MinBft.Protocol;
using Orleans.Serialization;

namespace MinBft.ReplicaHost;

/// <summary>
/// How the silo encodes a replica's messages for its USIG to keep: with the Orleans serializer,
/// as the journal stores intents, so a message taken back from the USIG after a crash is exactly
/// the intent the journal would have held.
/// </summary>
internal sealed class SerializerKeptMessageCodec(Serializer serializer) : IKeptMessageCodec
{
    public byte[] Encode(CertifiedMessage message) => serializer.SerializeToArray(message);

    public CertifiedMessage Decode(ReadOnlySpan<byte> bytes) =>
        serializer.Deserialize<CertifiedMessage>(bytes.ToArray()) ?? throw new InvalidDataException("a kept message decoded to nothing");
}
