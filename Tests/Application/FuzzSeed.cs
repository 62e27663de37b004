using System.Globalization;
using System.Runtime.CompilerServices;
using Xunit.Abstractions;

namespace MinBft.Tests.Application;

/// <summary>
/// Seeds for randomized tests: fresh each run so coverage grows over time, printed so a
/// failure can be replayed with <c>MINBFT_SEED=&lt;seed&gt;</c>.
/// </summary>
internal static class FuzzSeed
{
    public const string EnvironmentVariable = "MINBFT_SEED";

    public static Random Create(ITestOutputHelper output, [CallerMemberName] string test = "")
    {
        var seed = Read();
        output.WriteLine($"{test}: seed {seed} (replay with {EnvironmentVariable}={seed})");
        return new Random(seed);
    }

    private static int Read()
    {
        var text = Environment.GetEnvironmentVariable(EnvironmentVariable);
        if (string.IsNullOrWhiteSpace(text)) return Random.Shared.Next();
        // A typo must not silently fall back to a random seed: the replay would test something else.
        return int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var seed)
            ? seed
            : throw new InvalidOperationException($"{EnvironmentVariable}='{text}' is not an integer.");
    }
}
