using Xunit.Abstractions;

namespace MinBft.Tests.Simulation;

/// <summary>
/// What the isolated USIG is for, seen from the simulator: HMAC runs verify every UI through
/// the replica's own USIG (the core holds no secret) and stay correct, which proves that
/// <see cref="Encoding.UiClaims"/> lists every claim the core checks; and a primary whose USIG is
/// cloned (what isolation prevents) forks the history, which the checkers must report.
/// </summary>
public sealed class UsigIsolationSimulationTests(ITestOutputHelper output)
{
    [Fact]
    public void Hmac_every_ui_verified_through_the_replicas_own_usig_hostile_seeds_f1() =>
        new SeedCampaign(nameof(Hmac_every_ui_verified_through_the_replicas_own_usig_hostile_seeds_f1), output)
            .Run(80_000, 100, seed => SimulationOptions.ForSeed(seed, 1) with { HmacUsig = true }, Preverified);

    [Fact]
    public void Hmac_every_ui_verified_through_the_replicas_own_usig_faulty_primary_f1() =>
        new SeedCampaign(nameof(Hmac_every_ui_verified_through_the_replicas_own_usig_faulty_primary_f1), output)
            .Run(81_000, 60, seed => SimulationOptions.WithFaultyPrimary(seed, 1) with { HmacUsig = true }, Preverified);

    [Fact]
    public void Hmac_every_ui_verified_through_the_replicas_own_usig_restarts_f1() =>
        new SeedCampaign(nameof(Hmac_every_ui_verified_through_the_replicas_own_usig_restarts_f1), output)
            .Run(82_000, 40, seed => SimulationOptions.WithRestart(seed, 1) with { HmacUsig = true }, Preverified);

    [Fact]
    public void Hmac_every_ui_verified_through_the_replicas_own_usig_view_changes_and_state_transfer_f2() =>
        new SeedCampaign(nameof(Hmac_every_ui_verified_through_the_replicas_own_usig_view_changes_and_state_transfer_f2), output)
            .Run(83_000, 30, seed => SimulationOptions.WithFaultyPrimary(seed, 2) with { HmacUsig = true }, Preverified);

    [Fact]
    public void Hmac_every_ui_verified_through_the_replicas_own_usig_overlapping_view_changes_on_a_slow_network()
    {
        // Views change again and again: VIEW-CHANGEs carry view-start certificates and PREPAREs of
        // later views, NEW-VIEWs carry VIEW-CHANGEs, first PREPAREs carry view starts.
        long views = 0;
        new SeedCampaign(nameof(Hmac_every_ui_verified_through_the_replicas_own_usig_overlapping_view_changes_on_a_slow_network), output)
            .Run(84_000, 5, seed => new SimulationOptions
            {
                F = 1 + seed % 2, Clients = 3, RequestsPerClient = 8, FaultyPeriod = TimeSpan.Zero, HmacUsig = true,
                MaxDelay = TimeSpan.FromMilliseconds(1000), LivenessBound = TimeSpan.FromSeconds(120),
            }, sim =>
            {
                Preverified(sim);
                Assert.Equal(24, sim.RequestsCompleted);
                views += sim.MaxView;
            });
        Assert.True(views > 5, "views changed again and again");
    }

    [Fact]
    public void Hmac_a_long_isolation_rejoins_by_state_transfer_with_preverified_certificates()
    {
        var seed = SeedCampaign.ReplaySeed ?? 4712;
        var sim = new Simulation(seed, new SimulationOptions
        {
            F = 1, Clients = 4, RequestsPerClient = 40, MaxBatchSize = 2, CheckpointInterval = 4, Watermark = 8, HmacUsig = true,
            FaultyPeriod = TimeSpan.FromSeconds(3), Isolations = [(2, TimeSpan.FromMilliseconds(50), TimeSpan.FromSeconds(3))],
            RequireCatchUp = true,
        });
        sim.Run();
        output.WriteLine($"seed={seed}: {sim.RequestsCompleted} requests, {sim.PreverifiedClaims} claims verified by the replicas' USIGs, " +
                         $"replica 2 installed {sim.CoreOf(2).StateTransfersCompleted} snapshot(s)");
        Assert.Equal(160, sim.RequestsCompleted);
        Assert.True(sim.CoreOf(2).StateTransfersCompleted >= 1, "the isolated replica verified a certificate from a STATE-CHUNK");
        Assert.Equal(sim.MaxExecuted, sim.CoreOf(2).ExecutedSequence);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void Negative_control_a_primary_with_a_cloned_usig_equivocates_and_the_simulator_reports_the_fork(int f)
    {
        var seed = SeedCampaign.ReplaySeed ?? 9_100 + f;
        // Every message takes the same 0.1 ms: each backup sees the PREPARE meant for it before any
        // COMMIT relays the other one, so both halves (f+1 with the primary) commit their own batch.
        var options = new SimulationOptions
        {
            F = f, Clients = 4, RequestsPerClient = 4, RogueReplicas = [0], ClonedUsig = true,
            FaultyPeriod = TimeSpan.FromSeconds(1), MaxDelay = TimeSpan.Zero,
        };
        var failure = Assert.Throws<SimulationFailure>(() => new Simulation(seed, options).Run());
        output.WriteLine($"seed={seed}: " + failure.Message.Split('\n')[0]);
        Assert.Matches("^(AGREEMENT|INTEGRITY):", failure.Message);

        // The control's control: the same rogue primary with its one USIG cannot fork anything.
        var single = new Simulation(seed, options with { ClonedUsig = false });
        single.Run();
        Assert.Equal(options.Clients * options.RequestsPerClient, single.RequestsCompleted);
    }

    private static void Preverified(Simulation sim) =>
        Assert.True(sim.PreverifiedClaims > 0, "the replicas' USIGs verified the claims");
}
