using System.Diagnostics.CodeAnalysis;

namespace MinBft.Application;

/// <summary>Outcome of a ledger operation. Values start at 1 so a zeroed byte is never a valid status.</summary>
public enum LedgerStatus : byte
{
    Ok = 1,
    AccountNotFound = 2,
    AccountExists = 3,

    /// <summary>A withdrawal or transfer larger than the balance; nothing changed.</summary>
    InsufficientFunds = 4,

    /// <summary>An amount that is not positive (or a negative initial balance).</summary>
    InvalidAmount = 5,

    /// <summary>A balance would exceed <see cref="long.MaxValue"/>; nothing changed.</summary>
    Overflow = 6,

    /// <summary>A transfer from an account to itself.</summary>
    SameAccount = 7,

    /// <summary>The bytes are not a ledger operation.</summary>
    BadOperation = 8,
}

/// <summary>
/// The result of a ledger operation, and its wire encoding: <c>status</c>, followed for
/// <see cref="LedgerStatus.Ok"/> and <see cref="LedgerStatus.InsufficientFunds"/> by an i64
/// big-endian balance (Ok: the account's balance after the operation, for a transfer the
/// source's; InsufficientFunds: the unchanged balance). Other statuses carry nothing.
/// </summary>
public sealed record LedgerResult
{
    private LedgerResult(LedgerStatus status, long? balance)
    {
        Status = status;
        Balance = balance;
    }

    public LedgerStatus Status { get; }

    /// <summary>Set for <see cref="LedgerStatus.Ok"/> and <see cref="LedgerStatus.InsufficientFunds"/>, else null.</summary>
    public long? Balance { get; }

    public static LedgerResult Ok(long balance) => new(LedgerStatus.Ok, CheckBalance(balance));

    public static LedgerResult InsufficientFunds(long balance) => new(LedgerStatus.InsufficientFunds, CheckBalance(balance));

    /// <summary>A result without a balance: any status other than Ok and InsufficientFunds.</summary>
    public static LedgerResult Of(LedgerStatus status)
    {
        if (HasBalance(status) || !Enum.IsDefined(status))
            throw new ArgumentException($"{status} is not a status without a balance.", nameof(status));
        return new(status, null);
    }

    public byte[] Encode() => Encode(Status, Balance ?? 0);

    /// <summary>Decodes an encoding; false (never an exception) for anything else.</summary>
    public static bool TryDecode(ReadOnlySpan<byte> encoded, [NotNullWhen(true)] out LedgerResult? result)
    {
        result = null;
        var r = new WireReader(encoded);
        if (!r.TryU8(out var statusByte)) return false;
        var status = (LedgerStatus)statusByte;
        if (!Enum.IsDefined(status)) return false;
        long? balance = null;
        if (HasBalance(status))
        {
            if (!r.TryI64(out var value) || value < 0) return false;
            balance = value;
        }
        if (!r.AtEnd) return false;
        result = new(status, balance);
        return true;
    }

    /// <summary>Encodes without building a record; the state machine's path. <paramref name="balance"/> is ignored for statuses without one.</summary>
    internal static byte[] Encode(LedgerStatus status, long balance)
    {
        if (!HasBalance(status)) return [(byte)status];
        var buffer = new byte[1 + 8];
        var w = new WireWriter(buffer);
        w.U8((byte)status);
        w.I64(balance);
        return buffer;
    }

    private static bool HasBalance(LedgerStatus status) => status is LedgerStatus.Ok or LedgerStatus.InsufficientFunds;

    private static long CheckBalance(long balance)
    {
        // Balances are never negative: withdrawals that would overdraw are refused.
        ArgumentOutOfRangeException.ThrowIfNegative(balance);
        return balance;
    }
}
