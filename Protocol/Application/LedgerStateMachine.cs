using MinBft.Protocol;

namespace MinBft.Application;

/// <summary>
/// The second sample service: a bank ledger of named accounts with non-negative integer
/// balances (minor units, e.g. cents), driven by <see cref="LedgerOperation"/> encodings.
/// Every operation is all or nothing: one that would overdraw, overflow or names a missing
/// account returns an error result and changes nothing, so total money changes only by
/// opens, deposits and withdrawals. Deterministic (no clocks, randomness or hash order) and
/// not thread-safe: the replica that owns it applies operations one at a time.
/// <para>
/// Snapshot layout (big-endian): <c>"MINBFT-LEDGER" 0x01</c>, u32 account count, then each
/// account as name (u8 length + UTF-8) and balance (i64, 0 or more), names strictly ascending
/// by their UTF-8 bytes, so one state has exactly one snapshot.
/// </para>
/// </summary>
public sealed class LedgerStateMachine : IStateMachine
{
    // Names the format inside the digested bytes (and differs from the key-value header), so a
    // ledger snapshot never parses as another service's snapshot.
    internal static ReadOnlySpan<byte> SnapshotHeader => "MINBFT-LEDGER\x01"u8;

    // Name length byte, at least one name byte, the balance: bounds the count a snapshot may claim.
    private const int MinAccountLength = 1 + 1 + 8;

    private Dictionary<string, long> _balances = new(StringComparer.Ordinal);

    // SHA-256 of the current snapshot, and the snapshot it was computed from (encoded once per
    // checkpoint, not twice); both dropped once a mutation makes them stale.
    private readonly SnapshotDigestCache _cache = new();

    // The accounts in snapshot order as of the last snapshot, so the next one sorts only new ones.
    private readonly SnapshotKeyOrder<string> _order;

    public LedgerStateMachine() => _order = new(static account => account, account => _balances.ContainsKey(account));

    public int Count => _balances.Count;

    /// <summary>Reads a balance without going through <see cref="Apply"/>.</summary>
    public bool TryGetBalance(string account, out long balance)
    {
        ArgumentNullException.ThrowIfNull(account);
        return _balances.TryGetValue(account, out balance);
    }

    public byte[] Apply(ReadOnlySpan<byte> operation)
    {
        if (!LedgerOperation.TryDecode(operation, out var decoded)) return Result(LedgerStatus.BadOperation);
        return decoded switch
        {
            OpenAccount open => Open(open.Account, open.InitialBalance),
            Deposit deposit => Deposit(deposit.Account, deposit.Amount),
            Withdraw withdraw => Withdraw(withdraw.Account, withdraw.Amount),
            Transfer transfer => Transfer(transfer.From, transfer.To, transfer.Amount),
            GetBalance get => _balances.TryGetValue(get.Account, out var balance)
                ? LedgerResult.Encode(LedgerStatus.Ok, balance)
                : Result(LedgerStatus.AccountNotFound),
            // Unreachable while TryDecode knows only the cases above; kept total so a new
            // operation added there without a case here is still not a throw.
            _ => Result(LedgerStatus.BadOperation),
        };
    }

    private byte[] Open(string account, long initial)
    {
        if (initial < 0) return Result(LedgerStatus.InvalidAmount);
        if (!_balances.TryAdd(account, initial)) return Result(LedgerStatus.AccountExists);
        _order.Inserted(account, _balances.Count);
        _cache.Invalidate();
        return LedgerResult.Encode(LedgerStatus.Ok, initial);
    }

    private byte[] Deposit(string account, long amount)
    {
        if (amount <= 0) return Result(LedgerStatus.InvalidAmount);
        if (!_balances.TryGetValue(account, out var balance)) return Result(LedgerStatus.AccountNotFound);
        if (balance > long.MaxValue - amount) return Result(LedgerStatus.Overflow);
        return Set(account, balance + amount);
    }

    private byte[] Withdraw(string account, long amount)
    {
        if (amount <= 0) return Result(LedgerStatus.InvalidAmount);
        if (!_balances.TryGetValue(account, out var balance)) return Result(LedgerStatus.AccountNotFound);
        if (amount > balance) return LedgerResult.Encode(LedgerStatus.InsufficientFunds, balance);
        return Set(account, balance - amount);
    }

    private byte[] Transfer(string from, string to, long amount)
    {
        // Every check before the first write: a rejected transfer changes nothing.
        if (amount <= 0) return Result(LedgerStatus.InvalidAmount);
        if (string.Equals(from, to, StringComparison.Ordinal)) return Result(LedgerStatus.SameAccount);
        if (!_balances.TryGetValue(from, out var source) || !_balances.TryGetValue(to, out var target))
            return Result(LedgerStatus.AccountNotFound);
        if (amount > source) return LedgerResult.Encode(LedgerStatus.InsufficientFunds, source);
        if (target > long.MaxValue - amount) return Result(LedgerStatus.Overflow);
        _balances[to] = target + amount;
        return Set(from, source - amount);
    }

    private byte[] Set(string account, long balance)
    {
        ProtocolInvariantException.Check(balance >= 0, "ledger balances never go negative");
        _balances[account] = balance;
        _cache.Invalidate();
        return LedgerResult.Encode(LedgerStatus.Ok, balance);
    }

    private static byte[] Result(LedgerStatus status) => LedgerResult.Encode(status, 0);

    /// <summary>Drops the kept account order, so the next snapshot sorts every account (tests
    /// check both ways give the same bytes).</summary>
    internal void ForgetSnapshotOrder() => _order.Forget();

    /// <summary>Snapshots encoded since this state machine was made (tests count them).</summary>
    public long SnapshotEncodings => _cache.Encodings;

    public byte[] Snapshot() => _cache.Snapshot(EncodeSnapshot);

    private byte[] EncodeSnapshot()
    {
        // Ordered by UTF-8 bytes, not UTF-16 order: the format must not depend on the in-memory
        // string representation (the two orders differ for characters above U+FFFF).
        var order = _order.Current(_balances.Keys);
        var nameLengths = new byte[order.Count];
        var length = SnapshotHeader.Length + 4;
        for (var i = 0; i < order.Count; i++)
        {
            // Names came from TryDecode or TryRestore: valid UTF-8, 1..MaxAccountLength bytes.
            nameLengths[i] = (byte)System.Text.Encoding.UTF8.GetByteCount(order[i]);
            length += 1 + nameLengths[i] + 8;
        }

        var buffer = new byte[length];
        var w = new WireWriter(buffer);
        w.Raw(SnapshotHeader);
        w.U32((uint)order.Count);
        for (var i = 0; i < order.Count; i++)
        {
            w.U8(nameLengths[i]);
            w.Utf8(order[i]);
            w.I64(_balances[order[i]]);
        }
        ProtocolInvariantException.Check(w.Position == buffer.Length, "a snapshot fills exactly the size computed for it");
        return buffer;
    }

    public bool TryRestore(ReadOnlySpan<byte> snapshot)
    {
        // Parse into a new map and swap only at the end, so a malformed snapshot (possibly
        // from a Byzantine replica) leaves the current state exactly as it was.
        var r = new WireReader(snapshot);
        if (!r.TryRaw(SnapshotHeader.Length, out var header) || !header.SequenceEqual(SnapshotHeader)) return false;
        if (!r.TryU32(out var count) || count > (uint)(r.Remaining / MinAccountLength)) return false;

        var balances = new Dictionary<string, long>((int)count, StringComparer.Ordinal);
        var order = new List<string>((int)count);
        ReadOnlySpan<byte> previous = default;
        for (var i = 0u; i < count; i++)
        {
            if (!LedgerOperation.TryAccountBytes(ref r, out var name) || !r.TryI64(out var balance) || balance < 0) return false;
            // Strictly ascending: rejects duplicates and any non-canonical order.
            if (i > 0 && previous.SequenceCompareTo(name) >= 0) return false;
            previous = name;
            var account = System.Text.Encoding.UTF8.GetString(name);
            balances.Add(account, balance);
            order.Add(account);
        }
        if (!r.AtEnd) return false;

        _balances = balances;
        _order.Restored(order);
        // Fully validated as canonical, so it is byte for byte what Snapshot() now returns.
        _cache.Restored(snapshot);
        return true;
    }

    public byte[] Digest() => _cache.Digest(EncodeSnapshot);
}
