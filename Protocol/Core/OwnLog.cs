using MinBft.Messages;

namespace MinBft.Protocol;

/// <summary>
/// This replica's own USIG stream, with one owner. A message gets its counter when it is created
/// (an intent, <see cref="Append"/>); the host makes intents durable (<see cref="TakeWrite"/>,
/// <see cref="OnWritten"/>), then the USIG certifies durable intents in batches
/// (<see cref="TakeCertifyBatch"/>, <see cref="OnCertified"/>), and only then is a message sent.
/// A batch whose encoded messages fit what the USIG keeps (<c>maxKeptBytes</c>) is certified
/// while its journal write is in flight instead of after it: the USIG keeps the messages in the
/// same durable write as their counters (USIG-KEPT-MESSAGES-DESIGN.md), and such a batch is taken
/// only once every earlier certified intent is durable, because it replaces what the USIG kept.
/// UIs become durable lazily, with the next write of intents (or in a write of their own once
/// <see cref="UiOnlyWriteThreshold"/> wait): until then the USIG can re-issue them, so the
/// log never runs further ahead of its durable UIs than the USIG's re-issue window.
/// Positions (counters), asserted at every change:
/// <c>First - 1 &lt;= UiDurable &lt;= Certified &lt;= Requested &lt;= Appended</c>,
/// <c>Durable &lt;= Appended</c>, <c>Requested - UiDurable &lt;= ReissueWindow</c>, and
/// <c>Requested &lt;= Durable</c> unless the last batch was kept, from <c>Durable + 1</c> or
/// before, through <c>Requested</c>. Persist before send follows: a message is certified only
/// once its intent is durable in the journal or kept by the USIG with its counter, and is sent
/// only once certified. After a crash every counter the USIG issued is recovered: its intent is
/// durable or kept, and its UI is either durable or within the window.
/// </summary>
internal sealed class OwnLog(int reissueWindow, int maxCertifyBatch, int maxKeptBytes = 0, IKeptMessageCodec? keptCodec = null)
{
    private readonly List<Entry> _entries = []; // counters First .. Appended
    private Write? _writing;
    private bool _certifying;
    private long _writtenView = -1;
    // Where the durable log may start (entries below are settled and may be dropped from storage).
    private ulong _keepFrom;
    private ulong _writtenKeepFrom;
    // Where memory may start (entries below are no longer needed for retransmission or VIEW-CHANGE).
    private ulong _memoryKeepFrom;
    // After a counter gap found by a restart: where the stored log starts over, written before anything else.
    private ulong? _restartAt;
    // UIs re-issued after a restart, through here: due in the first write.
    private ulong _reissuedThrough;
    // The last batch the USIG was asked to keep (0, 0: none yet): counters _keptFrom.._keptThrough.
    private ulong _keptFrom;
    private ulong _keptThrough;
    // The counter whose message was found too large to keep (0: none): it waits for the journal,
    // and is not encoded again at every step until then.
    private ulong _tooLargeToKeep;

    private sealed class Entry(CertifiedMessage message, Sha256Digest digest)
    {
        public CertifiedMessage Message { get; set; } = message;
        public Sha256Digest Digest { get; } = digest;
    }

    private sealed record Write(ulong IntentsThrough, ulong UisThrough, ulong KeepFrom, long View);

    /// <summary>Counter of the first entry kept in memory (the next counter when none is).</summary>
    public ulong First { get; private set; } = 1;

    /// <summary>The last counter given to a message (an intent, certified or not).</summary>
    public ulong Appended => First + (ulong)_entries.Count - 1;

    /// <summary>Intents durable through here.</summary>
    public ulong Durable { get; private set; }

    /// <summary>Digests handed to the USIG through here.</summary>
    public ulong Requested { get; private set; }

    /// <summary>UIs received through here: these messages are complete and sent.</summary>
    public ulong Certified { get; private set; }

    /// <summary>UIs durable in the log through here.</summary>
    public ulong UiDurable { get; private set; }

    public int ReissueWindow => reissueWindow;

    /// <summary>UIs pending that make a write of their own due: with fewer, the USIG still has room
    /// for a whole certify batch inside its re-issue window (so certification never waits on them).</summary>
    public int UiOnlyWriteThreshold => Math.Max(1, reissueWindow - maxCertifyBatch);

    /// <summary>Messages kept in memory (for retransmission and VIEW-CHANGE), certified or not.</summary>
    public int Count => _entries.Count;

    /// <summary>Messages created and not certified yet.</summary>
    public int Uncertified => (int)(Appended - Certified);

    public bool WriteInFlight => _writing is not null;

    /// <summary>Since when certified UIs wait for a write (as of the last <see cref="TakeWrite"/>); null when none waits.</summary>
    public TimeSpan? UisWaitingSince { get; private set; }

    public bool CertifyInFlight => _certifying;

    /// <summary>Gives <paramref name="message"/> (no UI yet) the next counter; returns it.</summary>
    public ulong Append(CertifiedMessage message, Sha256Digest digest)
    {
        ProtocolInvariantException.Check(message.Ui.IsNone, "a message is certified once");
        _entries.Add(new Entry(message, digest));
        CheckPositions();
        return Appended;
    }

    /// <summary>
    /// The next durable write, if none is in flight and there is something to write: the intents
    /// appended since the last write, the UIs certified since, the view and the trim point.
    /// Everything produced while a write is in flight goes into the next one (group commit).
    /// </summary>
    public LogWrite? TakeWrite(long view, TimeSpan now, TimeSpan lazyUiWait)
    {
        if (Certified == UiDurable) UisWaitingSince = null;
        else UisWaitingSince ??= now;
        if (_writing is not null) return null;
        var restartAt = _restartAt;
        // UIs alone wait for the next write of intents: the USIG can re-issue them meanwhile, so a
        // write (and its fsync) of its own is due only before they could block the next certify
        // batch, or once they waited lazyUiWait. At low load this saves a third synced write per
        // message, and the fsync that would queue in front of a peer's.
        var waitedEnough = UisWaitingSince is { } since && now - since >= lazyUiWait;
        var uisDue = UiDurable < _reissuedThrough || Certified - UiDurable >= (ulong)(waitedEnough ? 1 : UiOnlyWriteThreshold);
        if (restartAt is null && Appended == Durable && !uisDue && _keepFrom == _writtenKeepFrom && view == _writtenView) return null;
        var intents = new List<CertifiedMessage>((int)(Appended - Durable));
        for (var c = Durable + 1; c <= Appended; c++) intents.Add(EntryAt(c).Message);
        // UIs for intents written before; the certified intents in this write carry their own
        // (certified while the write was pending: the USIG kept them).
        var uisThrough = Math.Min(Certified, Durable);
        var uis = new List<UniqueIdentifier>((int)(uisThrough - Math.Min(UiDurable, uisThrough)));
        for (var c = UiDurable + 1; c <= uisThrough; c++) uis.Add(EntryAt(c).Message.Ui);
        // The UIs in this write are durable with it; nothing after them is ever settled yet.
        ProtocolInvariantException.Check(_keepFrom <= Certified + 1, "the durable log keeps every message not settled");
        var keepFrom = _keepFrom;
        _writing = new Write(Appended, Certified, keepFrom, view);
        _restartAt = null;
        return new LogWrite(view, Durable + 1, intents, uis, keepFrom, restartAt);
    }

    /// <summary>The write handed out by <see cref="TakeWrite"/> is durable. Returns the intents it
    /// made durable, in counter order.</summary>
    public IReadOnlyList<CertifiedMessage> OnWritten()
    {
        var write = _writing ?? throw new ProtocolInvariantException("a write completes only after it was handed out");
        _writing = null;
        var durable = new List<CertifiedMessage>((int)(write.IntentsThrough - Durable));
        for (var c = Durable + 1; c <= write.IntentsThrough; c++) durable.Add(EntryAt(c).Message);
        Durable = write.IntentsThrough;
        UiDurable = write.UisThrough;
        _writtenKeepFrom = write.KeepFrom;
        _writtenView = write.View;
        TrimMemory();
        CheckPositions();
        return durable;
    }

    /// <summary>The next batch for the USIG, if none is in flight: at most <c>maxCertifyBatch</c>
    /// digests, and never further ahead of the durable UIs than the window. Durable intents first;
    /// with none waiting, intents not durable yet whose encoded messages fit what the USIG keeps
    /// (<c>Kept</c>: those messages), once every earlier certified intent is durable.</summary>
    public (ulong FirstCounter, byte[][] Digests, byte[][]? Kept)? TakeCertifyBatch()
    {
        if (_certifying) return null;
        var window = UiDurable + (ulong)reissueWindow;
        var first = Requested + 1;
        var limit = Math.Min(Durable, window);
        byte[][]? kept = null;
        int count;
        if (limit > Requested)
        {
            count = (int)Math.Min(limit - Requested, (ulong)maxCertifyBatch);
        }
        else
        {
            // A kept batch replaces what the USIG kept: the last one must be durable in the journal.
            if (keptCodec is null || maxKeptBytes <= 0 || Requested > Durable || _tooLargeToKeep == first) return null;
            var upTo = Math.Min(Appended, window);
            if (upTo <= Requested) return null;
            var candidates = (int)Math.Min(upTo - Requested, (ulong)maxCertifyBatch);
            var encoded = new List<byte[]>(candidates);
            var bytes = 0L;
            for (var i = 0; i < candidates; i++)
            {
                var intent = EntryAt(first + (ulong)i).Message;
                // The requests alone already too large: not worth encoding (a full batch under load).
                if (bytes + (Prepare.In(intent) is { } prepare ? Encoding.MessageLimits.BatchBytes(prepare.Batch) : 0) > maxKeptBytes) break;
                var message = keptCodec.Encode(intent);
                if (bytes + message.Length > maxKeptBytes) break;
                bytes += message.Length;
                encoded.Add(message);
            }
            if (encoded.Count == 0)
            {
                _tooLargeToKeep = first; // certified once durable, as before
                return null;
            }
            kept = [.. encoded];
            count = kept.Length;
            (_keptFrom, _keptThrough) = (first, first + (ulong)count - 1);
        }
        var digests = new byte[count][];
        for (var i = 0; i < count; i++) digests[i] = EntryAt(first + (ulong)i).Digest.ToArray();
        Requested += (ulong)count;
        _certifying = true;
        CheckPositions();
        return (first, digests, kept);
    }

    /// <summary>The USIG certified the batch handed out by <see cref="TakeCertifyBatch"/>; returns
    /// the messages now complete, in counter order, each with the digest it was certified under.</summary>
    public IReadOnlyList<(CertifiedMessage Message, Sha256Digest Digest)> OnCertified(IReadOnlyList<UniqueIdentifier> uis)
    {
        ProtocolInvariantException.Check(_certifying, "UIs arrive only for a batch handed to the USIG");
        ProtocolInvariantException.Check(uis.Count == (int)(Requested - Certified),
            $"the USIG certifies the whole batch (asked {Requested - Certified}, got {uis.Count})");
        var certified = new List<(CertifiedMessage, Sha256Digest)>(uis.Count);
        foreach (var ui in uis)
        {
            // A counter out of sequence means another caller used this USIG, or it broke its promise.
            ProtocolInvariantException.Check(ui.Counter == Certified + 1,
                $"own USIG counters are sequential (expected {Certified + 1}, got {ui.Counter})");
            var entry = EntryAt(ui.Counter);
            entry.Message = entry.Message.WithUi(ui);
            Certified = ui.Counter;
            certified.Add((entry.Message, entry.Digest));
        }
        _certifying = false;
        CheckPositions();
        return certified;
    }

    /// <summary>Whether a message of type <typeparamref name="T"/> waits to be certified.</summary>
    public bool HasUncertified<T>() where T : CertifiedMessage
    {
        for (var c = Certified + 1; c <= Appended; c++)
            if (EntryAt(c).Message is T) return true;
        return false;
    }

    /// <summary>Certified messages from <paramref name="from"/> on, at most <paramref name="max"/>
    /// (retransmission; a counter below the first kept gets the log from its start).</summary>
    public IEnumerable<CertifiedMessage> CertifiedFrom(ulong from, int max)
    {
        var start = from <= First ? First : from;
        for (var c = start; c <= Certified && c < start + (ulong)max; c++) yield return EntryAt(c).Message;
    }

    /// <summary>Every certified message kept in memory from <paramref name="from"/> on (from the first
    /// kept if lower), oldest first: a VIEW-CHANGE's log from its anchor.</summary>
    public IReadOnlyList<CertifiedMessage> CertifiedMessages(ulong from = 0)
    {
        var start = Math.Max(First, from);
        var messages = new List<CertifiedMessage>((int)(Certified + 1 - Math.Min(start, Certified + 1)));
        for (var c = start; c <= Certified; c++) messages.Add(EntryAt(c).Message);
        return messages;
    }

    /// <summary>Memory may drop entries below <paramref name="counter"/> (a VIEW-CHANGE anchor); done
    /// once their UIs are durable, since the next write needs them until then.</summary>
    public void KeepInMemoryFrom(ulong counter)
    {
        if (counter > _memoryKeepFrom) _memoryKeepFrom = counter;
        TrimMemory();
    }

    /// <summary>The durable log may drop entries below <paramref name="counter"/> (in the next write).</summary>
    public void KeepDurableFrom(ulong counter)
    {
        if (counter > _keepFrom) _keepFrom = counter;
    }

    /// <summary>The last counter restored as a durable intent that was not certified before the
    /// restart (0: none). The USIG certifies these first; they were decided before the crash.</summary>
    public ulong RestoredIntentsThrough { get; private set; }

    /// <summary>
    /// Resumes from the durable log after a restart: <paramref name="entries"/> from
    /// <paramref name="first"/> on, gap-free, durable; the first <paramref name="certifiedCount"/>
    /// certified, the rest intents whose UIs the USIG has not issued. Those intents are kept and
    /// certified next: a durable intent may already count here (a backup executes once its COMMIT
    /// is durable), so it must reach the peers under its counter. UIs after
    /// <paramref name="uisDurableThrough"/> were re-issued after the restart and are written with
    /// the next write. <paramref name="counterGap"/>: the USIG issued counters whose intents were
    /// lost (so never sent); the stored log starts over empty at <paramref name="first"/>.
    /// </summary>
    /// <remarks><paramref name="keptFrom"/>: the first entry that came from the messages the USIG
    /// kept, not from the journal (0: none); those are certified, and written to the journal first.</remarks>
    public void Restore(ulong first, IReadOnlyList<CertifiedMessage> entries, IReadOnlyList<Sha256Digest> digests, int certifiedCount, ulong uisDurableThrough,
        bool counterGap, ulong keptFrom = 0)
    {
        ProtocolInvariantException.Check(_entries.Count == 0 && Certified == 0 && First == 1, "only a fresh log is restored");
        ProtocolInvariantException.Check(!counterGap || entries.Count == 0, "a log reset after a gap resumes empty");
        First = first;
        for (var i = 0; i < entries.Count; i++)
        {
            ProtocolInvariantException.Check(entries[i].Ui.IsNone == (i >= certifiedCount) && (entries[i].Ui.IsNone || entries[i].Ui.Counter == first + (ulong)i),
                "a restored log is a certified prefix, then intents, gap-free");
            _entries.Add(new Entry(entries[i], digests[i]));
        }
        _restartAt = counterGap ? first : null;
        Durable = Appended;
        Requested = Certified = First - 1 + (ulong)certifiedCount;
        if (keptFrom != 0)
        {
            ProtocolInvariantException.Check(!counterGap && keptFrom >= first && keptFrom <= Appended && Certified == Appended,
                "restored kept messages are certified entries at the end of the log");
            Durable = keptFrom - 1;
            (_keptFrom, _keptThrough) = (keptFrom, Appended);
        }
        ProtocolInvariantException.Check(uisDurableThrough >= First - 1 && uisDurableThrough <= Certified, "durable UIs are a prefix of the certified ones");
        UiDurable = uisDurableThrough;
        // Re-issued UIs are written at once: they are the oldest the USIG's window holds.
        _reissuedThrough = Certified;
        RestoredIntentsThrough = Durable > Certified ? Durable : 0;
        _keepFrom = _writtenKeepFrom = _memoryKeepFrom = First;
        CheckPositions();
    }

    private void TrimMemory()
    {
        // Exactly at the anchor asked for (a VIEW-CHANGE log must start at one), and only once the
        // UIs below it are durable (until then the next write needs them).
        var keep = _memoryKeepFrom;
        if (keep <= First || keep > UiDurable + 1) return;
        var drop = (int)Math.Min((ulong)_entries.Count, keep - First);
        _entries.RemoveRange(0, drop);
        First += (ulong)drop;
        CheckPositions();
    }

    private Entry EntryAt(ulong counter)
    {
        ProtocolInvariantException.Check(counter >= First && counter <= Appended, $"counter {counter} is in the kept log ({First}..{Appended})");
        return _entries[(int)(counter - First)];
    }

    private void CheckPositions()
    {
        ProtocolInvariantException.Check(First - 1 <= UiDurable && UiDurable <= Certified && Certified <= Requested
            && Requested <= Appended && Durable <= Appended,
            $"own log positions in order: first {First}, ui-durable {UiDurable}, certified {Certified}, requested {Requested}, durable {Durable}, appended {Appended}");
        // Every counter handed to the USIG is durable in the journal, or in the batch it keeps.
        ProtocolInvariantException.Check(Requested <= Durable || (_keptFrom <= Durable + 1 && Requested == _keptThrough),
            $"a counter the USIG issued is durable or kept (requested {Requested}, durable {Durable}, kept {_keptFrom}..{_keptThrough})");
        ProtocolInvariantException.Check(Requested - UiDurable <= (ulong)reissueWindow,
            $"the USIG can re-issue every UI not yet durable (requested {Requested}, ui-durable {UiDurable}, window {reissueWindow})");
    }
}

/// <summary>
/// One durable write of this replica's own log, as the core asks for it: the intents appended
/// since the last write (consecutive counters from <see cref="FirstIntentCounter"/>, some may
/// already carry their UI), the UIs certified since for intents written before, the view, and
/// where the durable log may start. <see cref="RestartAt"/>, only in the first write after a
/// restart that found a counter gap (the USIG issued counters whose intents were lost, so never
/// sent; peers skip the gap at this replica's next CHECKPOINT): every stored entry goes, and the
/// log resumes at that counter, before anything is appended. Durable intents are otherwise never
/// cut (see <see cref="OwnLog.Restore"/>). The host applies a write atomically, then reports
/// <see cref="ReplicaCore.OnLogWritten"/>.
/// </summary>
public sealed record LogWrite(
    long View,
    ulong FirstIntentCounter,
    IReadOnlyList<CertifiedMessage> Intents,
    IReadOnlyList<UniqueIdentifier> Uis,
    ulong KeepFrom,
    ulong? RestartAt = null);
