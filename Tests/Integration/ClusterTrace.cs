using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging;
using MinBft.Messages;
using Xunit.Abstractions;

namespace MinBft.Tests.Integration;

/// <summary>
/// What a test cluster's replicas did lately: the messages delivered to them and their log lines
/// (MinBFT at Debug, the rest at Error), in bounded rings. A test cluster writes them to the
/// test's output when it is disposed, which the console logger shows only for a failed test: an
/// intermittent failure then comes with the view changes, retransmissions, state transfers and
/// rejections that led to it, instead of only the assertion.
/// </summary>
internal sealed class ClusterTrace(Stopwatch clock)
{
    // Two rings: PREPAREs, COMMITs, CHECKPOINTs, retransmission and state requests (a stalled
    // replica asks every tick) and per-message debug lines come by the thousand and would push
    // out the rare lines that explain a failure (view changes, state chunks, restarts, warnings),
    // which keep a ring of their own.
    private readonly Ring _chatter = new(4000);
    private readonly Ring _events = new(6000);

    public void Add(string line) => Add(line, chatter: false);

    /// <summary>Whether a kept event line (log lines, view changes, restarts) contains <paramref name="text"/>.</summary>
    public bool HasEvent(string text) => _events.Snapshot().Any(l => l.Line.Contains(text, StringComparison.Ordinal));

    internal void Add(string line, bool chatter) => (chatter ? _chatter : _events).Add(clock.Elapsed, line);

    public void Delivered(int target, ReplicaMessage? message) =>
        Add($"r{target} <- {Describe(message)}", chatter: message is Prepare or Commit or Checkpoint or RetransmitRequest or StateRequest);

    /// <summary>One line per message: its kind, sender and the fields that tell where the protocol is.</summary>
    public static string Describe(ReplicaMessage? message) => message switch
    {
        null => "null",
        Prepare p => $"PREPARE from {p.PrimaryId} view {p.View} seq {p.Sequence} [{Requests(p.Batch)}] ui {p.Ui.Counter}{(p.ViewStart is null ? "" : " +view-start")}",
        Commit c => $"COMMIT from {c.ReplicaId} view {c.View} seq {c.Prepare.Sequence} ui {c.Ui.Counter}",
        Checkpoint k => $"CHECKPOINT from {k.ReplicaId} view {k.View} seq {k.Sequence}{(k.IsViewStart ? " view-start" : "")} ui {k.Ui.Counter}",
        ReqViewChange r => $"REQ-VIEW-CHANGE from {r.ReplicaId} {r.CurrentView}->{r.NewView}",
        ViewChange v => $"VIEW-CHANGE from {v.ReplicaId} to view {v.NewView} stable {v.CheckpointCertificate.Sequence} log {v.Log.Length} " +
            $"({(v.Log.Length == 0 ? "-" : $"{v.Log[0].Ui.Counter}..{v.Log[^1].Ui.Counter}")}) ui {v.Ui.Counter}",
        NewView n => $"NEW-VIEW from {n.PrimaryId} view {n.View} ({n.ViewChanges.Length} view-changes) ui {n.Ui.Counter}",
        RetransmitRequest t => $"RETRANSMIT-REQUEST from {t.ReplicaId} for {t.TargetId}'s stream from {t.FromCounter}",
        StateRequest s => $"STATE-REQUEST from {s.ReplicaId} min {s.MinSequence} seq {s.Sequence} chunk {s.Chunk}",
        StateChunk s => $"STATE-CHUNK from {s.ReplicaId} seq {s.Certificate.Sequence} view {s.View} chunk {s.Index + 1}/{s.Count}",
        CertifiedMessage m => $"{m.GetType().Name} from {m.Sender} ui {m.Ui.Counter}",
        _ => $"{message.GetType().Name} from {message.Sender}",
    };

    /// <summary>A client request submitted to a replica (by a client proxy, or forwarded by a backup).</summary>
    public void Submitted(int target, Request? request) =>
        Add($"r{target} <- REQUEST {(request is null ? "null" : Requests([request]))}", chatter: true);

    /// <summary>Requests as "client:seq" (the first 8 hex digits of the client id).</summary>
    private static string Requests(Request[] batch) =>
        string.Join(" ", batch.Select(r => $"{(r.ClientId.Length > 8 ? r.ClientId[..8] : r.ClientId)}:{r.Seq}"));

    public void WriteTo(ITestOutputHelper output)
    {
        var lines = _events.Snapshot().Concat(_chatter.Snapshot()).OrderBy(l => l.At).ToArray();
        output.WriteLine($"--- cluster trace: {lines.Length} lines; not kept: {_events.Dropped} older events, {_chatter.Dropped} older routine messages ---");
        foreach (var (at, line) in lines) output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"[{at.TotalSeconds:F2}s] {line}"));
        output.WriteLine("--- end of cluster trace ---");
    }

    private sealed class Ring(int capacity)
    {
        private readonly ConcurrentQueue<(TimeSpan At, string Line)> _lines = new();
        private int _count;
        private long _dropped;

        public long Dropped => Interlocked.Read(ref _dropped);

        public void Add(TimeSpan at, string line)
        {
            _lines.Enqueue((at, line));
            if (Interlocked.Increment(ref _count) <= capacity) return;
            if (_lines.TryDequeue(out _))
            {
                Interlocked.Decrement(ref _count);
                Interlocked.Increment(ref _dropped);
            }
        }

        public (TimeSpan At, string Line)[] Snapshot() => _lines.ToArray();
    }

    /// <summary>Log lines of one silo into the trace, prefixed with its fault domain.</summary>
    public ClusterTraceLoggerProvider LoggerProvider(int? domain) => new(this, domain is { } d ? $"d{d}" : "gw");

    internal sealed class TraceLogger(ClusterTrace trace, string silo, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var error = exception is null ? "" : $" ({exception.GetType().Name}: {exception.Message})";
            trace.Add($"{silo} {logLevel.ToString()[..4].ToLowerInvariant()} {category}: {formatter(state, exception)}{error}", chatter: logLevel <= LogLevel.Debug);
        }
    }
}

/// <summary>A silo's loggers writing into a <see cref="ClusterTrace"/> (a type of its own, so that log filters can name it).</summary>
internal sealed class ClusterTraceLoggerProvider(ClusterTrace trace, string silo) : ILoggerProvider
{
    public ILogger CreateLogger(string categoryName) => new ClusterTrace.TraceLogger(trace, silo, categoryName[(categoryName.LastIndexOf('.') + 1)..]);

    public void Dispose()
    {
    }
}
