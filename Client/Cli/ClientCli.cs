using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using MinBft.Application;
using MinBft.Hosting;

namespace MinBft.Client.Cli;

/// <summary>
/// The command line of the MinBFT client tool. Parsing (<see cref="Parse"/>) and binding
/// (<see cref="Bind"/>) are separate from running, so the whole grammar is testable without a
/// cluster: a parse result binds to one <see cref="ICliCommand"/> record.
/// </summary>
public sealed class ClientCli
{
    public const int MaxF = 10;

    private readonly Dictionary<Command, Func<ParseResult, ICliCommand>> _binders = [];
    private readonly CliConsole? _console;
    private readonly Option<bool> _verbose = new("--verbose", "-v") { Description = "Show the cluster's and client's log messages", Recursive = true };

    /// <param name="console">Where commands write; null: the process's console.</param>
    public ClientCli(CliConsole? console = null)
    {
        _console = console;
        Root = BuildRootCommand();
    }

    public RootCommand Root { get; }

    public ParseResult Parse(params string[] args) => Root.Parse(args);

    /// <summary>The command a successful parse describes; null when it has errors or names no command.</summary>
    public ICliCommand? Bind(ParseResult parse)
    {
        ArgumentNullException.ThrowIfNull(parse);
        if (parse.Errors.Count > 0) return null;
        return _binders.TryGetValue(parse.CommandResult.Command, out var bind) ? bind(parse) : null;
    }

    /// <summary>Parses, binds and runs <paramref name="args"/>; returns the exit code.</summary>
    public Task<int> InvokeAsync(string[] args, CancellationToken cancellationToken)
    {
        var configuration = new InvocationConfiguration
        {
            // Program.Main cancels the token on Ctrl+C / SIGTERM; commands shut down themselves.
            ProcessTerminationTimeout = null,
        };
        if (_console is not null)
        {
            configuration.Output = _console.Out;
            configuration.Error = _console.Error;
        }
        return RunAsync(Parse(args), configuration, cancellationToken);
    }

    private static async Task<int> RunAsync(ParseResult parse, InvocationConfiguration configuration, CancellationToken cancellationToken)
    {
        // Invoking a result with errors prints them with the usage; the exit code says "usage".
        var exit = await parse.InvokeAsync(configuration, cancellationToken).ConfigureAwait(false);
        return parse.Errors.Count > 0 ? ExitCodes.Usage : exit;
    }

    private RootCommand BuildRootCommand()
    {
        var root = new RootCommand("MinBFT client: key-value and ledger operations with verified replies, status, key generation, benchmark and demo")
        {
            _verbose,
        };

        void Add(Command command, Func<ParseResult, ICliCommand> bind, Command? parent = null)
        {
            _binders[command] = bind;
            command.SetAction((parse, cancellationToken) =>
            {
                var console = (_console ?? CliConsole.System()) with { Verbose = parse.GetValue(_verbose) };
                return bind(parse).RunAsync(console, cancellationToken);
            });
            (parent ?? root).Add(command);
        }

        // put / get / delete / status
        {
            var connection = new ConnectionOptions();
            var key = KeyArgument();
            var value = new Argument<string>("VALUE") { Description = "The value (UTF-8 text)" };
            value.Validators.Add(result =>
            {
                var text = result.GetValueOrDefault<string>();
                if (text is not null && System.Text.Encoding.UTF8.GetByteCount(text) > KeyValueOperation.MaxValueLength)
                    result.AddError($"VALUE is longer than {KeyValueOperation.MaxValueLength} bytes");
            });
            var put = connection.AddTo(new Command("put", "Set KEY to VALUE") { key, value });
            Add(put, p => new PutCommand(connection.Bind(p), p.GetValue(key)!, p.GetValue(value)!));
        }
        {
            var connection = new ConnectionOptions();
            var key = KeyArgument();
            var get = connection.AddTo(new Command("get", "Print the value of KEY (exit code 3 if absent)") { key });
            Add(get, p => new GetCommand(connection.Bind(p), p.GetValue(key)!));
        }
        {
            var connection = new ConnectionOptions();
            var key = KeyArgument();
            var delete = connection.AddTo(new Command("delete", "Remove KEY") { key });
            Add(delete, p => new DeleteCommand(connection.Bind(p), p.GetValue(key)!));
        }
        {
            var connection = new ConnectionOptions();
            var status = connection.AddTo(new Command("status", "Each replica's view, last executed batch and state digest"));
            Add(status, p => new StatusCommand(connection.Bind(p)));
        }

        // ledger open / deposit / withdraw / transfer / balance
        {
            var ledger = new Command("ledger", "The sample bank ledger (silos started with --state-machine ledger); amounts are integers in minor units");
            root.Add(ledger);
            {
                var connection = new ConnectionOptions();
                var account = AccountArgument("ACCOUNT");
                var initial = new Option<long>("--initial")
                {
                    Description = "Initial balance (0 or more)",
                    CustomParser = result => ParseAmount(result, "--initial", allowZero: true),
                };
                var open = connection.AddTo(new Command("open", "Open ACCOUNT; prints its balance") { account, initial });
                Add(open, p => new LedgerOpenCommand(connection.Bind(p), p.GetValue(account)!, p.GetValue(initial)), ledger);
            }
            {
                var connection = new ConnectionOptions();
                var account = AccountArgument("ACCOUNT");
                var amount = AmountArgument();
                var deposit = connection.AddTo(new Command("deposit", "Add AMOUNT to ACCOUNT; prints the new balance") { account, amount });
                Add(deposit, p => new LedgerDepositCommand(connection.Bind(p), p.GetValue(account)!, p.GetValue(amount)), ledger);
            }
            {
                var connection = new ConnectionOptions();
                var account = AccountArgument("ACCOUNT");
                var amount = AmountArgument();
                var withdraw = connection.AddTo(new Command("withdraw", "Take AMOUNT from ACCOUNT (refused, exit code 4, if it would overdraw); prints the new balance") { account, amount });
                Add(withdraw, p => new LedgerWithdrawCommand(connection.Bind(p), p.GetValue(account)!, p.GetValue(amount)), ledger);
            }
            {
                var connection = new ConnectionOptions();
                var from = AccountArgument("FROM");
                var to = AccountArgument("TO");
                var amount = AmountArgument();
                var transfer = connection.AddTo(new Command("transfer", "Move AMOUNT from FROM to TO, all or nothing; prints FROM's new balance") { from, to, amount });
                Add(transfer, p => new LedgerTransferCommand(connection.Bind(p), p.GetValue(from)!, p.GetValue(to)!, p.GetValue(amount)), ledger);
            }
            {
                var connection = new ConnectionOptions();
                var account = AccountArgument("ACCOUNT");
                var balance = connection.AddTo(new Command("balance", "Print the balance of ACCOUNT (exit code 3 if it does not exist)") { account });
                Add(balance, p => new LedgerBalanceCommand(connection.Bind(p), p.GetValue(account)!), ledger);
            }
        }

        // keygen
        {
            var f = IntOption("--f", "Faults tolerated (n = 2f+1 replicas)", null, 0, MaxF);
            var output = new Option<string>("--out", "-o") { Description = "Directory to write manifest.json and domain-i/ key directories into", Required = true };
            var scheme = new Option<string>("--scheme") { Description = "USIG certificate scheme", DefaultValueFactory = _ => "ed25519" };
            scheme.AcceptOnlyFromAmong("ed25519", "hmac");
            var rotate = IntOption("--rotate-usig", "Give USIG i, which lost its state, a new epoch (and key) in the deployment at --out", null, 0, 2 * MaxF);
            var firstView = new Option<long?>("--first-view") { Description = "With --rotate-usig: the first view the new identity may lead; above every view the cluster used (the highest in status, plus n)" };
            var firstCheckpoint = new Option<ulong?>("--first-checkpoint") { Description = "With --rotate-usig: the stable checkpoint from which the new identity's view changes count; the highest executed position in status, plus the watermark" };
            var clientCertificate = CertificateNameOption("--client-cert", "Issue a TLS client certificate NAME from the deployment's CA at --out, into clients/NAME/");
            var siloCertificate = CertificateNameOption("--silo-cert", "Issue (or renew) the TLS certificate of silo NAME (domain-i, gateway) from the deployment's CA at --out, into NAME/tls/");
            var maxClientRecords = IntOption("--max-client-records", "A new deployment's cap on the replicated client table (least recently active clients are evicted beyond it)",
                ClusterManifest.DefaultMaxClientRecords, 1, 100_000_000);
            var keygen = new Command("keygen", "Generate a deployment's keys: a public manifest with the TLS CA, each fault domain's private keys and TLS certificates (or rotate one USIG's identity, or issue a certificate)")
            {
                f, output, scheme, rotate, firstView, firstCheckpoint, clientCertificate, siloCertificate, maxClientRecords,
            };
            keygen.Validators.Add(result =>
            {
                var chosen = new[] { result.GetResult(f), result.GetResult(rotate), result.GetResult(clientCertificate), result.GetResult(siloCertificate) }
                    .Count(r => r is { Implicit: false });
                if (chosen != 1)
                    result.AddError("keygen needs exactly one of --f (a new deployment), --rotate-usig i, --client-cert NAME or --silo-cert NAME (an existing one)");
                else if (result.GetResult(maxClientRecords) is { Implicit: false } && result.GetResult(f) is not { Implicit: false })
                    result.AddError("--max-client-records is a new deployment's constant: use it with --f");
                else if (result.GetResult(rotate) is { Implicit: false } != (result.GetResult(firstView) is not null && result.GetResult(firstCheckpoint) is not null)
                         || (result.GetResult(rotate) is not { Implicit: false } && (result.GetResult(firstView) is not null || result.GetResult(firstCheckpoint) is not null)))
                    result.AddError("--rotate-usig needs --first-view and --first-checkpoint (and they go with it only): read the highest view and executed position from status, " +
                                    "then give the view plus n and the position plus the watermark");
                else if (result.GetResult(firstView) is not null && result.GetValue(firstView) is < 1)
                    result.AddError("--first-view must be at least 1 (view 0 is the first identity's)");
            });
            Add(keygen, p =>
            {
                ClusterManifest.TryParseScheme(p.GetValue(scheme), out var parsed);
                if (p.GetResult(clientCertificate) is { Implicit: false })
                    return new KeygenCommand(0, p.GetValue(output)!, parsed) { ClientCertificate = p.GetValue(clientCertificate) };
                if (p.GetResult(siloCertificate) is { Implicit: false })
                    return new KeygenCommand(0, p.GetValue(output)!, parsed) { SiloCertificate = p.GetValue(siloCertificate) };
                return p.GetResult(rotate) is { Implicit: false }
                    ? new KeygenCommand(0, p.GetValue(output)!, parsed, p.GetValue(rotate)) { FirstView = p.GetValue(firstView) ?? 0, FirstCheckpoint = p.GetValue(firstCheckpoint) ?? 0 }
                    : new KeygenCommand(p.GetValue(f), p.GetValue(output)!, parsed) { MaxClientRecords = p.GetValue(maxClientRecords) };
            });
        }

        // bench
        {
            var connection = new ConnectionOptions();
            var clients = PositiveInt("--clients", "Concurrent clients (each one request at a time)", 16, max: 4096);
            var seconds = PositiveInt("--seconds", "Duration of each phase, in seconds", 10, max: 24 * 3600);
            var payload = IntOption("--payload", "Value size in bytes", 64, 0, KeyValueOperation.MaxValueLength);
            var baseline = new Option<bool>("--baseline") { Description = "Also run the workload against one plain unreplicated grain and report the ratio" };
            var warmup = IntOption("--warmup", "Seconds of unmeasured load first (a fresh silo is still compiling its hot paths)", 5, 0, 3600);
            var keySpace = IntOption("--keys", "Distinct keys written, all of them once before the warm-up, so the replicated state has that many (default: 16 per client, a small state)", null, 1, 100_000_000);
            var bench = connection.AddTo(new Command("bench", "Measure throughput and latency of verified writes") { clients, seconds, payload, baseline, warmup, keySpace });
            Add(bench, p => new BenchCommand(
                connection.Bind(p), p.GetValue(clients), TimeSpan.FromSeconds(p.GetValue(seconds)), p.GetValue(payload), p.GetValue(baseline))
            {
                Warmup = TimeSpan.FromSeconds(p.GetValue(warmup)),
                KeySpace = p.GetResult(keySpace) is null ? null : p.GetValue(keySpace),
            });
        }

        // demo
        {
            var f = FOption();
            var requests = PositiveInt("--requests", "Key-value operations to run", 200, max: 10_000_000);
            var clients = PositiveInt("--clients", "Concurrent clients", 4, max: 1024);
            var crashPrimary = new Option<bool>("--crash-primary") { Description = "Stop the primary's silo halfway through; the others change view and go on" };
            var isolatedUsig = new Option<bool>("--isolated-usig") { Description = "Run each domain's USIG as a separate USIG program (child processes) instead of inside its silo" };
            var demo = new Command("demo", "Start a local cluster, run operations from several clients, check results and replica agreement")
            {
                f, requests, clients, crashPrimary, isolatedUsig,
            };
            Add(demo, p => new DemoCommand(p.GetValue(f), p.GetValue(requests), p.GetValue(clients), p.GetValue(crashPrimary)) { IsolatedUsig = p.GetValue(isolatedUsig) });
        }

        return root;
    }

    /// <summary>A certificate name (a path segment and a subject); a bad one is a parse error.</summary>
    private static Option<string?> CertificateNameOption(string name, string description)
    {
        var option = new Option<string?>(name) { Description = description, HelpName = "NAME" };
        option.Validators.Add(result =>
        {
            try
            {
                if (result.GetValueOrDefault<string?>() is { } value) DeploymentCertificates.CheckName(value);
            }
            catch (ArgumentException e)
            {
                result.AddError($"{name}: {e.Message.Split(" (Parameter", 2)[0]}");
            }
        });
        return option;
    }

    private static Argument<string> KeyArgument()
    {
        var key = new Argument<string>("KEY") { Description = "The key (UTF-8 text)" };
        key.Validators.Add(result =>
        {
            var text = result.GetValueOrDefault<string>();
            if (text is not null && System.Text.Encoding.UTF8.GetByteCount(text) > KeyValueOperation.MaxKeyLength)
                result.AddError($"KEY is longer than {KeyValueOperation.MaxKeyLength} bytes");
        });
        return key;
    }

    private static Argument<string> AccountArgument(string name)
    {
        var account = new Argument<string>(name) { Description = $"Account name (1 to {LedgerOperation.MaxAccountLength} UTF-8 bytes)" };
        account.Validators.Add(result =>
        {
            var text = result.GetValueOrDefault<string>();
            if (text is null) return;
            try
            {
                LedgerOperation.EncodeBalance(text);
            }
            catch (ArgumentException e)
            {
                result.AddError($"{name}: {e.Message}");
            }
        });
        return account;
    }

    private static Argument<long> AmountArgument() => new("AMOUNT")
    {
        Description = "A positive integer, in minor units (e.g. cents)",
        CustomParser = result => ParseAmount(result, "AMOUNT", allowZero: false),
    };

    /// <summary>A long amount; a bad one is a parse error, never an exception.</summary>
    private static long ParseAmount(ArgumentResult result, string name, bool allowZero)
    {
        var text = result.Tokens.Count == 1 ? result.Tokens[0].Value : "";
        if (long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value) && value >= (allowZero ? 0 : 1))
            return value;
        result.AddError(string.Create(CultureInfo.InvariantCulture,
            $"{name} must be an integer between {(allowZero ? 0 : 1)} and {long.MaxValue}, got '{text}'"));
        return 0;
    }

    private static Option<int> FOption() => IntOption("--f", "Faults tolerated (n = 2f+1 replicas)", 1, 0, MaxF);

    private static Option<int> PositiveInt(string name, string description, int defaultValue, int max) =>
        IntOption(name, description, defaultValue, 1, max);

    /// <summary>An integer option checked against [min, max] while parsing (a bad value is a parse error, never an exception).</summary>
    private static Option<int> IntOption(string name, string description, int? defaultValue, int min, int max)
    {
        var option = new Option<int>(name)
        {
            Description = string.Create(CultureInfo.InvariantCulture, $"{description} ({min}..{max})"),
            CustomParser = result =>
            {
                var text = result.Tokens.Count == 1 ? result.Tokens[0].Value : "";
                if (int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max)
                    return value;
                result.AddError(string.Create(CultureInfo.InvariantCulture, $"{name} must be an integer between {min} and {max}, got '{text}'"));
                return 0;
            },
        };
        if (defaultValue is { } d) option.DefaultValueFactory = _ => d;
        return option;
    }

    /// <summary>--gateway or --redis-clustering, --manifest, --cluster-id, --service-id, --timeout: how to reach a running cluster.</summary>
    private sealed class ConnectionOptions
    {
        private readonly Option<IPEndPoint> _gateway = new("--gateway", "-g")
        {
            Description = "host:port of a gateway silo",
            DefaultValueFactory = _ => ConnectionSettings.DefaultGateway,
            CustomParser = result => ParseEndpoint(result),
        };

        private readonly Option<string> _manifest = new("--manifest", "-m")
        {
            Description = "The cluster manifest (replicas' public keys, to verify replies)",
            DefaultValueFactory = _ => ConnectionSettings.DefaultManifestPath,
        };

        private readonly Option<string> _clusterId = new("--cluster-id") { DefaultValueFactory = _ => LocalClusterOptions.DefaultClusterId, Description = "Orleans cluster id" };
        private readonly Option<string> _serviceId = new("--service-id") { DefaultValueFactory = _ => LocalClusterOptions.DefaultServiceId, Description = "Orleans service id" };
        private readonly Option<int> _timeout = PositiveInt("--timeout", "Seconds one request may take, retries included", (int)ConnectionSettings.DefaultRequestTimeout.TotalSeconds, max: 3600);

        private readonly Option<string?> _clustering = CreateClusteringOption();

        private readonly Option<string?> _tlsCertificate = new("--tls-cert")
        {
            Description = "This client's TLS certificate (PEM, keygen --client-cert NAME writes clients/NAME/tls.crt); required when the manifest names a TLS CA",
        };

        private readonly Option<string?> _tlsKey = new("--tls-key") { Description = "Its private key (PEM; default: tls.key next to the certificate)" };

        private readonly Option<bool> _noTls = new("--no-tls") { Description = "Plaintext, for a cluster whose silos run with --no-tls although the manifest names a TLS CA" };

        private readonly Option<string?> _redisClustering = new("--redis-clustering")
        {
            Description = "Redis connection string (host:port[,password=...]) of the cluster's membership table: find the gateways there instead of --gateway",
        };

        private static Option<string?> CreateClusteringOption()
        {
            var option = new Option<string?>("--clustering")
            {
                Description = "How to find the cluster: gateway (--gateway, the default) or redis (--redis-clustering; the default when that is given)",
            };
            option.AcceptOnlyFromAmong("gateway", "redis");
            return option;
        }

        public Command AddTo(Command command)
        {
            command.Add(_gateway);
            command.Add(_manifest);
            command.Add(_clusterId);
            command.Add(_serviceId);
            command.Add(_timeout);
            command.Add(_clustering);
            command.Add(_redisClustering);
            command.Add(_tlsCertificate);
            command.Add(_tlsKey);
            command.Add(_noTls);
            command.Validators.Add(result =>
            {
                if (result.GetValue(_noTls) && (result.GetValue(_tlsCertificate) is not null || result.GetValue(_tlsKey) is not null))
                    result.AddError("--no-tls excludes --tls-cert and --tls-key");
                else if (result.GetValue(_tlsKey) is not null && result.GetValue(_tlsCertificate) is null)
                    result.AddError("--tls-key needs --tls-cert");
            });
            command.Validators.Add(result =>
            {
                var clustering = result.GetValue(_clustering);
                var redis = result.GetValue(_redisClustering);
                var gatewayGiven = result.GetResult(_gateway) is { Implicit: false };
                if (clustering == "redis" && string.IsNullOrWhiteSpace(redis))
                    result.AddError("--clustering redis needs --redis-clustering host:port (the Redis server of the membership table)");
                else if (clustering == "gateway" && redis is not null)
                    result.AddError("--redis-clustering is for --clustering redis; with --clustering gateway give --gateway");
                else if (redis is not null && gatewayGiven)
                    result.AddError("--gateway and --redis-clustering exclude each other: with Redis clustering the client finds the gateways in the membership table");
                else if (redis is not null)
                {
                    try
                    {
                        RedisConnection.Parse(redis, "--redis-clustering");
                    }
                    catch (ArgumentException e)
                    {
                        result.AddError(e.Message);
                    }
                }
            });
            return command;
        }

        public ConnectionSettings Bind(ParseResult parse) => new(
            parse.GetValue(_gateway)!,
            parse.GetValue(_manifest)!,
            parse.GetValue(_clusterId)!,
            parse.GetValue(_serviceId)!,
            TimeSpan.FromSeconds(parse.GetValue(_timeout)))
        {
            RedisClustering = parse.GetValue(_redisClustering),
            TlsCertificate = parse.GetValue(_tlsCertificate),
            TlsKey = parse.GetValue(_tlsKey),
            NoTls = parse.GetValue(_noTls),
        };
    }

    private static IPEndPoint ParseEndpoint(ArgumentResult result)
    {
        var text = result.Tokens.Count == 1 ? result.Tokens[0].Value : "";
        if (TryParseEndpoint(text, out var endpoint)) return endpoint;
        result.AddError($"'{text}' is not host:port");
        return ConnectionSettings.DefaultGateway;
    }

    /// <summary>"ip:port", "[ipv6]:port", or "hostname:port" (resolved now, IPv4 preferred).</summary>
    public static bool TryParseEndpoint(string? text, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out IPEndPoint? endpoint)
    {
        endpoint = null;
        if (string.IsNullOrWhiteSpace(text)) return false;
        if (IPEndPoint.TryParse(text, out var parsed))
        {
            if (parsed.Port == 0 || !text.Contains(':', StringComparison.Ordinal) || (parsed.AddressFamily == AddressFamily.InterNetworkV6 && !text.Contains("]:", StringComparison.Ordinal)))
                return false;
            endpoint = parsed;
            return true;
        }
        var colon = text.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(text.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
            return false;
        var host = text[..colon];
        if (host.Equals("localhost", StringComparison.OrdinalIgnoreCase))
        {
            endpoint = new IPEndPoint(IPAddress.Loopback, port);
            return true;
        }
        try
        {
            var addresses = Dns.GetHostAddresses(host);
            var address = addresses.FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork) ?? addresses.FirstOrDefault();
            if (address is null) return false;
            endpoint = new IPEndPoint(address, port);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }
}
