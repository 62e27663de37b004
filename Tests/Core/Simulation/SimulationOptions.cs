namespace MinBft.Tests.Simulation;

/// <summary>How hostile one simulated run is. Everything random is drawn from the seed.</summary>
public sealed record SimulationOptions
{
    public int F { get; init; } = 1;
    public int N => 2 * F + 1;
    public int Clients { get; init; } = 3;
    public int RequestsPerClient { get; init; } = 8;

    /// <summary>Faults stop after this much simulated time; afterwards the network is reliable.</summary>
    public TimeSpan FaultyPeriod { get; init; } = TimeSpan.FromSeconds(2);

    public double DropRate { get; init; }
    public double DuplicateRate { get; init; }
    public TimeSpan MaxDelay { get; init; } = TimeSpan.FromMilliseconds(5);

    /// <summary>Replicas that run the real core but tamper with, drop, replay and forge what they send.</summary>
    public int[] TamperingReplicas { get; init; } = [];

    /// <summary>Replicas without a core: they hold a real USIG and send anything it can certify.</summary>
    public int[] RogueReplicas { get; init; } = [];

    public bool HmacUsig { get; init; }

    /// <summary>Replicas ask their USIGs to keep the messages of batches that fit, and certify them
    /// while the journal writes them (USIG-KEPT-MESSAGES-DESIGN.md); otherwise every message is
    /// certified only once its journal write is durable.</summary>
    public bool KeptMessages { get; init; }

    /// <summary>
    /// The negative control of USIG isolation: rogue replicas hold a second USIG instance with
    /// their key, epoch and counter (a cloned USIG), and as primary certify two different
    /// PREPAREs with one counter, one for each half of the backups. Exactly what an isolated USIG
    /// prevents; the checkers must report the fork.
    /// </summary>
    public bool ClonedUsig { get; init; }

    /// <summary>Rogue replicas also send bogus CHECKPOINTs: wrong state digests, positions far ahead
    /// of the stream, and replays of CHECKPOINTs they heard.</summary>
    public bool RogueCheckpoints { get; init; }

    /// <summary>Rogue replicas also lead any later view that falls to them: equivocating PREPAREs
    /// in that view, and NEW-VIEWs that omit, reorder or invent batches.</summary>
    public bool RogueInLaterViews { get; init; }

    /// <summary>Tampering replicas also forge REPLYs, validly signed with their own keys: another
    /// result (the same bytes at every tampering replica, so f of them agree on the lie), the next
    /// seq, or another client's current request.</summary>
    public bool TamperReplies { get; init; }
    public int MaxBatchSize { get; init; } = 4;

    /// <summary>The replicated client table's cap (<see cref="MinBft.Protocol.ProtocolSettings.MaxClientRecords"/>).</summary>
    public int MaxClientRecords { get; init; } = MinBft.Protocol.ProtocolSettings.DefaultMaxClientRecords;
    public int CheckpointInterval { get; init; } = 4;
    public int Watermark { get; init; } = 8;

    /// <summary>If set, a correct replica's log or buffers beyond this many entries fail the run.</summary>
    public int? MemoryBound { get; init; }

    /// <summary>Simulated time by which every request of a correct client must have completed
    /// (checked only when liveness is expected: a correct primary and at most f faulty).</summary>
    public TimeSpan LivenessBound { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Replicas that crash (stop for good) at the given simulated time.</summary>
    public (int Replica, TimeSpan At)[] Crashes { get; init; } = [];

    /// <summary>Replicas that crash at <c>Down</c> and restart from their durable state at <c>Up</c>.</summary>
    public (int Replica, TimeSpan Down, TimeSpan Up)[] Restarts { get; init; } = [];

    /// <summary>One replica crashes right after its <c>Write</c>-th durable write (log, USIG batch or
    /// checkpoint, counted together) and restarts from its durable state after <c>Downtime</c>.</summary>
    public (int Replica, int Write, TimeSpan Downtime)? CrashAfterWrite { get; init; }

    /// <summary>
    /// A USIG rotation (keygen --rotate-usig, USIG-ROTATION-DESIGN.md): the replica crashes at
    /// <c>Down</c> and its USIG state is lost. The operator reads the highest view and executed
    /// position from the running replicas, gives the USIG a new epoch and key with a first view and
    /// first checkpoint above them, and rolls the manifest: every other correct replica restarts
    /// once, in random order. At <c>Up</c> the replica restarts empty under its new identity.
    /// </summary>
    public (int Replica, TimeSpan Down, TimeSpan Up)? Rotation { get; init; }

    /// <summary>With <see cref="Rotation"/>: after the rotated replica is back, the primary of the day
    /// is cut off for a second, up to three times (asynchrony, not a fault), so that the views move
    /// on and the new identity gets to lead one.</summary>
    public bool CutOffPrimariesAfterRotation { get; init; }

    /// <summary>Replicas cut off from every peer (both directions) and from clients for a while.</summary>
    public (int Replica, TimeSpan From, TimeSpan To)[] Isolations { get; init; } = [];

    /// <summary>
    /// The <see cref="Isolations"/> model network asynchrony, not faults: the isolated replicas stay
    /// correct and count against f no more than a slow network does. Only for isolations that
    /// end within the faulty period, after which the network is reliable.
    /// </summary>
    public bool IsolationIsAsynchrony { get; init; }

    /// <summary>Replicas that run the real core but corrupt every snapshot chunk they serve.</summary>
    public int[] BadSnapshotServers { get; init; } = [];

    /// <summary>State transfer's pace (ProtocolTuning): small chunks, few per interval, make a
    /// snapshot take longer to send than the others take to reach their next checkpoint.</summary>
    public int StateChunkSize { get; init; } = 128 * 1024;
    public int MaxStateChunksPerInterval { get; init; } = 64;

    /// <summary>At the end, every running correct replica must reach the highest executed position.</summary>
    public bool RequireCatchUp { get; init; }

    /// <summary>With view changes, every run with at most f faulty replicas must stay live.</summary>
    public bool ExpectLiveness =>
        Faulty.Concat(Crashes.Select(c => c.Replica)).Concat(Restarts.Select(r => r.Replica)).Concat(IsolationIsAsynchrony ? [] : Isolations.Select(i => i.Replica))
            .Concat(CrashAfterWrite is { } c ? [c.Replica] : []).Concat(Rotation is { } r ? [r.Replica] : []).Distinct().Count() <= F;

    public IEnumerable<int> Faulty => TamperingReplicas.Concat(RogueReplicas).Concat(BadSnapshotServers);

    /// <summary>Draw a hostile configuration for one seed.</summary>
    /// <summary>A hostile configuration whose view-0 primary is rogue, tampering or crashes.</summary>
    public static SimulationOptions WithFaultyPrimary(int seed, int f)
    {
        var drawn = ForSeed(seed, f);
        var rng = new Random(seed ^ 0x5eed);
        var others = drawn.Faulty.Where(r => r != 0).Take(f - 1).ToArray();
        return rng.Next(3) switch
        {
            0 => drawn with { RogueReplicas = [0, .. others.Where(drawn.RogueReplicas.Contains)], TamperingReplicas = others.Where(drawn.TamperingReplicas.Contains).ToArray(), Crashes = [] },
            1 => drawn with { TamperingReplicas = [0, .. others.Where(drawn.TamperingReplicas.Contains)], RogueReplicas = others.Where(drawn.RogueReplicas.Contains).ToArray(), Crashes = [] },
            _ => drawn with
            {
                RogueReplicas = others.Where(drawn.RogueReplicas.Contains).ToArray(),
                TamperingReplicas = others.Where(drawn.TamperingReplicas.Contains).ToArray(),
                Crashes = [(0, TimeSpan.FromMilliseconds(rng.Next(5, 400)))],
            },
        };
    }

    /// <summary>A hostile configuration where one correct replica (often the primary) crashes
    /// and restarts from its durable state, with f-1 other faulty replicas at most.</summary>
    public static SimulationOptions WithRestart(int seed, int f)
    {
        var drawn = ForSeed(seed, f);
        var rng = new Random(seed ^ 0x7e57);
        var rogue = drawn.RogueReplicas.Take(f - 1).ToArray();
        var tampering = drawn.TamperingReplicas.Take(f - 1 - rogue.Length).ToArray();
        var correct = Enumerable.Range(0, drawn.N).Except(rogue).Except(tampering).ToArray();
        var replica = rng.NextDouble() < 0.4 && correct.Contains(0) ? 0 : correct[rng.Next(correct.Length)];
        var down = TimeSpan.FromMilliseconds(rng.Next(20, 1500));
        return drawn with
        {
            RogueReplicas = rogue,
            TamperingReplicas = tampering,
            Crashes = [],
            RequestsPerClient = rng.Next(8, 30),
            Restarts = [(replica, down, down + TimeSpan.FromMilliseconds(rng.Next(50, 2500)))],
            RequireCatchUp = true,
        };
    }

    /// <summary>A hostile configuration where one correct replica (often the primary) crashes right
    /// after one of its durable writes, drawn anywhere in the run (between any two of its log, USIG
    /// and checkpoint writes), and restarts from what it kept, with f-1 other faulty replicas at most.</summary>
    public static SimulationOptions WithCrashAfterWrite(int seed, int f)
    {
        var drawn = WithRestart(seed, f);
        var rng = new Random(seed ^ 0xc4a5);
        var replica = drawn.Restarts[0].Replica;
        return drawn with
        {
            Restarts = [],
            CrashAfterWrite = (replica, rng.Next(1, 120), TimeSpan.FromMilliseconds(rng.Next(1, 1500))),
        };
    }

    /// <summary>A hostile configuration where one correct replica (the view-0 primary in half the
    /// seeds) loses its USIG state and is rotated mid-run, with f-1 other faulty replicas at most.</summary>
    public static SimulationOptions WithRotation(int seed, int f)
    {
        var drawn = WithRestart(seed, f);
        var rng = new Random(seed ^ 0x2071);
        var correct = Enumerable.Range(0, drawn.N).Except(drawn.Faulty).ToArray();
        var replica = rng.NextDouble() < 0.5 && correct.Contains(0) ? 0 : correct[rng.Next(correct.Length)];
        var down = TimeSpan.FromMilliseconds(rng.Next(20, 1500));
        var up = down + TimeSpan.FromMilliseconds(rng.Next(50, 2500));
        var cutOff = rng.NextDouble() < 0.5;
        // The run goes on until the manifest rolled everywhere (up to 0.7 s after Up), and past the
        // cut-offs (three of a second each, 1.5 s apart, from 0.3 s after Up).
        var end = up + TimeSpan.FromMilliseconds(cutOff ? 5300 : 800);
        return drawn with
        {
            Restarts = [],
            Rotation = (replica, down, up),
            CutOffPrimariesAfterRotation = cutOff,
            FaultyPeriod = drawn.FaultyPeriod > end ? drawn.FaultyPeriod : end,
        };
    }

    /// <summary>A hostile configuration with f rogue backups that send bogus CHECKPOINTs, checkpointing
    /// often (K = 2..4) so that the bogus ones meet real ones at every position.</summary>
    public static SimulationOptions WithRogueCheckpoints(int seed, int f)
    {
        var drawn = ForSeed(seed, f);
        var rng = new Random(seed ^ 0xc0ffee);
        var rogue = Enumerable.Range(1, drawn.N - 1).OrderBy(_ => rng.Next()).Take(f).ToArray();
        var interval = rng.Next(2, 5);
        return drawn with
        {
            TamperingReplicas = [],
            RogueReplicas = rogue,
            RogueCheckpoints = true,
            Crashes = [],
            CheckpointInterval = interval,
            Watermark = Math.Max(drawn.Watermark, interval),
        };
    }

    /// <summary>
    /// A Byzantine primary after view 0: replica 1, which leads view 1, is rogue, with the
    /// later-view and checkpoint attacks. The correct view-0 primary is isolated for a while, so a
    /// correct backup suspects it and, with the rogue's vote, the view moves to the rogue's.
    /// Correct replicas must leave the rogue's view again, stay consistent and finish every request.
    /// </summary>
    public static SimulationOptions WithByzantineLaterPrimary(int seed, int f)
    {
        var drawn = ForSeed(seed, f);
        var rng = new Random(seed ^ 0xb12a);
        var from = TimeSpan.FromMilliseconds(rng.Next(20, 400));
        var to = from + TimeSpan.FromMilliseconds(rng.Next(700, 2000));
        return drawn with
        {
            TamperingReplicas = [],
            RogueReplicas = [1],
            RogueCheckpoints = true,
            RogueInLaterViews = true,
            Crashes = [],
            // The view-0 primary is cut off for a while, long enough to be suspected: the view
            // moves to 1, the rogue's. Asynchrony, not a fault: afterwards it is correct again.
            Isolations = [(0, from, to)],
            IsolationIsAsynchrony = true,
            FaultyPeriod = drawn.FaultyPeriod > to ? drawn.FaultyPeriod : to + TimeSpan.FromMilliseconds(100),
        };
    }

    /// <summary>A hostile configuration with f tampering replicas (the primary among them in a third
    /// of the seeds) that also forge their REPLYs.</summary>
    public static SimulationOptions WithTamperedReplies(int seed, int f)
    {
        var drawn = ForSeed(seed, f);
        var rng = new Random(seed ^ 0x4e91);
        var tampering = Enumerable.Range(rng.NextDouble() < 0.33 ? 0 : 1, drawn.N).Where(i => i < drawn.N)
            .OrderBy(_ => rng.Next()).Take(f).ToArray();
        return drawn with { TamperingReplicas = tampering, RogueReplicas = [], Crashes = [], TamperReplies = true };
    }

    /// <summary>
    /// A hostile configuration whose client table holds fewer records than there are clients
    /// (cap 1 to 3): records are evicted all the time, clients meet Expired replies and start new
    /// incarnations, and a rogue primary replays ordered requests at fresh positions. No request
    /// may run twice and every client must finish.
    /// </summary>
    public static SimulationOptions WithClientEvictions(int seed, int f)
    {
        var drawn = ForSeed(seed, f);
        var rng = new Random(seed ^ 0xe71c);
        var cap = rng.Next(1, 4);
        return drawn with { MaxClientRecords = cap, Clients = cap + rng.Next(1, 4), RequestsPerClient = rng.Next(6, 16) };
    }

    public static SimulationOptions ForSeed(int seed, int f)
    {
        var rng = new Random(seed);
        var n = 2 * f + 1;
        var faultyCount = rng.Next(0, f + 1);
        // Replica 0 is the primary of view 0: a third of the seeds make it faulty, so the view
        // must change for the run to stay live.
        var candidates = Enumerable.Range(rng.NextDouble() < 0.33 ? 0 : 1, n).Where(i => i < n).ToList();
        var faulty = candidates.OrderBy(_ => rng.Next()).Take(faultyCount).ToArray();
        var rogue = faulty.Where(_ => rng.NextDouble() < 0.5).ToArray();
        return new SimulationOptions
        {
            F = f,
            Clients = rng.Next(1, 5),
            RequestsPerClient = rng.Next(3, 10),
            DropRate = rng.NextDouble() < 0.7 ? rng.NextDouble() * 0.25 : 0,
            DuplicateRate = rng.NextDouble() * 0.15,
            MaxDelay = TimeSpan.FromMilliseconds(rng.Next(0, 30)),
            FaultyPeriod = TimeSpan.FromMilliseconds(rng.Next(200, 3000)),
            TamperingReplicas = faulty.Except(rogue).ToArray(),
            RogueReplicas = rogue,
            HmacUsig = rng.NextDouble() < 0.25,
            // From the seed's low bits, not its RNG: the rest of every seed's draw stays as it was.
            KeptMessages = (seed & 3) != 3,
            MaxBatchSize = rng.Next(1, 6),
            CheckpointInterval = rng.Next(2, 9),
            Watermark = rng.Next(4, 17),
        } is var drawn && faulty.Length < f && rng.NextDouble() < 0.25
            // A crash of a correct replica (often the primary) on top, within the f budget.
            ? drawn with { Crashes = [(rng.NextDouble() < 0.6 && !faulty.Contains(0) ? 0 : Enumerable.Range(0, n).First(i => !faulty.Contains(i)), TimeSpan.FromMilliseconds(rng.Next(10, 800)))] }
            : drawn;
    }

    public override string ToString() =>
        $"f={F} clients={Clients}x{RequestsPerClient} drop={DropRate:F2} dup={DuplicateRate:F2} delay<={MaxDelay.TotalMilliseconds}ms " +
        $"faulty-for={FaultyPeriod.TotalMilliseconds}ms tampering=[{string.Join(',', TamperingReplicas)}] rogue=[{string.Join(',', RogueReplicas)}] " +
        $"usig={(HmacUsig ? "hmac" : "ed25519")}{(ClonedUsig ? " CLONED" : "")}{(RogueCheckpoints ? " rogue-checkpoints" : "")}{(RogueInLaterViews ? " rogue-later-views" : "")}{(TamperReplies ? " forged-replies" : "")}{(KeptMessages ? " kept" : "")} batch={MaxBatchSize} K={CheckpointInterval} W={Watermark} " +
        $"crashes=[{string.Join(',', Crashes.Select(c => $"{c.Replica}@{c.At.TotalMilliseconds}ms"))}]" +
        $" restarts=[{string.Join(',', Restarts.Select(r => $"{r.Replica}@{r.Down.TotalMilliseconds}-{r.Up.TotalMilliseconds}ms"))}]" +
        $" isolations=[{string.Join(',', Isolations.Select(r => $"{r.Replica}@{r.From.TotalMilliseconds}-{r.To.TotalMilliseconds}ms"))}]" +
        (CrashAfterWrite is { } w ? $" crash-after-write={w.Replica}#{w.Write}+{w.Downtime.TotalMilliseconds}ms" : "") +
        (Rotation is { } rot ? $" usig-rotation={rot.Replica}@{rot.Down.TotalMilliseconds}-{rot.Up.TotalMilliseconds}ms{(CutOffPrimariesAfterRotation ? " then-cut-off-primaries" : "")}" : "") +
        $" bad-snapshots=[{string.Join(',', BadSnapshotServers)}]" +
        (MaxClientRecords < MinBft.Protocol.ProtocolSettings.DefaultMaxClientRecords ? $" client-records<={MaxClientRecords}" : "");
}
