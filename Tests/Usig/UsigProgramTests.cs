using System.Buffers.Binary;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using MinBft.Hosting;
using MinBft.Tests.Client;
using MinBft.Tests.Crypto;
using MinBft.Usig;
using Xunit.Abstractions;

namespace MinBft.Tests.Usig;

/// <summary>
/// The USIG program (MinBft.Usig.dll, copied next to the tests) as a process of its own, spoken to
/// over its Unix domain socket the way a silo does (<see cref="UsigClient"/>) or byte by byte.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class UsigProgramTests(ITestOutputHelper output) : IDisposable
{
    private const int ReplicaId = 2;
    private const ulong Epoch = 7;
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(20);

    // Short: a Unix socket path is limited to 107 bytes.
    private readonly string _directory = Directory.CreateTempSubdirectory("usig-").FullName;
    private readonly List<UsigProcess> _processes = [];

    public void Dispose()
    {
        foreach (var process in _processes)
        {
            output.WriteLine($"--- USIG pid {process.ProcessId}:\n" + string.Join('\n', process.Output));
            process.Dispose();
        }
        Directory.Delete(_directory, recursive: true);
    }

    [Fact]
    public async Task Kill_9_in_the_middle_of_batches_issues_no_counter_twice_and_every_logged_intent_gets_its_UI()
    {
        var random = TestRandom.Create(output);
        var (settings, verify) = Setup(random);
        await UsigProcess.InitializeAsync(settings, CancellationToken.None);

        // The replica's side: it logs each batch's intent (first counter, digests) durably before
        // asking for the UIs, and after a crash asks again for every intent it has no UIs for.
        // Some batches ask the USIG to keep their messages too.
        var log = new List<(ulong First, byte[][] Digests)>();
        var keptBy = new Dictionary<ulong, byte[][]?>(); // by a batch's first counter
        var received = new Dictionary<ulong, (byte[] Digest, byte[] Certificate)>();
        void Record((ulong First, byte[][] Digests) intent, UsigUi[] uis)
        {
            for (var i = 0; i < uis.Length; i++)
            {
                Assert.Equal(intent.First + (ulong)i, uis[i].Counter);
                Assert.True(verify(uis[i], intent.Digests[i]), $"the UI of counter {uis[i].Counter} verifies");
                if (received.TryGetValue(uis[i].Counter, out var earlier))
                {
                    // Issued again: only ever for the same digest, with the very same certificate.
                    Assert.Equal(earlier.Digest, intent.Digests[i]);
                    Assert.Equal(earlier.Certificate, uis[i].Certificate);
                }
                received[uis[i].Counter] = (intent.Digests[i], uis[i].Certificate);
            }
        }

        const int rounds = 4;
        for (var round = 0; round <= rounds; round++)
        {
            var usig = await StartAsync(settings);
            using var client = new UsigClient(settings.SocketPath, CallTimeout);
            var identity = await client.GetIdentityAsync(CancellationToken.None);
            var lastLogged = log.Count == 0 ? 0 : log[^1].First + (ulong)log[^1].Digests.Length - 1;
            var highestReceived = received.Count == 0 ? 0 : received.Keys.Max();
            output.WriteLine($"round {round}: restarted at counter {identity.LastCounter}; logged up to {lastLogged}, received up to {highestReceived}");
            // Nothing rolled back, nothing issued beyond what was asked for.
            Assert.InRange(identity.LastCounter, highestReceived, lastLogged);
            // What the program keeps is what the batch that ended at its counter asked it to keep,
            // however the kill fell: the messages are in the same write as the counter.
            Assert.Equal(UsigCore.MaxKeptBytes, identity.MaxKeptBytes);
            byte[][] expectedKept = [];
            if (identity.LastCounter > 0)
            {
                var lastBatch = log.Single(i => i.First + (ulong)i.Digests.Length - 1 == identity.LastCounter);
                expectedKept = keptBy[lastBatch.First] ?? [];
            }
            Assert.Equal(expectedKept.Select(Convert.ToHexString), identity.KeptMessages.Select(Convert.ToHexString));

            // Recovery: every logged intent without its UIs asks again (issued before the kill: the
            // same UIs; not issued: issued now, at the counters the intent names).
            foreach (var intent in log.Where(i => Enumerable.Range(0, i.Digests.Length).Any(k => !received.ContainsKey(i.First + (ulong)k))))
                Record(intent, await client.CreateUisAsync(intent.First, intent.Digests, keptBy[intent.First], CancellationToken.None));
            // The counters are the USIG's alone: an issued one is never given to another digest.
            if (received.Count > 0)
            {
                var taken = received.Keys.ElementAt(random.Next(received.Count));
                await Assert.ThrowsAsync<UsigRefusedException>(() => client.CreateUisAsync(taken, [random.Bytes(32)], CancellationToken.None));
                if (taken + UsigCore.RecentWindow > received.Keys.Max())
                    Assert.Null(await client.ReissueUiAsync(taken, random.Bytes(32), CancellationToken.None));
            }
            if (round == rounds) break;

            // Load, and a kill -9 fired just before the k-th batch is sent: it lands before, during
            // or after that batch's request, durable write or response.
            var killAt = random.Next(1, 40);
            var next = (log.Count == 0 ? 0 : log[^1].First + (ulong)log[^1].Digests.Length - 1) + 1;
            Task? killer = null;
            for (var batch = 0; ; batch++)
            {
                var intent = (next, Enumerable.Range(0, random.Next(1, UsigCore.MaxBatch + 1)).Select(_ => random.Bytes(32)).ToArray());
                log.Add(intent);
                keptBy[next] = random.Next(2) == 0 ? null : intent.Item2.Select(_ => random.Bytes(random.Next(UsigCore.MaxKeptBytes / intent.Item2.Length + 1))).ToArray();
                if (batch == killAt) killer = Task.Run(usig.Kill);
                try
                {
                    Record(intent, await client.CreateUisAsync(intent.Item1, intent.Item2, keptBy[intent.Item1], CancellationToken.None));
                    next += (ulong)intent.Item2.Length;
                }
                catch (Exception e) when (e is IOException or SocketException or TimeoutException)
                {
                    output.WriteLine($"round {round}: batch {batch} (counters {intent.Item1}..) failed: {e.GetType().Name}");
                    break;
                }
                Assert.True(batch < killAt + 1000, "the USIG kept answering after kill -9");
            }
            await killer!.WaitAsync(CallTimeout);
            Assert.True(usig.HasExited);
        }

        // Every logged intent got its UIs, at consecutive counters from 1, each counter for one digest.
        var total = log[^1].First + (ulong)log[^1].Digests.Length - 1;
        Assert.Equal(Enumerable.Range(1, checked((int)total)).Select(c => (ulong)c), received.Keys.Order());
        foreach (var (first, digests) in log)
            for (var i = 0; i < digests.Length; i++) Assert.Equal(digests[i], received[first + (ulong)i].Digest);
    }

    [Fact]
    public async Task Kept_messages_survive_a_restart_of_the_program_and_come_back_in_its_identity()
    {
        var (random, settings, usig) = await StartInitializedAsync();
        byte[][] digests = [random.Bytes(32), random.Bytes(32), random.Bytes(32)];
        byte[][] kept = [random.Bytes(100), [], random.Bytes(UsigCore.MaxKeptBytes - 100)];
        UsigUi[] issued;
        using (var client = new UsigClient(settings.SocketPath, CallTimeout))
        {
            Assert.Equal(2UL, (await client.CreateUisAsync(1, [random.Bytes(32), random.Bytes(32)], [[1], [2]], CancellationToken.None))[^1].Counter);
            issued = await client.CreateUisAsync(3, digests, kept, CancellationToken.None);
            var identity = await client.GetIdentityAsync(CancellationToken.None);
            Assert.Equal((5UL, UsigCore.MaxKeptBytes), (identity.LastCounter, identity.MaxKeptBytes));
            AssertKept(kept, identity.KeptMessages);
        }

        // kill -9, then a new program over the same counter file.
        usig.Kill();
        var restarted = await StartAsync(settings);
        using (var client = new UsigClient(settings.SocketPath, CallTimeout))
        {
            var identity = await client.GetIdentityAsync(CancellationToken.None);
            Assert.Equal(5UL, identity.LastCounter);
            AssertKept(kept, identity.KeptMessages);
            // A retried batch (the silo did not see its answer) gets the same UIs and keeps what it kept.
            var again = await client.CreateUisAsync(3, digests, [[9], [9], [9]], CancellationToken.None);
            Assert.Equal(issued.Select(u => Convert.ToHexString(u.Certificate)), again.Select(u => Convert.ToHexString(u.Certificate)));
            AssertKept(kept, (await client.GetIdentityAsync(CancellationToken.None)).KeptMessages);
            // Over the limit, sent as the bytes a faulty silo would send: refused, nothing changes.
            var over = new WireWriter().U8(UsigWire.CreateUis).U64(6).U8(1).Raw(random.Bytes(32)).KeptMessages([new byte[UsigCore.MaxKeptBytes + 1]]).ToArray();
            var error = await Assert.ThrowsAsync<UsigRefusedException>(() => client.CallAsync(over, CancellationToken.None));
            output.WriteLine(error.Message);
            identity = await client.GetIdentityAsync(CancellationToken.None);
            Assert.Equal(5UL, identity.LastCounter);
            AssertKept(kept, identity.KeptMessages);
            // A batch that keeps nothing clears them, durably.
            await client.CreateUisAsync(6, [random.Bytes(32)], CancellationToken.None);
        }
        restarted.Kill();
        await StartAsync(settings);
        using (var client = new UsigClient(settings.SocketPath, CallTimeout))
        {
            var identity = await client.GetIdentityAsync(CancellationToken.None);
            Assert.Equal(6UL, identity.LastCounter);
            Assert.Empty(identity.KeptMessages);
        }

        static void AssertKept(byte[][] expected, byte[][] actual) =>
            Assert.Equal(expected.Select(Convert.ToHexString), actual.Select(Convert.ToHexString));
    }

    [Fact]
    public async Task Bad_frames_on_the_socket_get_an_error_or_a_closed_connection_and_leave_the_counter_unchanged()
    {
        var (random, settings, usig) = await StartInitializedAsync();
        using (var client = new UsigClient(settings.SocketPath, CallTimeout))
            await client.CreateUisAsync(1, [random.Bytes(32), random.Bytes(32)], CancellationToken.None);

        // A length over the bound: an error frame, then the connection is closed (it cannot be skipped).
        using (var socket = await ConnectAsync(settings.SocketPath))
        {
            await socket.SendAsync(Prefix(UsigWire.MaxFrame + 1));
            var response = await ReadResponseAsync(socket);
            Assert.NotNull(response);
            Assert.Equal(UsigWire.Error, response[0]);
            Assert.Null(await ReadResponseAsync(socket));
        }
        // A zero length: the same.
        using (var socket = await ConnectAsync(settings.SocketPath))
        {
            await socket.SendAsync(Prefix(0));
            Assert.Equal(UsigWire.Error, (await ReadResponseAsync(socket))![0]);
            Assert.Null(await ReadResponseAsync(socket));
        }
        // A frame cut short (length 40, 10 bytes, then the end of the stream): closed, nothing issued.
        using (var socket = await ConnectAsync(settings.SocketPath))
        {
            await socket.SendAsync((byte[])[.. Prefix(40), UsigWire.CreateUis, 0, 0, 0, 0, 0, 0, 0, 3, 1]);
            socket.Shutdown(SocketShutdown.Send);
            Assert.Null(await ReadResponseAsync(socket));
        }
        // A prefix cut short.
        using (var socket = await ConnectAsync(settings.SocketPath))
        {
            await socket.SendAsync(new byte[] { 0, 0 });
            socket.Shutdown(SocketShutdown.Send);
            Assert.Null(await ReadResponseAsync(socket));
        }
        // Well-framed but bad requests: an error each, and the connection goes on serving.
        using (var socket = await ConnectAsync(settings.SocketPath))
        {
            byte[][] bad =
            [
                [9],
                [UsigWire.CreateUis, 0, 0, 0, 0, 0, 0, 0, 3, 200, .. new byte[64]],
                [UsigWire.CreateUis, 0, 0, 0, 0, 0, 0, 0, 3, 2, .. new byte[33]],
                [UsigWire.ReissueUi, 0, 0, 0, 0, 0, 0, 0, 1],
                new WireWriter().U8(UsigWire.VerifyUis).U16(ushort.MaxValue).ToArray(),
            ];
            foreach (var request in bad)
            {
                await socket.SendAsync((byte[])[.. Prefix((uint)request.Length), .. request]);
                Assert.Equal(UsigWire.Error, (await ReadResponseAsync(socket))![0]);
            }
            await socket.SendAsync((byte[])[.. Prefix(1), UsigWire.GetIdentity]);
            var identity = new WireReader((await ReadResponseAsync(socket))!);
            Assert.Equal(UsigWire.Ok, identity.U8());
            Assert.Equal((ReplicaId, Epoch, 2UL), (identity.I32(), identity.U64(), identity.U64()));
        }

        Assert.False(usig.HasExited);
        using var after = new UsigClient(settings.SocketPath, CallTimeout);
        Assert.Equal(2UL, (await after.GetIdentityAsync(CancellationToken.None)).LastCounter);
        Assert.Equal(3UL, (await after.CreateUisAsync(3, [random.Bytes(32)], CancellationToken.None))[0].Counter);
    }

    [Fact]
    public async Task The_silo_sees_the_programs_process_and_its_CPU_time_without_asking_the_program()
    {
        var (random, settings, usig) = await StartInitializedAsync();
        using var client = new UsigClient(settings.SocketPath, CallTimeout);
        Assert.Null(client.PeerProcessCpu()); // never connected: unknown

        await client.GetIdentityAsync(CancellationToken.None);
        var (process, started) = client.PeerProcessCpu() ?? throw new Xunit.Sdk.XunitException("the program's process is seen once connected");
        Assert.Equal($"{Environment.MachineName}:{usig.ProcessId}", process);
        Assert.True(started > TimeSpan.Zero, "a started .NET program has used CPU");

        // Its CPU time grows with work done there, and only there: batches of signatures.
        for (ulong first = 1; first <= 32 * 200; first += 32)
            await client.CreateUisAsync(first, Enumerable.Range(0, 32).Select(_ => random.Bytes(32)).ToArray(), CancellationToken.None);
        var (_, after) = client.PeerProcessCpu()!.Value;
        Assert.True(after > started, $"CPU time grew with 6,400 UIs: {started} then {after}");

        // Gone: unknown again, never a stale figure.
        usig.Kill();
        await WaitUntil(() => client.PeerProcessCpu() is null, "an exited program's CPU time is not reported");
    }

    [Fact]
    public async Task A_connection_from_another_uid_is_refused()
    {
        var random = TestRandom.Create(output);
        var (settings, _) = Setup(random);
        await UsigProcess.InitializeAsync(settings, CancellationToken.None);
        var mine = UsigProcess.CurrentUid();
        var usig = await StartAsync(settings with { AllowedUid = mine + 1 });
        Assert.Equal("600", Convert.ToString((int)File.GetUnixFileMode(settings.SocketPath), 8));

        using var client = new UsigClient(settings.SocketPath, CallTimeout);
        var refused = await Record.ExceptionAsync(() => client.GetIdentityAsync(CancellationToken.None));
        Assert.True(refused is IOException or SocketException, $"refused without an answer, got {refused?.GetType().Name ?? "an answer"}");
        await WaitUntil(() => usig.Output.Any(l => l.Contains($"refused a connection from uid {mine}", StringComparison.Ordinal)), "the program says whom it refused");
        await Assert.ThrowsAnyAsync<Exception>(() => client.CreateUisAsync(1, [random.Bytes(32)], CancellationToken.None));
        Assert.False(usig.HasExited, "a refused peer does not stop the USIG");

        // Nothing was issued: the state still says counter 0 when the program is stopped.
        usig.Kill();
        using var store = FileCounterStore.Open(settings.StatePath, ReplicaId, create: false);
        Assert.Equal(0UL, (await store.ReadAsync(CancellationToken.None))!.Counter);
    }

    [Fact]
    public async Task The_program_refuses_to_serve_without_an_initialised_state_or_for_another_epoch()
    {
        var random = TestRandom.Create(output);
        var (settings, _) = Setup(random);
        var missing = await Assert.ThrowsAsync<InvalidOperationException>(() => UsigProcess.StartAsync(settings, NullLogger.Instance, StartTimeout, CancellationToken.None));
        output.WriteLine(missing.Message);
        Assert.Contains("no stored state", missing.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(settings.StatePath), "serve never creates the counter file");

        await UsigProcess.InitializeAsync(settings, CancellationToken.None);
        var foreign = await Assert.ThrowsAsync<InvalidOperationException>(() => UsigProcess.StartAsync(settings with { Epoch = Epoch + 1 }, NullLogger.Instance, StartTimeout, CancellationToken.None));
        Assert.Contains($"epoch {Epoch + 1}", foreign.Message, StringComparison.Ordinal);
        // init again for the same epoch is refused (it would not reset the counter anyway).
        await Assert.ThrowsAsync<InvalidOperationException>(() => UsigProcess.InitializeAsync(settings, CancellationToken.None));
    }

    private (UsigProgramSettings Settings, Func<UsigUi, byte[], bool> Verify) Setup(Random random)
    {
        var seed = random.Bytes(32);
        var keyPath = Path.Combine(_directory, "usig.key");
        File.WriteAllText(keyPath, "MINBFT ED25519 PRIVATE KEY V1\n" + Convert.ToBase64String(seed) + "\n");
        var verifier = UsigTestKit.VerifierFor(ReplicaId, UsigVerificationKey.Ed25519(Epoch, new Ed25519UsigCertifier(seed).PublicKey));
        var settings = new UsigProgramSettings(UsigProgramSettings.DefaultProgram, ReplicaId, Epoch,
            Path.Combine(_directory, "usig.state"), keyPath, Path.Combine(_directory, "usig.sock"));
        return (settings, (ui, digest) => verifier.Verify(ReplicaId, ui.ToUniqueIdentifier(), digest));
    }

    /// <summary>A program started on a freshly initialised state, with the test's seeded random.</summary>
    private async Task<(Random Random, UsigProgramSettings Settings, UsigProcess Usig)> StartInitializedAsync()
    {
        var random = TestRandom.Create(output);
        var (settings, _) = Setup(random);
        await UsigProcess.InitializeAsync(settings, CancellationToken.None);
        return (random, settings, await StartAsync(settings));
    }

    private async Task<UsigProcess> StartAsync(UsigProgramSettings settings)
    {
        var process = await UsigProcess.StartAsync(settings, NullLogger.Instance, StartTimeout, CancellationToken.None);
        _processes.Add(process);
        return process;
    }

    private static async Task<Socket> ConnectAsync(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(path));
        return socket;
    }

    /// <summary>One response frame's body, or null when the program closed (or reset) the connection.</summary>
    private static async Task<byte[]?> ReadResponseAsync(Socket socket)
    {
        using var timeout = new CancellationTokenSource(CallTimeout);
        var prefix = new byte[4];
        if (!await ReceiveExactlyAsync(socket, prefix, timeout.Token)) return null;
        var body = new byte[BinaryPrimitives.ReadUInt32BigEndian(prefix)];
        Assert.InRange(body.Length, 1, UsigWire.MaxFrame);
        Assert.True(await ReceiveExactlyAsync(socket, body, timeout.Token), "a whole response frame");
        return body;
    }

    private static async Task<bool> ReceiveExactlyAsync(Socket socket, byte[] buffer, CancellationToken cancellationToken)
    {
        for (var at = 0; at < buffer.Length;)
        {
            int got;
            try
            {
                got = await socket.ReceiveAsync(buffer.AsMemory(at), SocketFlags.None, cancellationToken);
            }
            catch (SocketException)
            {
                return false;
            }
            if (got == 0) return false;
            at += got;
        }
        return true;
    }

    private static Task WaitUntil(Func<bool> condition, string what) =>
        Conditions.WaitUntilAsync(() => Task.FromResult((condition(), "not yet")), CallTimeout, what);

    private static byte[] Prefix(uint length)
    {
        var prefix = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(prefix, length);
        return prefix;
    }
}
