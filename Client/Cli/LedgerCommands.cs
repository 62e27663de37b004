using System.Globalization;
using MinBft.Application;

namespace MinBft.Client.Cli;

/// <summary><c>ledger open ACCOUNT [--initial N]</c>: opens an account; prints its balance.</summary>
public sealed record LedgerOpenCommand(ConnectionSettings Connection, string Account, long Initial) : ICliCommand
{
    public Task<int> RunAsync(CliConsole console, CancellationToken cancellationToken) =>
        LedgerCommand.RunAsync(Connection, console, "open", Account, cancellationToken,
            ledger => ledger.OpenAsync(Account, Initial, cancellationToken));
}

/// <summary><c>ledger deposit ACCOUNT AMOUNT</c>: prints the new balance.</summary>
public sealed record LedgerDepositCommand(ConnectionSettings Connection, string Account, long Amount) : ICliCommand
{
    public Task<int> RunAsync(CliConsole console, CancellationToken cancellationToken) =>
        LedgerCommand.RunAsync(Connection, console, "deposit", Account, cancellationToken,
            ledger => ledger.DepositAsync(Account, Amount, cancellationToken));
}

/// <summary><c>ledger withdraw ACCOUNT AMOUNT</c>: prints the new balance.</summary>
public sealed record LedgerWithdrawCommand(ConnectionSettings Connection, string Account, long Amount) : ICliCommand
{
    public Task<int> RunAsync(CliConsole console, CancellationToken cancellationToken) =>
        LedgerCommand.RunAsync(Connection, console, "withdraw", Account, cancellationToken,
            ledger => ledger.WithdrawAsync(Account, Amount, cancellationToken));
}

/// <summary><c>ledger transfer FROM TO AMOUNT</c>: prints the source's new balance.</summary>
public sealed record LedgerTransferCommand(ConnectionSettings Connection, string From, string To, long Amount) : ICliCommand
{
    public Task<int> RunAsync(CliConsole console, CancellationToken cancellationToken) =>
        LedgerCommand.RunAsync(Connection, console, "transfer", From, cancellationToken,
            ledger => ledger.TransferAsync(From, To, Amount, cancellationToken));
}

/// <summary><c>ledger balance ACCOUNT</c>: prints the balance.</summary>
public sealed record LedgerBalanceCommand(ConnectionSettings Connection, string Account) : ICliCommand
{
    public Task<int> RunAsync(CliConsole console, CancellationToken cancellationToken) =>
        LedgerCommand.RunAsync(Connection, console, "balance", Account, cancellationToken,
            ledger => ledger.BalanceAsync(Account, cancellationToken));
}

internal static class LedgerCommand
{
    /// <summary>
    /// Connects, runs one verified ledger operation and prints "ACCOUNT BALANCE". A refusal is
    /// one line on stderr and exit code <see cref="ExitCodes.NotFound"/> (no such account) or
    /// <see cref="ExitCodes.Rejected"/> (anything else); the ledger is then unchanged.
    /// </summary>
    public static Task<int> RunAsync(
        ConnectionSettings connection, CliConsole console, string name, string account, CancellationToken cancellationToken,
        Func<LedgerClient, Task<long>> operation) =>
        CliErrors.GuardAsync(console, async () =>
        {
            await using var cluster = await ClusterConnection.ConnectAsync(connection, console, cancellationToken).ConfigureAwait(false);
            using var client = cluster.CreateClient(identities: 1);
            long balance;
            try
            {
                balance = await operation(new LedgerClient(client)).ConfigureAwait(false);
            }
            catch (LedgerRejectedException e)
            {
                await console.Error.WriteLineAsync($"ledger {name}: {e.Message}").ConfigureAwait(false);
                return e.Status == LedgerStatus.AccountNotFound ? ExitCodes.NotFound : ExitCodes.Rejected;
            }
            await console.Out.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"{account} {balance}")).ConfigureAwait(false);
            return ExitCodes.Ok;
        }, cancellationToken);
}
