using System.Buffers;
using System.Buffers.Binary;
using System.Reflection;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Runtime;
using Orleans.Serialization;

namespace MinBft.Hosting;

/// <summary>
/// Reads, without consuming it, the silo address an inbound silo connection claims in Orleans'
/// connection preamble (a 32-bit little-endian length, then Orleans' internal
/// <c>ConnectionPreamble</c>, serialized with Orleans' serializer). Orleans sends messages for
/// that silo over such a connection too, and the claim is not tied to the certificate; this is
/// what <see cref="SiloCertificateDomains.Admit"/> ties it to. Orleans has no public hook after
/// the preamble, so the type is found by name: if Orleans renames it, the silo stops at start
/// (and <c>TlsTests</c> fails) instead of running without the check.
/// </summary>
internal sealed class SiloConnectionPreamble
{
    // Orleans' own bound (ConnectionPreambleHelper.MaxPreambleLength).
    private const int MaxLength = 1024;
    /// <summary>Orleans' internal preamble type, by name (the tests build forged preambles with it too).</summary>
    internal const string PreambleTypeName = "Orleans.Runtime.Messaging.ConnectionPreamble, Orleans.Core";

    private readonly object _serializer;
    private readonly MethodInfo _deserialize;
    private readonly PropertyInfo _siloAddress;

    public SiloConnectionPreamble(IServiceProvider services)
    {
        var type = Type.GetType(PreambleTypeName, throwOnError: false)
            ?? throw new InvalidOperationException($"Orleans' connection preamble type {PreambleTypeName} was not found: this Orleans version is not supported by MinBFT's inbound silo check");
        _serializer = services.GetRequiredService(typeof(Serializer<>).MakeGenericType(type));
        _deserialize = _serializer.GetType().GetMethod(nameof(Serializer<object>.Deserialize), [typeof(ReadOnlySequence<byte>)])
            ?? throw new InvalidOperationException("Orleans' Serializer<T>.Deserialize(ReadOnlySequence<byte>) was not found");
        _siloAddress = type.GetProperty("SiloAddress", BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic)
            ?? throw new InvalidOperationException($"{PreambleTypeName} has no SiloAddress property");
    }

    /// <summary>The silo address the peer claims (null: none, as a client's would be). The bytes
    /// stay in the connection for Orleans to read. <c>Ended</c> if the connection ended before its
    /// preamble (a <see cref="SiloCertificateProbe"/> does); throws if the preamble is malformed.</summary>
    public async Task<(bool Ended, SiloAddress? Claimed)> PeekSiloAddressAsync(ConnectionContext connection)
    {
        var input = connection.Transport.Input;
        while (true)
        {
            var read = await input.ReadAsync(connection.ConnectionClosed).ConfigureAwait(false);
            var buffer = read.Buffer;
            if (Parse(buffer, out var claimed))
            {
                // Nothing consumed and nothing examined: Orleans' read gets the same bytes at once.
                input.AdvanceTo(buffer.Start, buffer.Start);
                return (false, claimed);
            }
            if (read.IsCompleted || read.IsCanceled)
            {
                input.AdvanceTo(buffer.End);
                return (true, null);
            }
            input.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    private bool Parse(ReadOnlySequence<byte> buffer, out SiloAddress? claimed)
    {
        claimed = null;
        if (buffer.Length < sizeof(int)) return false;
        Span<byte> prefix = stackalloc byte[sizeof(int)];
        buffer.Slice(0, sizeof(int)).CopyTo(prefix);
        var length = BinaryPrimitives.ReadInt32LittleEndian(prefix);
        if (length is <= 0 or > MaxLength) throw new InvalidDataException($"a silo connection preamble of {length} bytes");
        if (buffer.Length < sizeof(int) + length) return false;
        var preamble = _deserialize.Invoke(_serializer, [buffer.Slice(sizeof(int), length)]);
        claimed = preamble is null ? null : (SiloAddress?)_siloAddress.GetValue(preamble);
        return true;
    }
}
