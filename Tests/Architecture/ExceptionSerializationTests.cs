using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using MinBft.Client;
using MinBft.Hosting;
using MinBft.Protocol;
using MinBft.Usig;
using Orleans.Hosting;
using Orleans.Serialization;

namespace MinBft.Tests.Architecture;

/// <summary>
/// An exception a MinBFT grain throws (a USIG that refuses to start, a violated protocol
/// invariant) must reach the caller as itself: Orleans serializes only the exception namespaces
/// it is told about, and before silos and clients registered MinBft's, callers got "Could not find
/// a codec" in place of the message.
/// </summary>
public sealed class ExceptionSerializationTests
{
    public static TheoryData<string> Thrown() => ["usig not initialised", "usig epoch mismatch", "protocol invariant"];

    private static Exception Throw(string which)
    {
        try
        {
            throw which switch
            {
                "usig not initialised" => new UsigNotInitializedException(2, "empty store"),
                "usig epoch mismatch" => new UsigEpochMismatchException(1, 3, 2),
                _ => new ProtocolInvariantException("a test's invariant"),
            };
        }
        catch (Exception e)
        {
            return e; // thrown, so it has a stack trace like one from a grain
        }
    }

    private static Serializer SerializerOf(IServiceCollection services) =>
        services.AddSerializer().BuildServiceProvider().GetRequiredService<Serializer>();

    [Theory]
    [MemberData(nameof(Thrown))]
    public void A_minbft_exception_round_trips_with_its_type_and_message(string which)
    {
        var serializer = SerializerOf(new ServiceCollection().AddMinBftExceptionSerialization());
        var original = Throw(which);

        var back = serializer.Deserialize<object>(serializer.SerializeToArray<object>(original));

        var exception = Assert.IsAssignableFrom<Exception>(back);
        Assert.Equal(original.GetType(), exception.GetType());
        Assert.Equal(original.Message, exception.Message);
    }

    [Fact]
    public void Without_the_registration_orleans_cannot_serialize_them()
    {
        // The failure the registration exists for; if Orleans ever serializes every exception by
        // default, this test says the registration can go.
        var serializer = SerializerOf(new ServiceCollection());
        Assert.Throws<CodecNotFoundException>(() => serializer.SerializeToArray<object>(Throw("usig not initialised")));
    }

    [Fact]
    public void Clients_and_silos_both_register_the_minbft_namespace()
    {
        var client = new ServiceCollection().AddMinBftClient().BuildServiceProvider();
        Assert.Contains(MinBftExceptionSerialization.NamespacePrefix, client.GetRequiredService<IOptions<ExceptionSerializationOptions>>().Value.SupportedNamespacePrefixes);

        var directory = Path.Combine(Path.GetTempPath(), "minbft-exception-registration-" + Guid.NewGuid().ToString("N"));
        try
        {
            var manifest = DeploymentKeys.Generate(1, directory);
            var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
            builder.UseOrleans(silo =>
            {
                silo.UseLocalhostClustering();
                silo.AddMinBftGateway(manifest);
            });
            using var host = builder.Build();
            Assert.Contains(MinBftExceptionSerialization.NamespacePrefix, host.Services.GetRequiredService<IOptions<ExceptionSerializationOptions>>().Value.SupportedNamespacePrefixes);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }
}
