using MinBft.Messages;
using MinBft.Protocol;

namespace MinBft.Tests.Simulation;

/// <summary>
/// A replica's durable log in the simulator: exactly what completed <see cref="LogWrite"/>s left,
/// checked against the journal contract (consecutive intents, UIs only for stored intents, a UI
/// never replaced by another). What a crash keeps of a replica's own stream.
/// </summary>
internal sealed class SimJournal
{
    private readonly List<CertifiedMessage> _entries = [];

    public ulong First { get; private set; } = 1;
    public long View { get; private set; }
    public int Writes { get; private set; }
    public IReadOnlyList<CertifiedMessage> Entries => _entries;

    public void Apply(LogWrite write)
    {
        if (write.RestartAt is { } restart)
        {
            _entries.Clear();
            First = restart;
        }
        var next = First + (ulong)_entries.Count;
        if (write.Intents.Count > 0 && write.FirstIntentCounter != next)
            throw new InvalidOperationException($"journal: intents at {write.FirstIntentCounter}, the log ends before {next}");
        _entries.AddRange(write.Intents);
        foreach (var ui in write.Uis)
        {
            if (ui.Counter < First || ui.Counter >= First + (ulong)_entries.Count)
                throw new InvalidOperationException($"journal: a UI for counter {ui.Counter}, outside the log {First}..{First + (ulong)_entries.Count - 1}");
            var index = (int)(ui.Counter - First);
            var current = _entries[index].Ui;
            if (!current.IsNone && !current.Certificate.AsSpan().SequenceEqual(ui.Certificate))
                throw new InvalidOperationException($"journal: a second, different UI for counter {ui.Counter}");
            _entries[index] = _entries[index].WithUi(ui);
        }
        View = write.View;
        if (write.KeepFrom > First)
        {
            var drop = (int)Math.Min((ulong)_entries.Count, write.KeepFrom - First);
            _entries.RemoveRange(0, drop);
            First += (ulong)drop;
        }
        Writes++;
    }
}
