using System.Security.Cryptography;
using MinBft.Application;
using Xunit.Abstractions;

namespace MinBft.Tests.Application;

public sealed class LedgerStateMachineTests(ITestOutputHelper output)
{
    private static readonly string[] Accounts = ["alice", "bob", "carol", "日本", "\U0001F600", "\uE000", new string('x', LedgerOperation.MaxAccountLength)];

    private static LedgerResult Apply(LedgerStateMachine m, byte[] operation)
    {
        var bytes = m.Apply(operation);
        Assert.True(LedgerResult.TryDecode(bytes, out var result), "Apply returned an undecodable result");
        return result;
    }

    private static LedgerResult Open(LedgerStateMachine m, string account, long initial = 0) => Apply(m, LedgerOperation.EncodeOpen(account, initial));
    private static LedgerResult Deposit(LedgerStateMachine m, string account, long amount) => Apply(m, LedgerOperation.EncodeDeposit(account, amount));
    private static LedgerResult Withdraw(LedgerStateMachine m, string account, long amount) => Apply(m, LedgerOperation.EncodeWithdraw(account, amount));
    private static LedgerResult Transfer(LedgerStateMachine m, string from, string to, long amount) => Apply(m, LedgerOperation.EncodeTransfer(from, to, amount));
    private static LedgerResult Balance(LedgerStateMachine m, string account) => Apply(m, LedgerOperation.EncodeBalance(account));

    private static LedgerResult Status(LedgerStatus status) => LedgerResult.Of(status);

    /// <summary>An operation with any amount, bypassing the encoder's checks (what a client without the SDK may send).</summary>
    private static byte[] Raw(byte opcode, string account, long amount)
    {
        var name = System.Text.Encoding.UTF8.GetBytes(account);
        var bytes = new byte[1 + 1 + name.Length + 8];
        bytes[0] = opcode;
        bytes[1] = (byte)name.Length;
        name.CopyTo(bytes, 2);
        System.Buffers.Binary.BinaryPrimitives.WriteInt64BigEndian(bytes.AsSpan(2 + name.Length), amount);
        return bytes;
    }

    private static byte[] RawTransfer(string from, string to, long amount)
    {
        var valid = LedgerOperation.EncodeTransfer(from, to, 1);
        System.Buffers.Binary.BinaryPrimitives.WriteInt64BigEndian(valid.AsSpan(valid.Length - 8), amount);
        return valid;
    }

    private static LedgerStateMachine Populated()
    {
        var m = new LedgerStateMachine();
        Open(m, "alice", 100);
        Open(m, "bob", 50);
        Open(m, "日本", 0);
        Open(m, "\U0001F600", long.MaxValue - 10);
        return m;
    }

    // ---- each operation --------------------------------------------------------------------

    [Fact]
    public void Open_creates_an_account_once_with_its_initial_balance()
    {
        var m = new LedgerStateMachine();
        Assert.Equal(LedgerResult.Ok(100), Open(m, "alice", 100));
        Assert.Equal(LedgerResult.Ok(0), Open(m, "bob"));
        Assert.Equal(LedgerResult.Ok(100), Balance(m, "alice"));
        Assert.Equal(LedgerResult.Ok(0), Balance(m, "bob"));

        var before = StateFingerprint.Of(m);
        Assert.Equal(Status(LedgerStatus.AccountExists), Open(m, "alice", 5));
        before.AssertSame(m);
        Assert.True(m.TryGetBalance("alice", out var balance));
        Assert.Equal(100, balance);
        Assert.Equal(2, m.Count);
    }

    [Fact]
    public void Deposit_and_withdraw_change_one_balance()
    {
        var m = Populated();
        Assert.Equal(LedgerResult.Ok(130), Deposit(m, "alice", 30));
        Assert.Equal(LedgerResult.Ok(30), Withdraw(m, "alice", 100));
        Assert.Equal(LedgerResult.Ok(0), Withdraw(m, "alice", 30));
        Assert.Equal(LedgerResult.Ok(0), Balance(m, "alice"));
        Assert.Equal(LedgerResult.Ok(50), Balance(m, "bob"));
    }

    [Fact]
    public void Transfer_moves_money_between_two_accounts()
    {
        var m = Populated();
        Assert.Equal(LedgerResult.Ok(60), Transfer(m, "alice", "bob", 40));
        Assert.Equal(LedgerResult.Ok(60), Balance(m, "alice"));
        Assert.Equal(LedgerResult.Ok(90), Balance(m, "bob"));
        Assert.Equal(LedgerResult.Ok(0), Transfer(m, "alice", "日本", 60));
        Assert.Equal(LedgerResult.Ok(60), Balance(m, "日本"));
    }

    [Fact]
    public void Operations_on_a_missing_account_are_AccountNotFound_and_change_nothing()
    {
        var m = Populated();
        var before = StateFingerprint.Of(m);
        Assert.Equal(Status(LedgerStatus.AccountNotFound), Balance(m, "nobody"));
        Assert.Equal(Status(LedgerStatus.AccountNotFound), Deposit(m, "nobody", 1));
        Assert.Equal(Status(LedgerStatus.AccountNotFound), Withdraw(m, "nobody", 1));
        Assert.Equal(Status(LedgerStatus.AccountNotFound), Transfer(m, "alice", "nobody", 1));
        Assert.Equal(Status(LedgerStatus.AccountNotFound), Transfer(m, "nobody", "alice", 1));
        before.AssertSame(m);
    }

    // ---- rejections change nothing ---------------------------------------------------------

    [Fact]
    public void Overdraw_is_InsufficientFunds_with_the_balance_and_changes_nothing()
    {
        var m = Populated();
        var before = StateFingerprint.Of(m);
        Assert.Equal(LedgerResult.InsufficientFunds(100), Withdraw(m, "alice", 101));
        Assert.Equal(LedgerResult.InsufficientFunds(100), Transfer(m, "alice", "bob", 101));
        Assert.Equal(LedgerResult.InsufficientFunds(0), Transfer(m, "日本", "alice", 1));
        Assert.Equal(LedgerResult.InsufficientFunds(50), Withdraw(m, "bob", long.MaxValue));
        before.AssertSame(m);
    }

    [Fact]
    public void Overflow_is_rejected_and_changes_nothing()
    {
        var m = Populated();
        var before = StateFingerprint.Of(m);
        Assert.Equal(Status(LedgerStatus.Overflow), Deposit(m, "\U0001F600", 11));
        Assert.Equal(Status(LedgerStatus.Overflow), Transfer(m, "alice", "\U0001F600", 11));
        Assert.Equal(Status(LedgerStatus.Overflow), Deposit(m, "alice", long.MaxValue));
        before.AssertSame(m);

        // Up to the limit is fine.
        Assert.Equal(LedgerResult.Ok(90), Transfer(m, "alice", "\U0001F600", 10));
        Assert.Equal(LedgerResult.Ok(long.MaxValue), Balance(m, "\U0001F600"));
    }

    [Theory]
    [InlineData(0L)]
    [InlineData(-1L)]
    [InlineData(long.MinValue)]
    public void Non_positive_amounts_are_InvalidAmount_and_change_nothing(long amount)
    {
        var m = Populated();
        var before = StateFingerprint.Of(m);
        Assert.Equal(Status(LedgerStatus.InvalidAmount), Apply(m, Raw(LedgerOperation.DepositOpcode, "alice", amount)));
        Assert.Equal(Status(LedgerStatus.InvalidAmount), Apply(m, Raw(LedgerOperation.WithdrawOpcode, "alice", amount)));
        Assert.Equal(Status(LedgerStatus.InvalidAmount), Apply(m, RawTransfer("alice", "bob", amount)));
        if (amount < 0) Assert.Equal(Status(LedgerStatus.InvalidAmount), Apply(m, Raw(LedgerOperation.OpenOpcode, "new", amount)));
        before.AssertSame(m);

        // The SDK's encoders refuse them before anything is sent.
        Assert.Throws<ArgumentOutOfRangeException>(() => LedgerOperation.EncodeDeposit("alice", amount));
        Assert.Throws<ArgumentOutOfRangeException>(() => LedgerOperation.EncodeWithdraw("alice", amount));
        Assert.Throws<ArgumentOutOfRangeException>(() => LedgerOperation.EncodeTransfer("alice", "bob", amount));
        if (amount < 0) Assert.Throws<ArgumentOutOfRangeException>(() => LedgerOperation.EncodeOpen("alice", amount));
    }

    [Fact]
    public void Transfer_to_the_same_account_is_SameAccount_and_changes_nothing()
    {
        var m = Populated();
        var before = StateFingerprint.Of(m);
        Assert.Equal(Status(LedgerStatus.SameAccount), Transfer(m, "alice", "alice", 1));
        before.AssertSame(m);
    }

    [Fact]
    public void Account_names_are_1_to_64_utf8_bytes()
    {
        var m = new LedgerStateMachine();
        var longest = new string('é', LedgerOperation.MaxAccountLength / 2);  // two UTF-8 bytes each
        Assert.Equal(LedgerResult.Ok(1), Open(m, longest, 1));
        Assert.Throws<ArgumentException>(() => LedgerOperation.EncodeOpen(longest + "x"));
        Assert.Throws<ArgumentException>(() => LedgerOperation.EncodeOpen(""));
        Assert.Throws<ArgumentException>(() => LedgerOperation.EncodeBalance("\uD800"));
        Assert.Throws<ArgumentNullException>(() => LedgerOperation.EncodeTransfer("a", null!, 1));

        var before = StateFingerprint.Of(m);
        var tooLong = new byte[1 + 1 + 65 + 8];
        tooLong[0] = LedgerOperation.OpenOpcode;
        tooLong[1] = 65;
        tooLong.AsSpan(2, 65).Fill((byte)'x');
        Assert.Equal(Status(LedgerStatus.BadOperation), Apply(m, tooLong));
        Assert.Equal(Status(LedgerStatus.BadOperation), Apply(m, [LedgerOperation.OpenOpcode, 0, 0, 0, 0, 0, 0, 0, 0, 1]));
        before.AssertSame(m);
    }

    [Theory]
    [InlineData(new byte[] { })]
    [InlineData(new byte[] { 0x00 })]
    [InlineData(new byte[] { 0x06, 0x01, (byte)'a' })]                                   // unknown opcode
    [InlineData(new byte[] { 0x05 })]                                                     // no account
    [InlineData(new byte[] { 0x05, 0x02, (byte)'a' })]                                    // truncated name
    [InlineData(new byte[] { 0x05, 0x01, (byte)'a', 0x00 })]                              // trailing byte
    [InlineData(new byte[] { 0x05, 0x01, 0xFF })]                                         // invalid UTF-8
    [InlineData(new byte[] { 0x02, 0x01, (byte)'a', 0, 0, 0, 0, 0, 0, 1 })]               // amount too short
    [InlineData(new byte[] { 0x02, 0x01, (byte)'a', 0, 0, 0, 0, 0, 0, 0, 1, 0 })]         // trailing byte
    [InlineData(new byte[] { 0x04, 0x01, (byte)'a', 0, 0, 0, 0, 0, 0, 0, 0, 1 })]         // transfer without a target
    public void A_malformed_operation_is_a_bad_operation_and_changes_nothing(byte[] operation)
    {
        var m = Populated();
        var before = StateFingerprint.Of(m);
        Assert.Equal(Status(LedgerStatus.BadOperation).Encode(), m.Apply(operation));
        Assert.False(LedgerOperation.TryDecode(operation, out _));
        before.AssertSame(m);
    }

    [Fact]
    public void Fuzzed_operations_never_throw_and_rejected_ones_change_nothing()
    {
        var rng = FuzzSeed.Create(output);
        var m = Populated();
        var rejected = 0;
        for (var i = 0; i < 10_000; i++)
        {
            byte[] input;
            if (i % 2 == 0)
            {
                input = new byte[rng.Next(0, 40)];
                rng.NextBytes(input);
                if (input.Length > 0 && rng.Next(4) != 0) input[0] = (byte)rng.Next(1, 6);
            }
            else
            {
                input = RandomOperations.Mutate(rng, NextOperation(rng));
            }

            var before = StateFingerprint.Of(m);
            var result = Apply(m, input);
            if (result.Status == LedgerStatus.Ok) continue;
            // Every rejection, malformed input or refused operation alike, leaves the state as it was.
            if (result.Status == LedgerStatus.BadOperation)
            {
                Assert.False(LedgerOperation.TryDecode(input, out _));
                rejected++;
            }
            before.AssertSame(m);
        }
        output.WriteLine($"{rejected} of 10000 fuzzed operations were malformed");
        Assert.True(rejected > 1000, $"only {rejected} malformed inputs: the fuzzer is not exercising the decoder");
    }

    // ---- determinism, conservation ---------------------------------------------------------

    [Fact]
    public void Same_operations_give_same_results_snapshots_and_digests()
    {
        var rng = FuzzSeed.Create(output);
        var a = new LedgerStateMachine();
        var b = new LedgerStateMachine();
        for (var i = 0; i < 5_000; i++)
        {
            var operation = NextOperation(rng);
            Assert.Equal(a.Apply(operation), b.Apply(operation));
            if (i % 500 == 0) Assert.Equal(a.Digest(), b.Digest());
        }
        Assert.Equal(a.Snapshot(), b.Snapshot());
        Assert.Equal(a.Digest(), b.Digest());
        Assert.True(a.Count > 0);
    }

    [Fact]
    public void Matches_a_reference_model_and_transfers_conserve_money()
    {
        var rng = FuzzSeed.Create(output);
        var m = new LedgerStateMachine();
        var model = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var account in Accounts)
        {
            var initial = rng.Next(0, 1000);
            Assert.Equal(LedgerResult.Ok(initial), Open(m, account, initial));
            model[account] = initial;
        }
        var total = Total(m);
        var outcomes = new Dictionary<LedgerStatus, int>();
        for (var i = 0; i < 5_000; i++)
        {
            var from = Accounts[rng.Next(Accounts.Length)];
            var to = Accounts[rng.Next(Accounts.Length)];
            var amount = rng.Next(4) == 0 ? rng.NextInt64(1, long.MaxValue) : rng.Next(1, 300);
            var result = Transfer(m, from, to, amount);
            LedgerResult expected;
            if (from == to) expected = Status(LedgerStatus.SameAccount);
            else if (amount > model[from]) expected = LedgerResult.InsufficientFunds(model[from]);
            else
            {
                model[from] -= amount;
                model[to] += amount;
                expected = LedgerResult.Ok(model[from]);
            }
            Assert.Equal(expected, result);
            outcomes[result.Status] = outcomes.GetValueOrDefault(result.Status) + 1;
            Assert.Equal(total, Total(m));
        }
        foreach (var account in Accounts) Assert.Equal(LedgerResult.Ok(model[account]), Balance(m, account));
        output.WriteLine("outcomes: " + string.Join(", ", outcomes.Select(p => $"{p.Key}={p.Value}")));
        Assert.True(outcomes.GetValueOrDefault(LedgerStatus.Ok) > 100, "too few transfers succeeded to test conservation");
        Assert.True(outcomes.GetValueOrDefault(LedgerStatus.InsufficientFunds) > 100, "too few overdraws were tried");
    }

    private static Int128 Total(LedgerStateMachine m)
    {
        Int128 total = 0;
        foreach (var account in Accounts)
        {
            Assert.True(m.TryGetBalance(account, out var balance));
            Assert.True(balance >= 0);
            total += balance;
        }
        return total;
    }

    // ---- digests and snapshots -------------------------------------------------------------

    [Fact]
    public void Digest_is_sha256_of_the_snapshot_and_tracks_every_mutation()
    {
        var m = new LedgerStateMachine();
        var digests = new HashSet<string> { Convert.ToHexString(m.Digest()) };
        Assert.Equal(SHA256.HashData(m.Snapshot()), m.Digest());
        foreach (var operation in new[]
        {
            LedgerOperation.EncodeOpen("a", 5), LedgerOperation.EncodeOpen("b"), LedgerOperation.EncodeDeposit("b", 1),
            LedgerOperation.EncodeWithdraw("a", 1), LedgerOperation.EncodeTransfer("a", "b", 2),
        })
        {
            Assert.Equal(LedgerStatus.Ok, Apply(m, operation).Status);
            Assert.Equal(SHA256.HashData(m.Snapshot()), m.Digest());
            Assert.True(digests.Add(Convert.ToHexString(m.Digest())), "a mutation left the digest unchanged");
        }
        var before = m.Digest();
        Balance(m, "a");
        Assert.Equal(before, m.Digest());

        // A caller that scribbles on the returned array does not change the next answer.
        var copy = m.Digest();
        copy[0] ^= 0xFF;
        Assert.Equal(before, m.Digest());
    }

    [Fact]
    public void Digest_is_independent_of_the_order_accounts_were_opened_in()
    {
        var a = new LedgerStateMachine();
        var b = new LedgerStateMachine();
        foreach (var account in Accounts) Open(a, account, 7);
        foreach (var account in Accounts.Reverse()) Open(b, account, 7);
        Assert.Equal(a.Snapshot(), b.Snapshot());
        Assert.Equal(a.Digest(), b.Digest());
    }

    [Fact]
    public void Snapshot_layout_is_pinned()
    {
        var m = new LedgerStateMachine();
        Assert.Equal([.. "MINBFT-LEDGER"u8, 0x01, 0, 0, 0, 0], m.Snapshot());
        Open(m, "b", 0x0102);
        Open(m, "a");
        byte[] expected =
        [
            .. "MINBFT-LEDGER"u8, 0x01, 0, 0, 0, 2,
            1, (byte)'a', 0, 0, 0, 0, 0, 0, 0, 0,
            1, (byte)'b', 0, 0, 0, 0, 0, 0, 0x01, 0x02,
        ];
        Assert.Equal(expected, m.Snapshot());
    }

    [Fact]
    public void Snapshot_orders_names_by_utf8_bytes_not_utf16()
    {
        var m = new LedgerStateMachine();
        Open(m, "\U0001F600");  // UTF-16 D83D.., UTF-8 F0..
        Open(m, "\uE000");      // UTF-16 E000, UTF-8 EE..
        var snapshot = m.Snapshot();
        var first = snapshot.AsSpan("MINBFT-LEDGER\x01"u8.Length + 4);
        Assert.Equal(3, first[0]);
        Assert.Equal(0xEE, first[1]);
    }

    [Fact]
    public void Snapshot_restore_round_trip_gives_the_same_digest_and_behaviour()
    {
        var rng = FuzzSeed.Create(output);
        var original = new LedgerStateMachine();
        foreach (var operation in Enumerable.Range(0, 2_000).Select(_ => NextOperation(rng))) original.Apply(operation);

        var restored = new LedgerStateMachine();
        Open(restored, "to-be-replaced", 1);
        Assert.True(restored.TryRestore(original.Snapshot()));
        Assert.Equal(original.Digest(), restored.Digest());
        Assert.Equal(original.Snapshot(), restored.Snapshot());
        Assert.False(restored.TryGetBalance("to-be-replaced", out _));
        Assert.Equal(SHA256.HashData(restored.Snapshot()), restored.Digest());

        // Both go on identically.
        for (var i = 0; i < 500; i++)
        {
            var operation = NextOperation(rng);
            Assert.Equal(original.Apply(operation), restored.Apply(operation));
        }
        Assert.Equal(original.Digest(), restored.Digest());
    }

    [Fact]
    public void Restoring_an_empty_snapshot_empties_the_ledger()
    {
        var m = Populated();
        Assert.True(m.TryRestore(new LedgerStateMachine().Snapshot()));
        Assert.Equal(0, m.Count);
        Assert.Equal(new LedgerStateMachine().Digest(), m.Digest());
    }

    public static TheoryData<string, byte[]> MalformedSnapshots()
    {
        byte[] header = [.. "MINBFT-LEDGER"u8, 0x01];
        static byte[] Entry(byte[] name, long balance)
        {
            var bytes = new byte[1 + name.Length + 8];
            bytes[0] = (byte)name.Length;
            name.CopyTo(bytes, 1);
            System.Buffers.Binary.BinaryPrimitives.WriteInt64BigEndian(bytes.AsSpan(1 + name.Length), balance);
            return bytes;
        }
        byte[] a = Entry("a"u8.ToArray(), 1), b = Entry("b"u8.ToArray(), 2);
        return new TheoryData<string, byte[]>
        {
            { "empty", [] },
            { "header only", header },
            { "key-value snapshot", [.. "MINBFT-KV"u8, 0x01, 0, 0, 0, 0] },
            { "other version", [.. "MINBFT-LEDGER"u8, 0x02, 0, 0, 0, 0] },
            { "count beyond the bytes", [.. header, 0, 0, 0, 2, .. a] },
            { "huge count", [.. header, 0xFF, 0xFF, 0xFF, 0xFF, .. a] },
            { "trailing byte", [.. header, 0, 0, 0, 1, .. a, 0] },
            { "truncated balance", [.. header, 0, 0, 0, 1, .. a[..^1]] },
            { "descending names", [.. header, 0, 0, 0, 2, .. b, .. a] },
            { "duplicate names", [.. header, 0, 0, 0, 2, .. a, .. a] },
            { "negative balance", [.. header, 0, 0, 0, 1, .. Entry("a"u8.ToArray(), -1)] },
            { "empty name", [.. header, 0, 0, 0, 1, .. Entry([], 1)] },
            { "name too long", [.. header, 0, 0, 0, 1, .. Entry(new byte[65], 1)] },
            { "invalid UTF-8 name", [.. header, 0, 0, 0, 1, .. Entry([0xFF], 1)] },
        };
    }

    [Theory]
    [MemberData(nameof(MalformedSnapshots))]
    public void A_malformed_snapshot_is_refused_and_changes_nothing(string what, byte[] snapshot)
    {
        var m = Populated();
        var before = StateFingerprint.Of(m);
        Assert.False(m.TryRestore(snapshot), what);
        before.AssertSame(m);
    }

    [Fact]
    public void Fuzzed_snapshots_never_throw_and_refused_ones_change_nothing()
    {
        var rng = FuzzSeed.Create(output);
        var valid = Populated().Snapshot();
        var m = Populated();
        var before = StateFingerprint.Of(m);
        for (var i = 0; i < 5_000; i++)
        {
            var snapshot = RandomOperations.Mutate(rng, valid);
            var probe = Populated();
            if (probe.TryRestore(snapshot))
            {
                // Accepted: then it was canonical, so it is exactly what the restored state snapshots to.
                Assert.Equal(snapshot, probe.Snapshot());
                continue;
            }
            before.AssertSame(probe);
        }
        Assert.False(m.TryRestore(valid[..^1]));
        before.AssertSame(m);
    }

    // ---- results ---------------------------------------------------------------------------

    [Fact]
    public void Results_round_trip_and_only_canonical_encodings_decode()
    {
        foreach (var result in new[] { LedgerResult.Ok(0), LedgerResult.Ok(long.MaxValue), LedgerResult.InsufficientFunds(3) }
            .Concat(Enum.GetValues<LedgerStatus>().Where(s => s is not LedgerStatus.Ok and not LedgerStatus.InsufficientFunds).Select(LedgerResult.Of)))
        {
            Assert.True(LedgerResult.TryDecode(result.Encode(), out var decoded));
            Assert.Equal(result, decoded);
        }
        Assert.False(LedgerResult.TryDecode([], out _));
        Assert.False(LedgerResult.TryDecode([0], out _));
        Assert.False(LedgerResult.TryDecode([9], out _));
        Assert.False(LedgerResult.TryDecode([(byte)LedgerStatus.Ok], out _));                                  // balance missing
        Assert.False(LedgerResult.TryDecode([(byte)LedgerStatus.AccountNotFound, 0], out _));                  // trailing byte
        Assert.False(LedgerResult.TryDecode([(byte)LedgerStatus.Ok, 0xFF, 0, 0, 0, 0, 0, 0, 0], out _));       // negative balance
        Assert.Throws<ArgumentException>(() => LedgerResult.Of(LedgerStatus.Ok));
        Assert.Throws<ArgumentOutOfRangeException>(() => LedgerResult.Ok(-1));
    }

    // ---- random operations -----------------------------------------------------------------

    /// <summary>A random valid operation over a small account pool, so accounts collide, overdraws and overflows happen.</summary>
    private static byte[] NextOperation(Random rng)
    {
        var account = Accounts[rng.Next(Accounts.Length)];
        return rng.Next(6) switch
        {
            0 => LedgerOperation.EncodeOpen(account, Amount(rng) - 1),
            1 => LedgerOperation.EncodeDeposit(account, Amount(rng)),
            2 => LedgerOperation.EncodeWithdraw(account, Amount(rng)),
            3 => LedgerOperation.EncodeBalance(account),
            _ => LedgerOperation.EncodeTransfer(account, Accounts[rng.Next(Accounts.Length)], Amount(rng)),
        };
    }

    private static long Amount(Random rng) => rng.Next(10) switch
    {
        0 => long.MaxValue - rng.Next(0, 100),
        1 => rng.NextInt64(1, long.MaxValue),
        _ => rng.Next(1, 1000),
    };
}
