using System.Diagnostics;
using System.IO.Compression;
using System.Text;
using System.Xml.Linq;
using Xunit.Abstractions;

namespace MinBft.Tests.Packaging;

/// <summary>
/// The NuGet packages as a user gets them: packed from this build into a folder feed, restored
/// into a throwaway console project that pins their version, which starts a cluster with the
/// TestingHost helper and runs one request through the SDK.
/// </summary>
public sealed class PackageConsumerTests(ITestOutputHelper output)
{
    /// <summary>The packable projects and their package ids (the assembly names).</summary>
    private static readonly (string Project, string Id)[] Packages =
    [
        ("Protocol/Protocol.csproj", "MinBft.Protocol"),
        ("Grains.Interfaces/Grains.Interfaces.csproj", "MinBft.Grains.Interfaces"),
        ("Usig/Core/Usig.Core.csproj", "MinBft.Usig.Core"),
        ("Grains/Grains.csproj", "MinBft.Grains"),
        ("Client/Sdk/Sdk.csproj", "MinBft.Client.Sdk"),
        ("Grains/Testing/Testing.csproj", "MinBft.Orleans.TestingHost"),
    ];

    private static readonly TimeSpan StepTimeout = TimeSpan.FromMinutes(4);

    [Fact]
    public async Task Packages_RestoreIntoAConsumerThatStartsAClusterAndRunsARequest()
    {
        var root = RepositoryRoot();
        // The configuration these tests were built in: the packed projects were built with them.
        var configuration = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar)).Parent!.Name;
        var work = Directory.CreateTempSubdirectory("minbft-packages-").FullName;
        var clock = Stopwatch.StartNew();
        try
        {
            // A version of its own: the consumer cannot pick up packages of another run from a cache.
            var version = "0.1.0-test." + Guid.NewGuid().ToString("N")[..12];
            var feed = Path.Combine(work, "feed");
            await Task.WhenAll(Packages.Select(p => RunAsync(work, "pack", Path.Combine(root, p.Project), "-c", configuration, "--no-build",
                "-o", feed, "-p:Version=" + version, "--disable-build-servers", "-nologo")));
            output.WriteLine($"[{clock.Elapsed.TotalSeconds:F1}s] packed {version}");

            foreach (var (_, id) in Packages)
            {
                Assert.True(File.Exists(Path.Combine(feed, $"{id}.{version}.snupkg")), $"{id}: no symbols package");
                var nuspec = Nuspec(Path.Combine(feed, $"{id}.{version}.nupkg"), out var entries);
                XNamespace ns = nuspec.Root!.Name.Namespace;
                var metadata = nuspec.Root.Element(ns + "metadata")!;
                Assert.Equal("MIT", (string?)metadata.Element(ns + "license"));
                Assert.Equal("README.md", (string?)metadata.Element(ns + "readme"));
                Assert.Contains("README.md", entries);
                Assert.False(string.IsNullOrWhiteSpace((string?)metadata.Element(ns + "repository")?.Attribute("url")), $"{id}: no repository url");
                Assert.Contains($"lib/net10.0/{id}.dll", entries);
                // Its XML docs, for the user's IntelliSense.
                Assert.Contains($"lib/net10.0/{id}.xml", entries);
                // Every MinBft dependency is one of the packages here, at the same version.
                foreach (var dependency in metadata.Descendants(ns + "dependency").Where(d => ((string)d.Attribute("id")!).StartsWith("MinBft.", StringComparison.Ordinal)))
                {
                    Assert.Contains((string)dependency.Attribute("id")!, Packages.Select(p => p.Id));
                    Assert.Equal(version, (string?)dependency.Attribute("version"));
                }
            }
            // The client SDK brings no server code with it.
            var sdkDependencies = Dependencies(Path.Combine(feed, $"MinBft.Client.Sdk.{version}.nupkg"));
            output.WriteLine("MinBft.Client.Sdk depends on " + string.Join(", ", sdkDependencies));
            Assert.Contains("MinBft.Grains.Interfaces", sdkDependencies);
            Assert.DoesNotContain("MinBft.Grains", sdkDependencies);
            Assert.DoesNotContain("MinBft.Usig.Core", sdkDependencies);
            Assert.DoesNotContain("Microsoft.Orleans.Server", sdkDependencies);

            var consumer = Path.Combine(work, "consumer");
            WriteConsumer(consumer, feed, version, Path.Combine(work, "packages"));
            await RunAsync(consumer, "build", "-c", "Release", "--disable-build-servers", "-nologo");
            output.WriteLine($"[{clock.Elapsed.TotalSeconds:F1}s] consumer built");
            var run = await RunAsync(consumer, Path.Combine(consumer, "bin", "Release", "net10.0", "Consumer.dll"));
            output.WriteLine($"[{clock.Elapsed.TotalSeconds:F1}s] consumer ran");

            var lines = run.Split('\n', StringSplitOptions.TrimEntries);
            Assert.Contains("GET greeting: hello from the packages", lines);
            var proof = Assert.Single(lines, l => l.StartsWith("proved by replicas:", StringComparison.Ordinal));
            var replicas = proof["proved by replicas:".Length..].Split(',', StringSplitOptions.TrimEntries).Select(int.Parse).ToArray();
            Assert.True(replicas.Length >= 2, proof);
            Assert.Equal(replicas.Length, replicas.Distinct().Count());
            Assert.All(replicas, r => Assert.InRange(r, 0, 2));
        }
        finally
        {
            try
            {
                Directory.Delete(work, recursive: true);
            }
            catch (IOException)
            {
                // A temp directory.
            }
        }
    }

    private static void WriteConsumer(string directory, string feed, string version, string packages)
    {
        Directory.CreateDirectory(directory);
        // Its own packages folder, so nothing of this run lands in the machine's cache; the
        // machine's cache is a fallback, so Orleans and the rest need no download when present.
        var machineCache = System.Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } env ? env
            : Path.Combine(System.Environment.GetFolderPath(System.Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        var fallback = Directory.Exists(machineCache)
            ? new XElement("fallbackPackageFolders", new XElement("add", new XAttribute("key", "machine"), new XAttribute("value", machineCache)))
            : null;
        // The machine's own sources (user-level NuGet.Config) still apply: only the feed is added.
        new XDocument(new XElement("configuration",
            new XElement("config", new XElement("add", new XAttribute("key", "globalPackagesFolder"), new XAttribute("value", packages))),
            new XElement("packageSources", new XElement("add", new XAttribute("key", "minbft-test-feed"), new XAttribute("value", feed))),
            fallback)).Save(Path.Combine(directory, "nuget.config"));

        File.WriteAllText(Path.Combine(directory, "Consumer.csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <Nullable>enable</Nullable>
                <ImplicitUsings>enable</ImplicitUsings>
                <InvariantGlobalization>true</InvariantGlobalization>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="MinBft.Orleans.TestingHost" Version="{version}" />
                <PackageReference Include="MinBft.Client.Sdk" Version="{version}" />
              </ItemGroup>
            </Project>
            """);
        // What the package README shows, plus one verified call.
        File.WriteAllText(Path.Combine(directory, "Program.cs"), """
            using MinBft.Application;
            using MinBft.Testing;
            using Orleans.TestingHost;

            var builder = new TestClusterBuilder();
            builder.Options.ConfigureFileLogging = false;
            using var minbft = builder.AddMinBft(f: 1);
            await using var cluster = builder.Build();
            await cluster.DeployAsync();
            await cluster.WaitForMinBftAsync();

            var kv = cluster.GetKeyValueClient();
            await kv.PutAsync("greeting", "hello from the packages"u8.ToArray());
            var value = await kv.GetAsync("greeting");
            Console.WriteLine("GET greeting: " + System.Text.Encoding.UTF8.GetString(value!));
            var verified = await cluster.GetMinBftClient().ExecuteVerifiedAsync(KeyValueOperation.EncodeGet("greeting"));
            Console.WriteLine("proved by replicas: " + string.Join(",", verified.Replies.Select(r => r.ReplicaId).Order()));
            await cluster.StopAllSilosAsync();
            """);
    }

    private static XDocument Nuspec(string nupkg, out string[] entries)
    {
        using var zip = ZipFile.OpenRead(nupkg);
        entries = zip.Entries.Select(e => e.FullName).ToArray();
        var entry = zip.Entries.Single(e => e.FullName.EndsWith(".nuspec", StringComparison.Ordinal) && !e.FullName.Contains('/'));
        using var stream = entry.Open();
        return XDocument.Load(stream);
    }

    private static string[] Dependencies(string nupkg)
    {
        var nuspec = Nuspec(nupkg, out _);
        return nuspec.Descendants(nuspec.Root!.Name.Namespace + "dependency").Select(d => (string)d.Attribute("id")!).ToArray();
    }

    /// <summary>Runs the dotnet host with <paramref name="arguments"/>; fails the test on a non-zero exit or after <see cref="StepTimeout"/>.</summary>
    private async Task<string> RunAsync(string directory, params string[] arguments)
    {
        var start = new ProcessStartInfo(DotnetHost)
        {
            WorkingDirectory = directory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        // The test host's MSBuild settings belong to its own build, not to these child builds.
        foreach (var name in start.Environment.Keys.Where(k => k.StartsWith("MSBuild", StringComparison.OrdinalIgnoreCase)).ToArray())
            start.Environment.Remove(name);
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        start.Environment["DOTNET_SKIP_FIRST_TIME_EXPERIENCE"] = "1";

        var text = new StringBuilder();
        using var process = new Process { StartInfo = start };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (text) text.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (text) text.AppendLine(e.Data); };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        using var timeout = new CancellationTokenSource(StepTimeout);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
        }
        var what = "dotnet " + string.Join(" ", arguments);
        string result;
        lock (text) result = text.ToString();
        output.WriteLine($"$ {what} (exit {process.ExitCode})");
        output.WriteLine(result);
        Assert.False(timeout.IsCancellationRequested, $"{what}: not done within {StepTimeout}");
        Assert.True(process.ExitCode == 0, $"{what} exited with {process.ExitCode}:\n{result}");
        return result;
    }

    /// <summary>The dotnet host that runs the tests (the SDK sets DOTNET_HOST_PATH for child processes).</summary>
    private static string DotnetHost =>
        System.Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host)
            ? host
            : System.Environment.ProcessPath is { } self && Path.GetFileNameWithoutExtension(self) == "dotnet" ? self : "dotnet";

    private static string RepositoryRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "MinBft.Orleans.sln"))) return directory.FullName;
        }
        throw new InvalidOperationException("MinBft.Orleans.sln not found above " + AppContext.BaseDirectory);
    }
}
