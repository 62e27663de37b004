namespace MinBft.Hosting;

/// <summary>
/// Decides when the placement director says that a fault domain is down. While a domain is down,
/// every message to its replica asks for a placement again (tens per second under load), and one
/// warning per refusal would bury everything else in the log. So the first refusal is logged at
/// once, later ones at most once per <paramref name="interval"/> with the count of refusals since,
/// and the first placement after an outage once.
/// </summary>
internal sealed class FaultDomainDownLog(TimeProvider clock, TimeSpan interval)
{
    /// <summary>How often a domain that stays down is reported again by default.</summary>
    public static readonly TimeSpan DefaultInterval = TimeSpan.FromSeconds(30);

    private readonly Dictionary<int, Outage> _down = [];

    private sealed class Outage(long loggedAt)
    {
        public long LoggedAt { get; set; } = loggedAt;
        public long Unreported { get; set; }
        public long Refused { get; set; } = 1;
    }

    /// <summary>
    /// Records that no silo of <paramref name="faultDomain"/> could take a replica. Returns 0 if
    /// this refusal starts an outage, the refusals since the last report (this one included) if an
    /// outage is to be reported again, and null if this refusal is to be kept quiet.
    /// </summary>
    public long? Refused(int faultDomain)
    {
        var now = clock.GetTimestamp();
        lock (_down)
        {
            if (!_down.TryGetValue(faultDomain, out var outage))
            {
                _down[faultDomain] = new Outage(now);
                return 0;
            }
            outage.Refused++;
            outage.Unreported++;
            if (clock.GetElapsedTime(outage.LoggedAt, now) < interval) return null;
            var reported = outage.Unreported;
            outage.Unreported = 0;
            outage.LoggedAt = now;
            return reported;
        }
    }

    /// <summary>
    /// Records that a replica of <paramref name="faultDomain"/> was placed. Returns how many
    /// placements were refused during the outage that ends here, or null if the domain was not down.
    /// </summary>
    public long? Placed(int faultDomain)
    {
        lock (_down)
        {
            return _down.Remove(faultDomain, out var outage) ? outage.Refused : null;
        }
    }
}
