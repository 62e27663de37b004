using System.Net;
using MinBft.Client.Cli;
using MinBft.Hosting;

namespace MinBft.Tests.Client;

/// <summary>The <c>ledger</c> command group's grammar, and the silo host's <c>--state-machine</c> flag.</summary>
public sealed class LedgerCliTests
{
    private static readonly ConnectionSettings Defaults = new(
        new IPEndPoint(IPAddress.Loopback, 30000),
        Path.Combine("data", "keys", "manifest.json"),
        LocalClusterOptions.DefaultClusterId,
        LocalClusterOptions.DefaultServiceId,
        TimeSpan.FromSeconds(30));

    private static ICliCommand? Bind(params string[] args)
    {
        var cli = new ClientCli();
        return cli.Bind(cli.Parse(args));
    }

    private static void AssertRejected(string expectedError, params string[] args)
    {
        var cli = new ClientCli();
        var parse = cli.Parse(args);
        Assert.Contains(parse.Errors, e => e.Message.Contains(expectedError, StringComparison.Ordinal));
        Assert.Null(cli.Bind(parse));
    }

    [Fact]
    public void Each_ledger_command_binds_to_its_record()
    {
        Assert.Equal(new LedgerOpenCommand(Defaults, "alice", 0), Bind("ledger", "open", "alice"));
        Assert.Equal(new LedgerOpenCommand(Defaults, "alice", 100), Bind("ledger", "open", "alice", "--initial", "100"));
        Assert.Equal(new LedgerDepositCommand(Defaults, "alice", 5), Bind("ledger", "deposit", "alice", "5"));
        Assert.Equal(new LedgerWithdrawCommand(Defaults, "bob", long.MaxValue), Bind("ledger", "withdraw", "bob", "9223372036854775807"));
        Assert.Equal(new LedgerTransferCommand(Defaults, "alice", "bob", 40), Bind("ledger", "transfer", "alice", "bob", "40"));
        Assert.Equal(
            new LedgerBalanceCommand(Defaults with { Gateway = new IPEndPoint(IPAddress.Loopback, 31000) }, "日本"),
            Bind("ledger", "balance", "日本", "-g", "localhost:31000"));
    }

    [Fact]
    public void Bad_amounts_and_account_names_are_parse_errors()
    {
        AssertRejected("AMOUNT must be an integer between 1", "ledger", "deposit", "alice", "0");
        AssertRejected("AMOUNT must be an integer between 1", "ledger", "withdraw", "alice", "-5");
        AssertRejected("AMOUNT must be an integer between 1", "ledger", "transfer", "a", "b", "9223372036854775808");
        AssertRejected("AMOUNT must be an integer between 1", "ledger", "deposit", "alice", "1.5");
        AssertRejected("--initial must be an integer between 0", "ledger", "open", "alice", "--initial", "-1");
        AssertRejected("ACCOUNT:", "ledger", "open", "");
        AssertRejected("TO:", "ledger", "transfer", "a", new string('x', 65), "1");
    }

    [Fact]
    public void Silo_state_machine_flag_accepts_keyvalue_and_ledger_only()
    {
        Assert.Empty(MinBft.Silo.Program.BuildRootCommand().Parse(["local", "--state-machine", "ledger"]).Errors);
        Assert.Empty(MinBft.Silo.Program.BuildRootCommand().Parse(["--state-machine", "keyvalue"]).Errors);
        var bad = MinBft.Silo.Program.BuildRootCommand().Parse(["local", "--state-machine", "bank"]).Errors;
        Assert.Contains(bad, e => e.Message.Contains("bank", StringComparison.Ordinal));

        var options = new MinBftOptions();
        new MinBft.Silo.Program.SiloArguments(0, "m.json", null, null, null, null, null) { StateMachine = MinBftStateMachineKind.Ledger }.ApplyTo(options);
        Assert.Equal(MinBftStateMachineKind.Ledger, options.StateMachine);
        new MinBft.Silo.Program.SiloArguments(0, "m.json", null, null, null, null, null).ApplyTo(options);
        Assert.Equal(MinBftStateMachineKind.Ledger, options.StateMachine);  // no flag: configuration stands
    }
}
