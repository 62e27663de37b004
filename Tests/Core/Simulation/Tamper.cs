using MinBft.Messages;

namespace MinBft.Tests.Simulation;

/// <summary>
/// Field mutations a Byzantine replica applies to a message it already had certified: every
/// one of them must be caught by the receiver's UI or signature check. Arrays are copied, never
/// changed in place: messages are shared immutable records.
/// </summary>
internal static class Tamper
{
    public static ReplicaMessage Mutate(ReplicaMessage message, Random rng)
    {
        switch (message)
        {
            case Prepare p:
                return rng.Next(6) switch
                {
                    0 => p with { View = p.View + (rng.Next(2) == 0 ? 1 : -1) },
                    1 => p with { PrepareUi = ShiftCounter(p.PrepareUi, rng) },
                    2 => p with { PrepareUi = FlipCertificate(p.PrepareUi, rng) },
                    3 => p with { Batch = MutateBatch(p.Batch, rng) },
                    4 => p with { PrimaryId = (p.PrimaryId + 1 + rng.Next(3)) % 5 },
                    _ => p with { Batch = p.Batch.Reverse().ToArray().Length > 1 ? p.Batch.Reverse().ToArray() : MutateBatch(p.Batch, rng) },
                };
            case Commit c:
                return rng.Next(6) switch
                {
                    0 => c with { View = c.View + (rng.Next(2) == 0 ? 1 : -1) },
                    1 => c with { CommitUi = ShiftCounter(c.CommitUi, rng) },
                    2 => c with { CommitUi = FlipCertificate(c.CommitUi, rng) },
                    3 => c with { Prepare = c.Prepare with { Batch = MutateBatch(c.Prepare.Batch, rng) } },
                    4 => c with { ReplicaId = (c.ReplicaId + 1 + rng.Next(3)) % 5 },
                    _ => c with { Prepare = c.Prepare with { PrepareUi = ShiftCounter(c.Prepare.PrepareUi, rng) } },
                };
            case RetransmitRequest r:
                return r with { FromCounter = r.FromCounter + 1 };
            case StateChunk c:
                return CorruptChunk(c, rng);
            case ViewChangeRelay r when r.ViewChange.Log.Length > 0:
                // A relayed copy with its log cut: no longer the VIEW-CHANGE its UI certifies.
                return r with { ViewChange = r.ViewChange with { Log = r.ViewChange.Log[..^1] } };
            default:
                return message;
        }
    }

    /// <summary>A snapshot chunk with one byte changed: its digest no longer matches the certificate.</summary>
    public static StateChunk CorruptChunk(StateChunk chunk, Random rng)
    {
        var data = (byte[])chunk.Data.Clone();
        if (data.Length == 0) return chunk with { Data = [0x42] };
        data[rng.Next(data.Length)] ^= (byte)(1 << rng.Next(8));
        return chunk with { Data = data };
    }

    public static UniqueIdentifier ShiftCounter(UniqueIdentifier ui, Random rng) =>
        ui with { Counter = rng.Next(2) == 0 ? ui.Counter + 1 : Math.Max(1, ui.Counter) - 1 };

    public static UniqueIdentifier FlipCertificate(UniqueIdentifier ui, Random rng)
    {
        var certificate = (byte[])ui.Certificate.Clone();
        if (certificate.Length > 0) certificate[rng.Next(certificate.Length)] ^= (byte)(1 << rng.Next(8));
        return ui with { Certificate = certificate };
    }

    /// <summary>Change one request of the batch: a payload byte, or its sequence number.</summary>
    public static Request[] MutateBatch(Request[] batch, Random rng)
    {
        var copy = (Request[])batch.Clone();
        var i = rng.Next(copy.Length);
        var request = copy[i];
        if (rng.Next(2) == 0 && request.Operation.Length > 0)
        {
            var operation = (byte[])request.Operation.Clone();
            operation[rng.Next(operation.Length)] ^= 0x5a;
            copy[i] = request with { Operation = operation };
        }
        else
        {
            copy[i] = request with { Seq = request.Seq + (rng.Next(2) == 0 ? 1UL : ulong.MaxValue) };
        }
        return copy;
    }
}
