using MinBft.Messages;

namespace MinBft.Usig;

/// <summary>
/// The durable state of one USIG: its epoch, the last counter value issued (0 = none yet), and
/// the digest and UI of that last issue, so that a retried CreateUI for the same digest gets the
/// same UI back after a crash instead of burning a counter value. <see cref="Recent"/> holds the
/// digests of up to <see cref="UsigCore.RecentWindow"/> - 1 issues before the last one (oldest
/// first, 32 bytes each), so that a replica that crashed before logging those UIs can have them
/// re-issued for exactly the digests they were issued for.
/// </summary>
[GenerateSerializer, Immutable, Alias("minbft.UsigState")]
public sealed record UsigState(
    [property: Id(0)] ulong Epoch,
    [property: Id(1)] ulong Counter,
    [property: Id(2)] byte[] LastDigest,
    [property: Id(3)] UniqueIdentifier? LastUi,
    [property: Id(4)] byte[]? Recent = null)
{
    /// <summary>A USIG of <paramref name="epoch"/> that has issued nothing.</summary>
    public static UsigState Fresh(ulong epoch) => new(epoch, 0, [], null);

    /// <summary>The digest certified at <paramref name="counter"/>, if still remembered.</summary>
    public ReadOnlySpan<byte> DigestAt(ulong counter)
    {
        if (counter == 0 || counter > Counter) return default;
        if (counter == Counter) return LastDigest;
        var recent = Recent ?? [];
        var back = Counter - counter; // 1 = the issue before the last
        var held = (ulong)(recent.Length / UsigCertificateInput.DigestLength);
        if (back > held) return default;
        return recent.AsSpan((int)(held - back) * UsigCertificateInput.DigestLength, UsigCertificateInput.DigestLength);
    }

    /// <summary>Null if the fields are mutually consistent, else what is wrong (a corrupted store).</summary>
    public string? Inconsistency()
    {
        if (LastDigest is null) return "null last digest";
        if (Counter == 0)
            return LastUi is null && LastDigest.Length == 0 ? null : "no counter issued but a last UI or digest is present";
        if (LastUi is null) return "counter issued but no last UI";
        if (LastUi.Counter != Counter || LastUi.Epoch != Epoch) return "last UI does not match counter and epoch";
        if (LastDigest.Length != UsigCertificateInput.DigestLength) return "last digest length";
        if (Recent is { } recent && (recent.Length % UsigCertificateInput.DigestLength != 0
            || (ulong)(recent.Length / UsigCertificateInput.DigestLength) >= Counter)) return "recent digests length";
        return null;
    }
}
