using MinBft.Application;

namespace MinBft.Client;

/// <summary>
/// Typed access to the sample bank ledger (<see cref="LedgerStateMachine"/>) through a
/// <see cref="MinBftClient"/>. Every call is one ordered, verified MinBFT request. A refused
/// operation (missing account, overdraw, overflow) throws <see cref="LedgerRejectedException"/>
/// and changed nothing; argument errors (non-positive amount, bad account name) throw before
/// anything is sent.
/// </summary>
public sealed class LedgerClient(MinBftClient client)
{
    private readonly MinBftClient _client = client ?? throw new ArgumentNullException(nameof(client));

    /// <summary>Opens <paramref name="account"/> with <paramref name="initialBalance"/>; returns the balance.</summary>
    public Task<long> OpenAsync(string account, long initialBalance = 0, CancellationToken cancellationToken = default) =>
        ExecuteAsync(LedgerOperation.EncodeOpen(account, initialBalance), cancellationToken);

    /// <summary>Adds <paramref name="amount"/>; returns the new balance.</summary>
    public Task<long> DepositAsync(string account, long amount, CancellationToken cancellationToken = default) =>
        ExecuteAsync(LedgerOperation.EncodeDeposit(account, amount), cancellationToken);

    /// <summary>Takes <paramref name="amount"/>; returns the new balance.</summary>
    public Task<long> WithdrawAsync(string account, long amount, CancellationToken cancellationToken = default) =>
        ExecuteAsync(LedgerOperation.EncodeWithdraw(account, amount), cancellationToken);

    /// <summary>Moves <paramref name="amount"/> from <paramref name="from"/> to <paramref name="to"/>, all or nothing; returns the source's new balance.</summary>
    public Task<long> TransferAsync(string from, string to, long amount, CancellationToken cancellationToken = default) =>
        ExecuteAsync(LedgerOperation.EncodeTransfer(from, to, amount), cancellationToken);

    /// <summary>The balance of <paramref name="account"/>.</summary>
    public Task<long> BalanceAsync(string account, CancellationToken cancellationToken = default) =>
        ExecuteAsync(LedgerOperation.EncodeBalance(account), cancellationToken);

    private async Task<long> ExecuteAsync(byte[] operation, CancellationToken cancellationToken)
    {
        var bytes = await _client.ExecuteAsync(operation, cancellationToken).ConfigureAwait(false);
        // f+1 replicas vouched for these bytes, so garbage here is a bug (or a cluster running
        // another service), not an attack.
        if (!LedgerResult.TryDecode(bytes, out var result))
            throw new MinBftException($"the replicas returned a result that is not a ledger result ({bytes.Length} bytes); is the cluster running the ledger?");
        return result.Status switch
        {
            LedgerStatus.Ok => result.Balance!.Value,
            // The client encodes only well-formed operations: the service does not understand them.
            LedgerStatus.BadOperation => throw new MinBftException("the replicas did not understand a ledger operation; is the cluster running the ledger?"),
            _ => throw new LedgerRejectedException(result.Status, result.Balance),
        };
    }
}

/// <summary>The ledger refused an operation (<see cref="Status"/>); the ledger is unchanged.</summary>
public sealed class LedgerRejectedException(LedgerStatus status, long? balance) : MinBftException(Describe(status, balance))
{
    public LedgerStatus Status { get; } = status;

    /// <summary>For <see cref="LedgerStatus.InsufficientFunds"/>: the account's balance.</summary>
    public long? Balance { get; } = balance;

    private static string Describe(LedgerStatus status, long? balance) => status switch
    {
        LedgerStatus.AccountNotFound => "no such account",
        LedgerStatus.AccountExists => "the account already exists",
        LedgerStatus.InsufficientFunds => $"insufficient funds (balance {balance})",
        LedgerStatus.InvalidAmount => "the amount must be positive",
        LedgerStatus.Overflow => "the balance would overflow",
        LedgerStatus.SameAccount => "cannot transfer from an account to itself",
        _ => $"rejected: {status}",
    };
}
