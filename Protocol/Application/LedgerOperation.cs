using System.Diagnostics.CodeAnalysis;
using System.Text.Unicode;

namespace MinBft.Application;

/// <summary>
/// An operation of the sample bank ledger (<see cref="LedgerStateMachine"/>), and its wire encoding.
/// <para>
/// Layout (big-endian; account = u8 length + UTF-8, amount = i64 in minor units):
/// <code>
/// 0x01 Open      account initial     initial balance, 0 or more
/// 0x02 Deposit   account amount
/// 0x03 Withdraw  account amount
/// 0x04 Transfer  from to amount
/// 0x05 Balance   account
/// </code>
/// The decoder accepts any amount and leaves the range check (positive, no overflow) to the
/// state machine, which answers <see cref="LedgerStatus.InvalidAmount"/>: a client that skips
/// the SDK gets a precise error instead of a generic <see cref="LedgerStatus.BadOperation"/>.
/// Everything else is canonical: a malformed account name or trailing bytes fail to decode.
/// </para>
/// </summary>
public abstract record LedgerOperation
{
    /// <summary>Longest account name, in UTF-8 bytes (names are 1 to this many bytes).</summary>
    public const int MaxAccountLength = 64;

    internal const byte OpenOpcode = 0x01;
    internal const byte DepositOpcode = 0x02;
    internal const byte WithdrawOpcode = 0x03;
    internal const byte TransferOpcode = 0x04;
    internal const byte BalanceOpcode = 0x05;

    private const int AmountLength = 8;

    // Strict: a lone surrogate is a caller error, not something to replace silently with U+FFFD.
    private static readonly System.Text.UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>The encoding; throws <see cref="ArgumentException"/> for an invalid account name or amount.</summary>
    public abstract byte[] Encode();

    /// <summary>Opens <paramref name="account"/> with <paramref name="initialBalance"/> (0 or more).</summary>
    public static byte[] EncodeOpen(string account, long initialBalance = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(initialBalance);
        return EncodeAccountAmount(OpenOpcode, account, initialBalance);
    }

    public static byte[] EncodeDeposit(string account, long amount) => EncodeAccountAmount(DepositOpcode, account, Positive(amount));

    public static byte[] EncodeWithdraw(string account, long amount) => EncodeAccountAmount(WithdrawOpcode, account, Positive(amount));

    public static byte[] EncodeTransfer(string from, string to, long amount)
    {
        var fromBytes = AccountBytes(from, nameof(from));
        var toBytes = AccountBytes(to, nameof(to));
        Positive(amount);
        var buffer = new byte[1 + 1 + fromBytes.Length + 1 + toBytes.Length + AmountLength];
        var w = new WireWriter(buffer);
        w.U8(TransferOpcode);
        WriteAccount(ref w, fromBytes);
        WriteAccount(ref w, toBytes);
        w.I64(amount);
        return buffer;
    }

    public static byte[] EncodeBalance(string account)
    {
        var bytes = AccountBytes(account, nameof(account));
        var buffer = new byte[1 + 1 + bytes.Length];
        var w = new WireWriter(buffer);
        w.U8(BalanceOpcode);
        WriteAccount(ref w, bytes);
        return buffer;
    }

    /// <summary>Decodes an encoding; false (never an exception) for anything malformed.</summary>
    public static bool TryDecode(ReadOnlySpan<byte> operation, [NotNullWhen(true)] out LedgerOperation? result)
    {
        result = null;
        var r = new WireReader(operation);
        if (!r.TryU8(out var opcode) || !TryAccount(ref r, out var account)) return false;
        switch (opcode)
        {
            case OpenOpcode:
            case DepositOpcode:
            case WithdrawOpcode:
                if (!r.TryI64(out var amount) || !r.AtEnd) return false;
                result = opcode switch
                {
                    OpenOpcode => new OpenAccount(account, amount),
                    DepositOpcode => new Deposit(account, amount),
                    _ => new Withdraw(account, amount),
                };
                return true;
            case TransferOpcode:
                if (!TryAccount(ref r, out var to) || !r.TryI64(out var transferred) || !r.AtEnd) return false;
                result = new Transfer(account, to, transferred);
                return true;
            case BalanceOpcode:
                if (!r.AtEnd) return false;
                result = new GetBalance(account);
                return true;
            default:
                return false;
        }
    }

    /// <summary>UTF-8 bytes of an account name; throws if it is null, empty, not valid UTF-16 or too long.</summary>
    internal static byte[] AccountBytes(string account, string paramName)
    {
        ArgumentNullException.ThrowIfNull(account, paramName);
        byte[] bytes;
        try
        {
            bytes = StrictUtf8.GetBytes(account);
        }
        catch (System.Text.EncoderFallbackException e)
        {
            throw new ArgumentException("Account name is not valid UTF-16 (lone surrogate).", paramName, e);
        }
        if (bytes.Length is 0 or > MaxAccountLength)
            throw new ArgumentException($"Account name is {bytes.Length} UTF-8 bytes; it must be 1 to {MaxAccountLength}.", paramName);
        return bytes;
    }

    /// <summary>An account name as the snapshot and operations carry it: 1..<see cref="MaxAccountLength"/> bytes of valid UTF-8.</summary>
    internal static bool TryAccountBytes(scoped ref WireReader r, out ReadOnlySpan<byte> utf8)
    {
        utf8 = default;
        return r.TryU8(out var length)
            && length is > 0 and <= MaxAccountLength
            && r.TryRaw(length, out utf8)
            && Utf8.IsValid(utf8);
    }

    internal static void WriteAccount(ref WireWriter w, ReadOnlySpan<byte> utf8)
    {
        w.U8((byte)utf8.Length);
        w.Raw(utf8);
    }

    private static bool TryAccount(scoped ref WireReader r, [NotNullWhen(true)] out string? account)
    {
        account = null;
        if (!TryAccountBytes(ref r, out var utf8)) return false;
        account = System.Text.Encoding.UTF8.GetString(utf8);
        return true;
    }

    private static byte[] EncodeAccountAmount(byte opcode, string account, long amount)
    {
        var bytes = AccountBytes(account, nameof(account));
        var buffer = new byte[1 + 1 + bytes.Length + AmountLength];
        var w = new WireWriter(buffer);
        w.U8(opcode);
        WriteAccount(ref w, bytes);
        w.I64(amount);
        return buffer;
    }

    private static long Positive(long amount)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(amount);
        return amount;
    }
}

/// <summary>Opens an account; Ok with its balance, or AccountExists.</summary>
public sealed record OpenAccount(string Account, long InitialBalance) : LedgerOperation
{
    public override byte[] Encode() => EncodeOpen(Account, InitialBalance);
}

/// <summary>Adds to a balance; Ok with the new balance, or AccountNotFound / Overflow.</summary>
public sealed record Deposit(string Account, long Amount) : LedgerOperation
{
    public override byte[] Encode() => EncodeDeposit(Account, Amount);
}

/// <summary>Takes from a balance; Ok with the new balance, or AccountNotFound / InsufficientFunds.</summary>
public sealed record Withdraw(string Account, long Amount) : LedgerOperation
{
    public override byte[] Encode() => EncodeWithdraw(Account, Amount);
}

/// <summary>
/// Moves money between two different accounts, all or nothing; Ok with the source's new
/// balance, or AccountNotFound / SameAccount / InsufficientFunds / Overflow.
/// </summary>
public sealed record Transfer(string From, string To, long Amount) : LedgerOperation
{
    public override byte[] Encode() => EncodeTransfer(From, To, Amount);
}

/// <summary>Reads a balance; Ok with it, or AccountNotFound.</summary>
public sealed record GetBalance(string Account) : LedgerOperation
{
    public override byte[] Encode() => EncodeBalance(Account);
}
