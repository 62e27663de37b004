using System.Globalization;
using MinBft.Messages;

namespace MinBft.Hosting.Journal;

internal enum JournalWriteKind
{
    Append,
    RestartAt,
}

/// <summary>
/// One validated write, as the backends store it. <see cref="Uis"/> holds only UIs the journal
/// does not hold yet; <see cref="FirstAfter"/> and <see cref="NextAfter"/> are the journal's
/// positions once the write is applied (entries below <see cref="FirstAfter"/> are dropped).
/// </summary>
internal sealed record JournalWrite(
    JournalWriteKind Kind,
    long Attempt,
    long View,
    ulong FirstIntentCounter,
    CertifiedMessage[] Intents,
    UniqueIdentifier[] Uis,
    ulong FirstAfter,
    ulong NextAfter);

/// <summary>
/// What a journal instance knows of its stored contents without reading them: the view, the
/// counters <c>[First, Next)</c> and which of them have a UI (and which). Every write is
/// planned (validated) against it before anything is stored, and applied to it once stored.
/// </summary>
internal sealed class JournalIndex
{
    // Counters stay below 2^63: SQLite integers are signed.
    internal const ulong MaxCounter = long.MaxValue;

    // UIs of counters First.. (null: an intent without UI), from _head on; the prefix before
    // _head was trimmed and is compacted away now and then.
    private readonly List<UniqueIdentifier?> _uis = [];
    private int _head;

    private JournalIndex(long view, ulong first)
    {
        View = view;
        First = first;
    }

    public long View { get; private set; }

    public ulong First { get; private set; }

    public ulong Next => First + (ulong)Count;

    public int Count => _uis.Count - _head;

    public static JournalIndex Of(JournalContents contents)
    {
        ArgumentNullException.ThrowIfNull(contents);
        var index = new JournalIndex(contents.View, contents.FirstCounter);
        for (var i = 0; i < contents.Entries.Count; i++)
        {
            var ui = contents.Entries[i].Ui;
            index._uis.Add(ui.IsNone ? null : ui);
        }
        index.CheckInvariants();
        return index;
    }

    /// <summary>The stored UI of <paramref name="counter"/> (in <c>[First, Next)</c>), or null for an intent.</summary>
    public UniqueIdentifier? UiAt(ulong counter) => _uis[_head + (int)(counter - First)];

    public JournalWrite PlanAppend(JournalAppend append, long attempt)
    {
        ArgumentNullException.ThrowIfNull(append);
        if (append.Intents is null || append.Uis is null) throw Invalid("Intents and Uis must not be null");
        if (append.View < View) throw Invalid(Format($"the view goes back from {View} to {append.View}"));

        var intents = new CertifiedMessage[append.Intents.Count];
        var next = Next;
        if (intents.Length > 0)
        {
            if (append.FirstIntentCounter != next)
                throw Invalid(Format($"the first intent has counter {append.FirstIntentCounter}, the journal's next counter is {next}"));
            if ((ulong)intents.Length > MaxCounter - next) throw Invalid("counters would overflow");
            for (var i = 0; i < intents.Length; i++)
            {
                var intent = append.Intents[i] ?? throw Invalid(Format($"intent {i} is null"));
                var counter = next + (ulong)i;
                if (intent.Ui is null) throw Invalid(Format($"intent at counter {counter} has a null UI"));
                if (!intent.Ui.IsNone && intent.Ui.Counter != counter)
                    throw Invalid(Format($"intent at counter {counter} carries the UI of counter {intent.Ui.Counter}"));
                intents[i] = intent;
            }
            next += (ulong)intents.Length;
        }

        // New UIs only: a UI equal to the stored (or given) one is a retry and is skipped.
        var uis = new List<UniqueIdentifier>(append.Uis.Count);
        Dictionary<ulong, UniqueIdentifier>? given = null;
        foreach (var ui in append.Uis)
        {
            if (ui is null || ui.IsNone) throw Invalid("a UI is missing or none");
            var counter = ui.Counter;
            if (counter < First || counter >= next)
                throw Invalid(Format($"UI for counter {counter} refers to no stored entry (stored: [{First}, {next}))"));
            var existing = counter < Next ? UiAt(counter) : intents[(int)(counter - Next)].Ui is { IsNone: false } own ? own : null;
            if (existing is null && given is not null && given.TryGetValue(counter, out var earlier)) existing = earlier;
            if (existing is not null)
            {
                if (!SameUi(existing, ui)) throw Invalid(Format($"a second, different UI for counter {counter}"));
                continue;
            }
            (given ??= [])[counter] = ui;
            uis.Add(ui);
        }

        if (append.KeepFrom > next) throw Invalid(Format($"KeepFrom {append.KeepFrom} lies beyond the next counter {next}"));
        var first = Math.Max(First, append.KeepFrom);
        // FirstIntentCounter is stored as the counter the intents start at, even when there are none.
        return new JournalWrite(JournalWriteKind.Append, attempt, append.View, Next, intents, [.. uis], first, next);
    }

    public JournalWrite PlanRestartAt(ulong nextCounter, long attempt)
    {
        if (nextCounter == 0 || nextCounter > MaxCounter) throw Invalid(Format($"RestartAt({nextCounter}): counters start at 1"));
        if (nextCounter < First) throw Invalid(Format($"RestartAt({nextCounter}) lies below the first stored counter {First}"));
        for (var c = nextCounter; c < Next; c++)
        {
            if (UiAt(c) is not null)
                throw Invalid(Format($"RestartAt({nextCounter}) would reuse counter {c}, which has a durable UI"));
        }
        return new JournalWrite(JournalWriteKind.RestartAt, attempt, View, nextCounter, [], [], nextCounter, nextCounter);
    }

    /// <summary>
    /// A retry of an append after a failed attempt that turned out durable (<paramref name="landed"/>,
    /// already applied): what is left to write. The retry must repeat the landed intents first.
    /// </summary>
    public static JournalAppend Rebase(JournalAppend retry, JournalWrite landed)
    {
        ArgumentNullException.ThrowIfNull(retry);
        if (landed.Kind != JournalWriteKind.Append || retry.Intents is null || retry.Uis is null) return retry;
        var intents = retry.Intents;
        var firstIntent = retry.FirstIntentCounter;
        // An append that starts after the landed write's intents does not repeat them: it is
        // not a retry of it (its UIs may still name what the landed write stored).
        if (landed.Intents.Length > 0 && (intents.Count == 0 || firstIntent < landed.NextAfter))
        {
            if (intents.Count < landed.Intents.Length || retry.FirstIntentCounter != landed.FirstIntentCounter)
                throw Invalid("a retry after a failed append must repeat that append's intents first");
            for (var i = 0; i < landed.Intents.Length; i++)
            {
                if (!Equals(intents[i], landed.Intents[i]))
                    throw Invalid(Format($"a retry after a failed append changed its intent at counter {landed.FirstIntentCounter + (ulong)i}"));
            }
            intents = [.. intents.Skip(landed.Intents.Length)];
            firstIntent = landed.NextAfter;
        }
        // UIs the landed attempt stored may since have been trimmed with it: drop them here.
        var uis = retry.Uis.Where(u => u is null || !landed.Uis.Any(l => SameUi(l, u))).ToArray();
        return retry with { FirstIntentCounter = firstIntent, Intents = intents, Uis = uis };
    }

    public void Apply(JournalWrite write)
    {
        switch (write.Kind)
        {
            case JournalWriteKind.Append:
                if (write.Intents.Length > 0 && write.FirstIntentCounter != Next)
                    throw new InvalidOperationException("journal write applied out of order");
                foreach (var intent in write.Intents) _uis.Add(intent.Ui.IsNone ? null : intent.Ui);
                foreach (var ui in write.Uis) _uis[_head + (int)(ui.Counter - First)] = ui;
                View = write.View;
                Trim(write.FirstAfter);
                break;
            case JournalWriteKind.RestartAt:
                _uis.Clear();
                _head = 0;
                First = write.NextAfter;
                break;
        }
        if (Next != write.NextAfter || First != write.FirstAfter)
            throw new InvalidOperationException($"journal index at [{First}, {Next}) after a write planned for [{write.FirstAfter}, {write.NextAfter})");
        CheckInvariants();
    }

    /// <summary>UIs are compared by value (the certificate is an array, which records compare by reference).</summary>
    public static bool SameUi(UniqueIdentifier a, UniqueIdentifier b) =>
        a.Epoch == b.Epoch && a.Counter == b.Counter && a.Certificate.AsSpan().SequenceEqual(b.Certificate);

    private void Trim(ulong first)
    {
        if (first <= First) return;
        _head += (int)(first - First);
        First = first;
        // Compact once the dropped prefix dominates: amortized O(1) per entry.
        if (_head > 1024 && _head > _uis.Count / 2)
        {
            _uis.RemoveRange(0, _head);
            _head = 0;
        }
    }

    private void CheckInvariants()
    {
        if (First == 0) throw new InvalidOperationException("journal counters start at 1");
        if (Next > MaxCounter + 1) throw new InvalidOperationException("journal counters overflow");
        if (_head < 0 || _head > _uis.Count) throw new InvalidOperationException("journal index head out of range");
    }

    private static string Format(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    private static ArgumentException Invalid(string reason) => new($"Invalid journal write: {reason}. Nothing was stored.");
}
