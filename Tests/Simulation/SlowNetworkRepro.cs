using Xunit.Abstractions;

namespace MinBft.Tests.Simulation;

/// <summary>
/// A known safety bug, kept as a reproduction until the view change is fixed (issue 4). With no
/// faulty replica and no loss, only messages slower than the request timeout, view changes
/// overlap: a replica executes the history a NEW-VIEW carries as soon as it enters the view,
/// before f+1 replicas have it, and a later NEW-VIEW built from replicas that never processed
/// that one can carry a different batch at the same position. Fix direction: the new primary
/// re-proposes carried batches as PREPAREs of the new view, executed only once committed there.
/// </summary>
public sealed class SlowNetworkRepro(ITestOutputHelper output)
{
    [Theory(Skip = "Known safety bug (issue 4): carried history executes on NEW-VIEW before f+1 replicas agree on it")]
    [InlineData(5, 1200)]  // AGREEMENT: replicas 2 and 0 executed different batches as #10
    [InlineData(25, 1200)] // AGREEMENT: replicas 0 and 1 executed different batches as #3
    [InlineData(2, 1200)]  // invariant: the NEW-VIEW carries every batch this replica executed
    public void Correct_replicas_stay_safe_on_a_network_slower_than_the_request_timeout(int seed, int maxDelayMs)
    {
        var sim = new Simulation(seed, new SimulationOptions
        {
            F = 1, Clients = 3, RequestsPerClient = 8, FaultyPeriod = TimeSpan.Zero,
            MaxDelay = TimeSpan.FromMilliseconds(maxDelayMs), LivenessBound = TimeSpan.FromSeconds(120),
        });
        sim.Run();
        output.WriteLine($"{sim.RequestsCompleted} requests, views {sim.MinView}..{sim.MaxView}");
    }
}
