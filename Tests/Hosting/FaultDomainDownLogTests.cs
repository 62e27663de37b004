using Microsoft.Extensions.Time.Testing;
using MinBft.Hosting;

namespace MinBft.Tests.Hosting;

/// <summary>
/// The "fault domain down" warning: every message to a down domain's replica asks for a placement,
/// so the director reports an outage once, then at most once per interval with a count.
/// </summary>
public sealed class FaultDomainDownLogTests
{
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(30);
    private readonly FakeTimeProvider _clock = new();

    [Fact]
    public void The_first_refusal_starts_an_outage_then_one_report_per_interval_counts_the_refusals_since()
    {
        var log = new FaultDomainDownLog(_clock, Interval);

        Assert.Equal(0, log.Refused(0));
        for (var i = 0; i < 50; i++)
        {
            _clock.Advance(TimeSpan.FromMilliseconds(100));
            Assert.Null(log.Refused(0));
        }

        _clock.Advance(Interval);
        Assert.Equal(51, log.Refused(0));
        _clock.Advance(Interval);
        Assert.Equal(1, log.Refused(0));
        Assert.Null(log.Refused(0));
    }

    [Fact]
    public void Each_domain_has_its_own_outage()
    {
        var log = new FaultDomainDownLog(_clock, Interval);

        Assert.Equal(0, log.Refused(0));
        Assert.Equal(0, log.Refused(2));
        Assert.Null(log.Refused(0));
        Assert.Null(log.Placed(1));
        Assert.Equal(2, log.Placed(0));
        Assert.Null(log.Refused(2));
    }

    [Fact]
    public void A_placement_ends_the_outage_once_and_the_next_outage_is_reported_at_once()
    {
        var log = new FaultDomainDownLog(_clock, Interval);
        Assert.Equal(0, log.Refused(1));
        Assert.Null(log.Refused(1));
        Assert.Null(log.Refused(1));

        Assert.Equal(3, log.Placed(1));
        Assert.Null(log.Placed(1));

        Assert.Equal(0, log.Refused(1));
    }
}
