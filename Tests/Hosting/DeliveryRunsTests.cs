using MinBft.Encoding;

namespace MinBft.Tests.Hosting;

public sealed class DeliveryRunsTests
{
    [Fact]
    public void Runs_cover_every_item_in_order_within_the_count_bound()
    {
        var runs = DeliveryRuns.Split(10, _ => 1, maxCount: 4, maxBytes: 1_000);
        Assert.Equal([(0, 4), (4, 4), (8, 2)], runs);
    }

    [Fact]
    public void Runs_are_cut_before_an_item_that_would_pass_the_byte_bound()
    {
        long[] sizes = [300, 300, 300, 500, 100, 100];
        var runs = DeliveryRuns.Split(sizes.Length, i => sizes[i], maxCount: 100, maxBytes: 1_000);
        Assert.Equal([(0, 3), (3, 3)], runs);
        Assert.All(runs, r => Assert.True(sizes.Skip(r.Start).Take(r.Length).Sum() <= 1_000));
    }

    [Fact]
    public void An_item_over_the_byte_bound_goes_alone_rather_than_never()
    {
        long[] sizes = [10, 5_000, 10];
        var runs = DeliveryRuns.Split(sizes.Length, i => sizes[i], maxCount: 100, maxBytes: 1_000);
        Assert.Equal([(0, 1), (1, 1), (2, 1)], runs);
    }

    [Fact]
    public void Nothing_to_send_is_no_call()
    {
        Assert.Empty(DeliveryRuns.Split(0, _ => throw new InvalidOperationException("no item to measure"), 4, 1_000));
        Assert.Throws<ArgumentOutOfRangeException>(() => DeliveryRuns.Split(1, _ => 1, maxCount: 0, maxBytes: 1_000));
    }
}
