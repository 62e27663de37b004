using MinBft.Application;
using MinBft.Client;

namespace MinBft.Tests.Client;

/// <summary>The typed ledger client over fake replicas that run the real <see cref="LedgerStateMachine"/>.</summary>
public sealed class LedgerClientTests
{
    private readonly FakeClusterProxies _cluster = new(new FakeReplicas(f: 1), new LedgerStateMachine());

    [Fact]
    public async Task Calls_return_balances_and_refusals_throw_with_their_status()
    {
        using var client = _cluster.CreateClient();
        var ledger = new LedgerClient(client);

        Assert.Equal(100, await ledger.OpenAsync("alice", 100));
        Assert.Equal(0, await ledger.OpenAsync("bob"));
        Assert.Equal(70, await ledger.TransferAsync("alice", "bob", 30));
        Assert.Equal(40, await ledger.DepositAsync("bob", 10));
        Assert.Equal(35, await ledger.WithdrawAsync("bob", 5));
        Assert.Equal(35, await ledger.BalanceAsync("bob"));

        async Task<LedgerRejectedException> Refused(Func<Task> call) => await Assert.ThrowsAsync<LedgerRejectedException>(call);
        var overdraw = await Refused(() => ledger.WithdrawAsync("bob", 36));
        Assert.Equal((LedgerStatus.InsufficientFunds, 35L), (overdraw.Status, overdraw.Balance!.Value));
        Assert.Contains("insufficient funds (balance 35)", overdraw.Message, StringComparison.Ordinal);
        Assert.Equal(LedgerStatus.InsufficientFunds, (await Refused(() => ledger.TransferAsync("alice", "bob", 71))).Status);
        Assert.Equal(LedgerStatus.AccountExists, (await Refused(() => ledger.OpenAsync("bob"))).Status);
        Assert.Equal(LedgerStatus.AccountNotFound, (await Refused(() => ledger.DepositAsync("carol", 1))).Status);
        Assert.Equal(LedgerStatus.SameAccount, (await Refused(() => ledger.TransferAsync("bob", "bob", 1))).Status);
        Assert.Equal(LedgerStatus.Overflow, (await Refused(() => ledger.DepositAsync("alice", long.MaxValue))).Status);

        // Refusals changed nothing.
        Assert.Equal(70, await ledger.BalanceAsync("alice"));
        Assert.Equal(35, await ledger.BalanceAsync("bob"));
    }

    [Fact]
    public async Task Bad_arguments_throw_before_anything_is_sent()
    {
        using var client = _cluster.CreateClient();
        var ledger = new LedgerClient(client);
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => ledger.DepositAsync("alice", 0));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => ledger.OpenAsync("alice", -1));
        await Assert.ThrowsAsync<ArgumentException>(() => ledger.BalanceAsync(""));
        Assert.Empty(_cluster.Requests);
        Assert.Equal(0, _cluster.Attempts.Values.Sum());
    }

    [Fact]
    public async Task A_cluster_running_another_service_is_reported_as_such()
    {
        var keyValue = new FakeClusterProxies(new FakeReplicas(f: 1));
        using var client = keyValue.CreateClient();
        var error = await Assert.ThrowsAsync<MinBftException>(() => new LedgerClient(client).OpenAsync("alice", 1));
        Assert.IsNotType<LedgerRejectedException>(error);
        Assert.Contains("is the cluster running the ledger?", error.Message, StringComparison.Ordinal);
    }
}
