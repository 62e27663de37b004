using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;

namespace MinBft.Tests.Hosting;

/// <summary>
/// The silo's web host reads appsettings.json once. A reloading host watches its working directory
/// recursively, and a data directory under it (<c>local --data ./data</c>) made every synced
/// journal and USIG write wake the watcher.
/// </summary>
public sealed class SiloWebHostTests
{
    [Fact]
    public void The_silo_host_reads_its_settings_files_without_watching_them()
    {
        var files = FileSources(MinBft.Silo.Program.CreateWebHostBuilder());
        Assert.Contains(files, f => f.Path == "appsettings.json");
        Assert.All(files, f => Assert.False(f.ReloadOnChange, $"{f.Path} would be watched for changes"));
    }

    [Fact]
    public void The_framework_default_it_replaces_would_watch_them()
    {
        // What CreateWebHostBuilder turns off: without it, this is what both silo modes built.
        Assert.Contains(FileSources(WebApplication.CreateBuilder()), f => f.Path == "appsettings.json" && f.ReloadOnChange);
    }

    private static FileConfigurationSource[] FileSources(WebApplicationBuilder builder) =>
        ((IConfigurationBuilder)builder.Configuration).Sources.OfType<FileConfigurationSource>().ToArray();
}
