using Microsoft.Extensions.DependencyInjection;
using Orleans.Serialization;

namespace MinBft.Hosting;

/// <summary>
/// Lets Orleans carry this project's exceptions across a grain call with their type and message.
/// Orleans serializes only exceptions of the namespaces it is told about (System, Microsoft,
/// Orleans by default); any other reached the caller as "Could not find a codec for type ...",
/// so an operator saw that instead of, say, why a USIG refused to start. The exceptions of the
/// MinBft namespaces carry nothing beyond what <see cref="Exception"/> holds (message, stack, inner).
/// Silos (<c>AddMinBft</c>) and clients (<c>AddMinBftClient</c>) both register it: either side may
/// be the one that reads an exception.
/// </summary>
public static class MinBftExceptionSerialization
{
    /// <summary>The namespace prefix of every MinBft type.</summary>
    public const string NamespacePrefix = "MinBft";

    public static IServiceCollection AddMinBftExceptionSerialization(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        return services.Configure<ExceptionSerializationOptions>(o => o.SupportedNamespacePrefixes.Add(NamespacePrefix));
    }
}
