namespace MinBft.Encoding;

/// <summary>One tag per kind of authenticated bytes (domain separation).</summary>
public enum MessageTag : byte
{
    Request = 1,
    Prepare = 2,
    Commit = 3,
    Reply = 4,
    Checkpoint = 5,
    ReqViewChange = 6,
    ViewChange = 7,
    NewView = 8,
    RetransmitRequest = 9,
    StateRequest = 10,
    StateSnapshot = 11,
    ReplyTreeNode = 12,
    ReplyBatch = 13,
    RequestAuthenticator = 14,
    ClientSessionOffer = 15,
    UsigCertificate = 16,
    ClientId = 17,
    ClientSessionAccept = 18,
    ViewChangeFetch = 19,
    ReplyAuthenticator = 20,
}

public static class MessageTags
{
    /// <summary>Prefix of every canonical encoding: protocol name and encoding version.</summary>
    public static ReadOnlySpan<byte> Domain => "MINBFT/1"u8;
}
