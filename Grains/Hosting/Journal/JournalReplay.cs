using System.Globalization;
using MinBft.Messages;

namespace MinBft.Hosting.Journal;

/// <summary>
/// Rebuilds <see cref="JournalContents"/> from a <see cref="JournalHead"/> and the records after
/// it, in order. The head may summarize records whose entries all lay below the first counter
/// kept: intents and UIs below <see cref="First"/> are then skipped, and the next counter may
/// lie below the first one until the records catch up.
/// </summary>
internal sealed class JournalReplay
{
    private readonly string _journal;
    // Entries of counters [_next - Count, _next), all >= _first.
    private readonly List<CertifiedMessage> _entries = [];
    private ulong _first;
    private ulong _next;
    private long _view;

    public JournalReplay(string journal, JournalHead head)
    {
        _journal = journal;
        _first = head.FirstCounter;
        _next = head.NextCounter;
        _view = head.View;
        if (_first == 0 || _next == 0) throw Corrupt("the head names counter 0");
    }

    public ulong First => _first;

    public ulong Next => _next;

    public long View => _view;

    public void Apply(long index, JournalRecord record)
    {
        switch (record.Kind)
        {
            case JournalRecordKind.Open:
                break;
            case JournalRecordKind.Append:
                if (record.Intents.Length > 0 && record.FirstIntentCounter != _next)
                    throw Corrupt(Format($"record {index} appends at counter {record.FirstIntentCounter}, the next counter is {_next}"));
                foreach (var intent in record.Intents)
                {
                    if (_next >= _first) _entries.Add(intent);
                    _next++;
                }
                foreach (var ui in record.Uis)
                {
                    var start = _next - (ulong)_entries.Count;
                    if (ui.Counter >= _next) throw Corrupt(Format($"record {index} has a UI for counter {ui.Counter}, beyond the next counter {_next}"));
                    if (ui.Counter < start) continue; // below the kept entries: dropped anyway
                    var i = (int)(ui.Counter - start);
                    if (_entries[i].Ui.IsNone) _entries[i] = _entries[i].WithUi(ui);
                }
                if (record.FirstAfter > _first)
                {
                    var start = _next - (ulong)_entries.Count;
                    if (record.FirstAfter > start) _entries.RemoveRange(0, (int)Math.Min((ulong)_entries.Count, record.FirstAfter - start));
                    _first = record.FirstAfter;
                }
                break;
            case JournalRecordKind.DropFrom:
            {
                var start = _next - (ulong)_entries.Count;
                var keep = record.NextAfter <= start ? 0 : (int)Math.Min((ulong)_entries.Count, record.NextAfter - start);
                _entries.RemoveRange(keep, _entries.Count - keep);
                _next = record.NextAfter;
                break;
            }
            case JournalRecordKind.RestartAt:
                _entries.Clear();
                _first = _next = record.NextAfter;
                break;
            default:
                throw Corrupt(Format($"record {index} is of unknown kind {record.Kind}"));
        }
        _view = record.View;
        if (record.NextAfter != _next)
            throw Corrupt(Format($"record {index} says the next counter is {record.NextAfter}, replay gives {_next}"));
    }

    public JournalContents ToContents()
    {
        if (_next < _first || (ulong)_entries.Count != _next - _first)
            throw Corrupt(Format($"replay ends with {_entries.Count} entries for counters [{_first}, {_next})"));
        return new JournalContents(_view, _first, _entries);
    }

    private InvalidDataException Corrupt(string reason) => new($"Stored journal of {_journal} is inconsistent: {reason}.");

    private static string Format(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
