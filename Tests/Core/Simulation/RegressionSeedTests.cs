using Xunit.Abstractions;

namespace MinBft.Tests.Simulation;

/// <summary>
/// Seeds that failed in longer campaigns (Tests/campaign.sh), beyond the blocks CI runs, each
/// kept with what it exposed. They replay exactly, so each guards the fix for its bug.
/// </summary>
public sealed class RegressionSeedTests(ITestOutputHelper output)
{
    public enum Scenario { Hostile, FaultyPrimary, CrashRecovery, CrashAfterWrite, ByzantineLaterPrimary, UsigRotation }

    [Theory]
    // View change stalled: the crashed primary's successor had garbage-collected the start of a
    // gap in its stream at a backup whose stable checkpoint lagged behind, so the backup could
    // not re-anchor that stream, and the CHECKPOINT votes that would have advanced its stable
    // checkpoint waited behind the same gap. Fix: a verified CHECKPOINT counts as a vote while
    // it waits in the reorder buffer.
    [InlineData(Scenario.FaultyPrimary, 1, 20760)]
    // The same stall in a hostile run: the primary crashed at 390 ms with 14% drops; a backup sat
    // in "view 1 (changing)" with 17 messages buffered behind the gap.
    [InlineData(Scenario.Hostile, 1, 1927)]
    // "in-flight batch count is never negative": a view-1 primary installed a snapshot while one
    // of its PREPAREs waited for its UI; the recount after the install missed that PREPARE.
    // Fix: the count is derived from positions (proposed minus executed), and an own PREPARE
    // that an installed snapshot covers only moves the counter chain on.
    [InlineData(Scenario.CrashRecovery, 1, 40477)]
    // "own USIG counters are sequential": after a restart a replica certified a CHECKPOINT equal
    // to one it had sent before the crash; the USIG took the repeated digest for a retry and
    // returned the old UI. Fix: CreateUis names the counters it asks for, so a retry is told
    // apart from a new message with a repeated digest. (Also 40484, 40819, 41062, 41295, 41796.)
    [InlineData(Scenario.CrashRecovery, 1, 40275)]
    // CATCH-UP: a replica that missed the last COMMITs of a burst (lost, or sent while it was
    // down) had no outstanding work, so nothing made it ask again while the system was quiet.
    // Fix: an idle replica asks each peer for what follows its last accepted counter every
    // IdleRetransmitInterval. (Also 40052, 40566, 40703, 40925, 41782 of the crash-recovery campaign.)
    [InlineData(Scenario.CrashAfterWrite, 1, 60102)]
    [InlineData(Scenario.CrashRecovery, 1, 40052)]
    // A restarted primary received every COMMIT for its own PREPARE at position 22 while it still
    // lacked 8..21; the snapshot at 21 filled them, but nothing ran execution again and no COMMIT
    // would come again: execution is now tried right after a snapshot is installed.
    [InlineData(Scenario.CrashRecovery, 1, 40334)]
    // A Byzantine replica committed to PREPAREs 3, 2 and 3 again: the late COMMIT to settled
    // position 2 rewound its commit chain, so the second COMMIT to 3 chained on and tripped the
    // "commits to a PREPARE once" invariant. A COMMIT that goes back, or a second one to the same
    // PREPARE, is now rejected as non-consecutive.
    [InlineData(Scenario.CrashRecovery, 2, 50097)]
    // The checker, not the protocol: "a rejected input changed its state" after a duplicate
    // COMMIT reached the primary just as a batch's MaxBatchWait ran out. Every step ends by letting
    // the primary propose, so the step cut a batch (the request's seq became ordered) while its
    // write waited behind one in flight. Steps that propose are no longer held to that check.
    [InlineData(Scenario.ByzantineLaterPrimary, 2, 95007)]
    // "the NEW-VIEW carries every batch this replica executed (executed 28, carried to 26)": still
    // in view 1, a replica installed the snapshot at 28, certified by replicas that had ordered 27
    // and 28 in view 2; view 2's NEW-VIEW (carrying to 26) reached it afterwards. The assertion
    // now exempts a state held only from an installed snapshot, and that view's PREPAREs up to it
    // only rebuild the counter chains, as after an install within the view.
    [InlineData(Scenario.UsigRotation, 2, 152322)]
    // Stop 42, chunk 66: the view-1 primary restarted, installed the checkpoint at 66 and took back
    // its own PREPARE at 67 from its log when the backups' COMMITs to it came, but with no counter
    // for its PREPARE at 66 (settled by the snapshot); the consecutive-commit rule then refused
    // every COMMIT to 67, for ever. Right above settled history the rule now accepts a commit to
    // the next position whatever the sender committed to below it.
    [InlineData(Scenario.UsigRotation, 2, 153370)]
    // Stop 44, chunk 75: a replica restarted from its checkpoint at 8 while the primary's PREPAREs
    // up to 17 arrived; the one at 17 waited beyond the watermark, then the install of the
    // snapshot at 16 re-anchored the primary's stream at its CHECKPOINT past that PREPARE. Nothing
    // recorded it, every COMMIT to it was refused ("no PREPARE 18"), and with the load over no
    // later checkpoint came to help. A COMMIT now brings such a skipped PREPARE in, fully checked.
    [InlineData(Scenario.UsigRotation, 1, 205579)]
    // Chunk 79: replica 2 asked for view 2, then restarted and forgot it; replica 0 counted that
    // request with its own, moved to view 2, and waited there alone, since replica 1 never got
    // replica 2's request and nothing made it suspect itself. A replica changing view now passes
    // its peers' signed requests on.
    [InlineData(Scenario.UsigRotation, 1, 209651)]
    // Stop 49, chunk 96, with a build that deferred journal writes while the USIG kept their
    // messages: the primary crashed with its sent PREPARE at 21 only in the USIG's window, and the
    // counters burned before its restart (another caller's batch, which keeps nothing) cleared that
    // window; the restarted primary lost a PREPARE its backups had executed and never caught up (no
    // peer had a checkpoint past it, and no request came to make one).
    // Journal writes are no longer deferred: a kept message's journal write starts with its USIG call.
    [InlineData(Scenario.CrashRecovery, 1, 136708)]
    // Stop 51, chunk 104, the first run of the CHECKPOINT STORE check: a replica never stored a
    // stable checkpoint whose position it reached without a snapshot of its own, inside a
    // NEW-VIEW's carried history after its USIG was rotated (234845), or re-executing after a
    // restart whose log already held that CHECKPOINT (164823). Its log stayed untrimmed until the
    // next stable checkpoint. The snapshot is now taken, and the checkpoint stored, either way.
    [InlineData(Scenario.UsigRotation, 1, 234845)]
    [InlineData(Scenario.CrashAfterWrite, 1, 164823)]
    public void A_seed_that_failed_a_longer_campaign_passes(Scenario scenario, int f, int seed)
    {
        var options = scenario switch
        {
            Scenario.FaultyPrimary => SimulationOptions.WithFaultyPrimary(seed, f),
            Scenario.CrashRecovery => SimulationOptions.WithRestart(seed, f),
            Scenario.CrashAfterWrite => SimulationOptions.WithCrashAfterWrite(seed, f),
            Scenario.ByzantineLaterPrimary => SimulationOptions.WithByzantineLaterPrimary(seed, f),
            Scenario.UsigRotation => SimulationOptions.WithRotation(seed, f),
            _ => SimulationOptions.ForSeed(seed, f),
        };
        // As it failed (every message certified once durable), and with kept messages, which the
        // seed's draw may not have chosen: the schedule differs, the checks are the same.
        foreach (var kept in new[] { false, true })
        {
            var sim = new Simulation(seed, options with { KeptMessages = kept });
            sim.Run();
            output.WriteLine($"{scenario} f={f} seed={seed} kept={kept}: {sim.RequestsCompleted} requests, views {sim.MinView}..{sim.MaxView}, " +
                             $"{sim.StateTransfers} snapshots installed, {sim.RestartsDone} restarts");
            Assert.True(sim.RequestsCompleted > 0);
        }
    }
}
