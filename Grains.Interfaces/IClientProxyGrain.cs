using MinBft.Messages;
using Orleans.Concurrency;

namespace MinBft;

/// <summary>
/// One per client (key = client id). It sends the client's signed request to every replica,
/// retransmits while replies are missing, and returns f+1 matching signed replies. It is not
/// trusted: the client SDK verifies every returned reply itself.
/// </summary>
public interface IClientProxyGrain : IGrainWithStringKey
{
    /// <summary>Send the request and wait for f+1 replies with equal results (signatures checked).</summary>
    Task<Reply[]> Execute(Request request, TimeSpan timeout);

    /// <summary>A replica's reply to one of this client's requests.</summary>
    [OneWay]
    Task DeliverReply(Reply reply);
}
