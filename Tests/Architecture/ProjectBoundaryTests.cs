using System.Reflection;
using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;
using System.Xml.Linq;
using MinBft.Client;
using MinBft.Protocol;

namespace MinBft.Tests.Architecture;

/// <summary>
/// A backstop for the project boundaries, read from the built assemblies and the project files.
/// The project references are the real boundary: MinBft.Protocol cannot call what it does not
/// reference. These tests catch a reference added to the wrong project, and the few kinds of I/O
/// that the base library lets any assembly do.
/// </summary>
public sealed class ProjectBoundaryTests
{
    private static readonly Assembly ProtocolAssembly = typeof(ReplicaCore).Assembly;
    private static readonly Assembly ClientSdkAssembly = typeof(MinBftClient).Assembly;

    // The only packages the protocol core may use: serialization attributes (no runtime, no code
    // generator) and the cryptography (Ed25519 in libsodium through NSec; BouncyCastle for key
    // checks and the rest).
    private static readonly string[] ProtocolPackages = ["Microsoft.Orleans.Serialization.Abstractions", "BouncyCastle.Cryptography", "NSec.Cryptography"];
    private static readonly string[] ProtocolPackageAssemblies = ["Orleans.Serialization.Abstractions", "BouncyCastle.Cryptography", "NSec.Cryptography"];

    [Fact]
    public void Protocol_assembly_references_only_the_serialization_attributes_the_crypto_libraries_and_the_base_library()
    {
        var references = ProtocolAssembly.GetReferencedAssemblies().Select(a => a.Name!).ToList();
        Assert.Equal("MinBft.Protocol", ProtocolAssembly.GetName().Name);
        Assert.Contains("Orleans.Serialization.Abstractions", references);

        Assert.DoesNotContain(references, n => n.StartsWith("Orleans.", StringComparison.Ordinal) && n != "Orleans.Serialization.Abstractions");
        Assert.DoesNotContain(references, n => n.StartsWith("Microsoft.Extensions.", StringComparison.Ordinal));
        Assert.DoesNotContain(references, n => n is "Microsoft.Data.Sqlite" or "StackExchange.Redis");
        Assert.DoesNotContain(references, n => n.StartsWith("MinBft.", StringComparison.Ordinal));
        var outside = references.Where(n => !ProtocolPackageAssemblies.Contains(n) && !IsPureBaseLibrary(n)).ToList();
        Assert.True(outside.Count == 0, "MinBft.Protocol references " + string.Join(", ", outside));
    }

    [Fact]
    public void Protocol_code_does_no_file_network_console_or_process_io()
    {
        // File, FileStream, Path, Directory and the rest live in System.Runtime like string does,
        // so the assembly references cannot tell; the type references can.
        string[] allowed = ["System.IO.InvalidDataException"];
        var io = TypeReferences(ProtocolAssembly)
            .Where(t => (t.StartsWith("System.IO.", StringComparison.Ordinal) && !allowed.Contains(t))
                || t.StartsWith("System.Net.", StringComparison.Ordinal)
                || (t is "System.Console" or "System.Diagnostics.Process" or "System.Environment" && !IsCompilerUse(t)))
            .ToList();
        Assert.True(io.Count == 0, "MinBft.Protocol uses " + string.Join(", ", io));
    }

    [Fact]
    public void Protocol_code_never_reads_a_clock_nor_awaits()
    {
        // Time and completions are inputs of the core (STYLE.md: Step in, Ready out), so that the
        // simulator replays it deterministically.
        var types = TypeReferences(ProtocolAssembly).ToList();
        var forbidden = types
            .Where(t => t is "System.Diagnostics.Stopwatch" or "System.TimeProvider" or "System.Random"
                    or "System.Threading.Timer" or "System.Threading.Thread"
                || t.StartsWith("System.Threading.Tasks.", StringComparison.Ordinal))
            .ToList();
        forbidden.AddRange(MemberReferences(ProtocolAssembly)
            .Where(m => m is "System.DateTime.get_Now" or "System.DateTime.get_UtcNow" or "System.DateTime.get_Today"
                or "System.DateTimeOffset.get_Now" or "System.DateTimeOffset.get_UtcNow" or "System.Environment.get_TickCount64"
                or "System.Environment.get_TickCount"));
        Assert.True(forbidden.Count == 0, "MinBft.Protocol uses " + string.Join(", ", forbidden));
    }

    [Fact]
    public void Protocol_project_file_references_its_two_packages_and_no_project()
    {
        var project = XDocument.Load(Path.Combine(RepositoryRoot(), "Protocol", "Protocol.csproj"));
        var packages = project.Descendants("PackageReference").Select(p => (string?)p.Attribute("Include")).Order().ToArray();
        Assert.Equal(ProtocolPackages.Order().ToArray(), packages);
        Assert.Empty(project.Descendants("ProjectReference"));
        Assert.Empty(project.Descendants("Reference"));
    }

    [Fact]
    public void Core_tests_project_runs_the_simulator_on_the_protocol_and_usig_core_alone_with_no_orleans_host()
    {
        // The simulator must run the production core, not a hosted copy; and in a process of its
        // own, with no silo beside it (Tests/Core/Core.Tests.csproj says why).
        var project = XDocument.Load(Path.Combine(RepositoryRoot(), "Tests", "Core", "Core.Tests.csproj"));
        var projects = project.Descendants("ProjectReference").Select(p => Path.GetFileName((string?)p.Attribute("Include") ?? "")).Order().ToArray();
        Assert.Equal(new[] { "Protocol.csproj", "Usig.Core.csproj" }, projects);
        var packages = project.Descendants("PackageReference").Select(p => (string?)p.Attribute("Include") ?? "").ToArray();
        Assert.DoesNotContain(packages, p => p.Contains("Orleans", StringComparison.Ordinal));
    }

    [Fact]
    public void Client_sdk_does_not_reference_the_server_even_transitively()
    {
        Assert.Equal("MinBft.Client.Sdk", ClientSdkAssembly.GetName().Name);
        var reached = ProjectAssembliesReachedFrom(ClientSdkAssembly);
        Assert.Contains("MinBft.Grains.Interfaces", reached);
        Assert.Contains("MinBft.Protocol", reached);
        Assert.DoesNotContain("MinBft.Grains", reached);
        Assert.DoesNotContain("MinBft.Silo", reached);
        Assert.DoesNotContain("MinBft.Client", reached);

        var project = XDocument.Load(Path.Combine(RepositoryRoot(), "Client", "Sdk", "Sdk.csproj"));
        var projects = project.Descendants("ProjectReference").Select(p => Path.GetFileName((string?)p.Attribute("Include") ?? "")).ToArray();
        Assert.Equal(new[] { "Grains.Interfaces.csproj" }, projects);
    }

    [Fact]
    public void Grain_interfaces_do_not_reference_the_server()
    {
        var interfaces = typeof(IReplicaGrain).Assembly;
        Assert.Equal("MinBft.Grains.Interfaces", interfaces.GetName().Name);
        var reached = ProjectAssembliesReachedFrom(interfaces);
        Assert.Equal(new[] { "MinBft.Protocol" }, reached.Order().ToArray());
    }

    // The USIG's trusted computing base: the USIG library and program reference the base library,
    // NSec (libsodium: its Ed25519 scheme), System.CommandLine (the program's flags) and each other, nothing
    // else: no Orleans, hosting, logging, storage provider or other MinBft project.
    private static readonly string[] UsigAllowedAssemblies = ["NSec.Cryptography", "System.CommandLine", "MinBft.Usig.Core"];

    [Theory]
    [InlineData("MinBft.Usig.Core.dll", "NSec.Cryptography")]
    [InlineData("MinBft.Usig.dll", "MinBft.Usig.Core")]
    public void Usig_assemblies_reference_no_orleans_hosting_storage_or_other_project(string file, string expected)
    {
        var path = Path.Combine(AppContext.BaseDirectory, file);
        Assert.True(File.Exists(path), $"{path} is missing (the Tests project reaches Usig/Program through Silo)");
        using var pe = new PEReader(File.OpenRead(path));
        var metadata = pe.GetMetadataReader();
        var references = metadata.AssemblyReferences.Select(h => metadata.GetString(metadata.GetAssemblyReference(h).Name)).ToList();
        Assert.Contains(expected, references);
        var outside = references.Where(n => !UsigAllowedAssemblies.Contains(n) && !IsBaseLibrary(n)).ToList();
        Assert.True(outside.Count == 0, file + " references " + string.Join(", ", outside));
        Assert.DoesNotContain(references, n => n.StartsWith("Orleans", StringComparison.Ordinal) || n.StartsWith("Microsoft.", StringComparison.Ordinal));
    }

    [Fact]
    public void Usig_project_files_reference_only_nsec_commandline_and_each_other()
    {
        var core = XDocument.Load(Path.Combine(RepositoryRoot(), "Usig", "Core", "Usig.Core.csproj"));
        Assert.Equal(new[] { "NSec.Cryptography" }, core.Descendants("PackageReference").Select(p => (string?)p.Attribute("Include")).ToArray());
        Assert.Empty(core.Descendants("ProjectReference"));
        Assert.Empty(core.Descendants("Reference"));

        var program = XDocument.Load(Path.Combine(RepositoryRoot(), "Usig", "Program", "Usig.csproj"));
        Assert.Equal(new[] { "System.CommandLine" }, program.Descendants("PackageReference").Select(p => (string?)p.Attribute("Include")).ToArray());
        Assert.Equal(new[] { "../Core/Usig.Core.csproj" }, program.Descendants("ProjectReference").Select(p => (string?)p.Attribute("Include")).ToArray());
        Assert.Empty(program.Descendants("Reference"));
        // Nothing is compiled in from outside Usig/ (Protocol links the other way round).
        Assert.Empty(core.Descendants("Compile").Concat(program.Descendants("Compile")));
    }

    // Any base-library assembly (the USIG program does file and socket I/O: that is its job).
    private static bool IsBaseLibrary(string name) => name is "System.Runtime" or "netstandard" or "mscorlib" || name.StartsWith("System.", StringComparison.Ordinal) && name != "System.CommandLine";

    // Base-library assemblies that do no I/O of their own. System.Runtime is among them, and the
    // I/O types it also holds are checked by type (Protocol_code_does_no_file_network_console_or_process_io).
    private static bool IsPureBaseLibrary(string name) =>
        name is "System.Runtime" or "netstandard" or "mscorlib"
        || name.StartsWith("System.", StringComparison.Ordinal)
            && !name.StartsWith("System.Net.", StringComparison.Ordinal)
            && !name.StartsWith("System.IO.", StringComparison.Ordinal)
            && name is not ("System.Console" or "System.Diagnostics.Process" or "System.Data.Common" or "System.Private.Xml");

    // The C# compiler reads Environment.CurrentManagedThreadId in every iterator it generates.
    private static bool IsCompilerUse(string type) =>
        type == "System.Environment"
        && MemberReferences(ProtocolAssembly).Where(m => m.StartsWith("System.Environment.", StringComparison.Ordinal))
            .All(m => m == "System.Environment.get_CurrentManagedThreadId");

    private static HashSet<string> ProjectAssembliesReachedFrom(Assembly root)
    {
        var reached = new HashSet<string>(StringComparer.Ordinal);
        var pending = new Stack<AssemblyName>(root.GetReferencedAssemblies());
        while (pending.TryPop(out var name))
        {
            if (!name.Name!.StartsWith("MinBft.", StringComparison.Ordinal) || !reached.Add(name.Name)) continue;
            foreach (var next in Assembly.Load(name).GetReferencedAssemblies()) pending.Push(next);
        }
        return reached;
    }

    private static IEnumerable<string> TypeReferences(Assembly assembly)
    {
        using var pe = new PEReader(File.OpenRead(assembly.Location));
        var metadata = pe.GetMetadataReader();
        return metadata.TypeReferences.Select(h => TypeName(metadata, metadata.GetTypeReference(h))).Distinct().ToList();
    }

    private static IEnumerable<string> MemberReferences(Assembly assembly)
    {
        using var pe = new PEReader(File.OpenRead(assembly.Location));
        var metadata = pe.GetMetadataReader();
        var members = new List<string>();
        foreach (var handle in metadata.MemberReferences)
        {
            var member = metadata.GetMemberReference(handle);
            if (member.Parent.Kind == HandleKind.TypeReference)
                members.Add(TypeName(metadata, metadata.GetTypeReference((TypeReferenceHandle)member.Parent)) + "." + metadata.GetString(member.Name));
        }
        return members.Distinct().ToList();
    }

    private static string TypeName(MetadataReader metadata, TypeReference type) =>
        type.ResolutionScope.Kind == HandleKind.TypeReference
            ? TypeName(metadata, metadata.GetTypeReference((TypeReferenceHandle)type.ResolutionScope)) + "+" + metadata.GetString(type.Name)
            : metadata.GetString(type.Namespace) + "." + metadata.GetString(type.Name);

    private static string RepositoryRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "MinBft.Orleans.sln"))) return directory.FullName;
        }
        throw new InvalidOperationException("MinBft.Orleans.sln not found above " + AppContext.BaseDirectory);
    }
}
