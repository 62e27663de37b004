using BenchmarkDotNet.Running;

namespace MinBft.Benchmarks;

public static class Program
{
    // Run: dotnet run -c Release --project Tests/Benchmarks/Benchmarks.csproj -- --job short --filter '*'
    public static void Main(string[] args)
    {
        // BenchmarkDotNet's default toolchain rebuilds the benchmarks from "<AssemblyName>.csproj",
        // but repository convention names this MinBft.Benchmarks assembly's project Benchmarks.csproj,
        // so benchmarks run in-process (emitted, still in a Release build) unless asked otherwise.
        if (!args.Any(a => a.Equals("--inProcess", StringComparison.OrdinalIgnoreCase) || a == "-i"))
            args = [.. args, "--inProcess"];
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
    }
}
