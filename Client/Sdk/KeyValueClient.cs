using MinBft.Application;

namespace MinBft.Client;

/// <summary>
/// Typed access to the sample key-value service (<see cref="KeyValueStateMachine"/>) through a
/// <see cref="MinBftClient"/>. Every call is one ordered, verified MinBFT request, so reads are
/// linearizable too.
/// </summary>
public sealed class KeyValueClient(MinBftClient client)
{
    private readonly MinBftClient _client = client ?? throw new ArgumentNullException(nameof(client));

    /// <summary>Sets <paramref name="key"/> to <paramref name="value"/>.</summary>
    public async Task PutAsync(string key, byte[] value, CancellationToken cancellationToken = default)
    {
        var result = await ExecuteAsync(KeyValueOperation.EncodePut(key, value), cancellationToken).ConfigureAwait(false);
        Expect(result, KeyValueStatus.Ok);
    }

    /// <summary>The value of <paramref name="key"/>, or null if it is absent.</summary>
    public async Task<byte[]?> GetAsync(string key, CancellationToken cancellationToken = default)
    {
        var result = await ExecuteAsync(KeyValueOperation.EncodeGet(key), cancellationToken).ConfigureAwait(false);
        return result.Status switch
        {
            KeyValueStatus.Ok when result.Value is not null => result.Value,
            KeyValueStatus.NotFound => null,
            _ => throw Unexpected(result),
        };
    }

    /// <summary>Removes <paramref name="key"/>; true if it existed.</summary>
    public async Task<bool> DeleteAsync(string key, CancellationToken cancellationToken = default)
    {
        var result = await ExecuteAsync(KeyValueOperation.EncodeDelete(key), cancellationToken).ConfigureAwait(false);
        return result.Status switch
        {
            KeyValueStatus.Ok => true,
            KeyValueStatus.NotFound => false,
            _ => throw Unexpected(result),
        };
    }

    /// <summary>
    /// Sets <paramref name="key"/> to <paramref name="newValue"/> if its current value equals
    /// <paramref name="expected"/> (null: only if the key is absent).
    /// </summary>
    public async Task<CompareAndSetResult> CompareAndSetAsync(string key, byte[]? expected, byte[] newValue, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(newValue);
        var operation = expected is null
            ? KeyValueOperation.EncodeCompareAndSetAbsent(key, newValue)
            : KeyValueOperation.EncodeCompareAndSet(key, expected, newValue);
        var result = await ExecuteAsync(operation, cancellationToken).ConfigureAwait(false);
        return result.Status switch
        {
            KeyValueStatus.Ok => new CompareAndSetResult(true, newValue),
            KeyValueStatus.CasMismatch => new CompareAndSetResult(false, result.Value),
            _ => throw Unexpected(result),
        };
    }

    private async Task<KeyValueResult> ExecuteAsync(byte[] operation, CancellationToken cancellationToken)
    {
        var bytes = await _client.ExecuteAsync(operation, cancellationToken).ConfigureAwait(false);
        // f+1 replicas vouched for these bytes, so garbage here is a bug, not an attack.
        return KeyValueResult.TryDecode(bytes, out var result)
            ? result
            : throw new MinBftException($"the replicas returned a result that is not a key-value result ({bytes.Length} bytes)");
    }

    private static void Expect(KeyValueResult result, KeyValueStatus status)
    {
        if (result.Status != status || result.Value is not null) throw Unexpected(result);
    }

    private static MinBftException Unexpected(KeyValueResult result) =>
        new($"unexpected key-value result {result.Status}{(result.Value is null ? "" : " with a value")}");
}

/// <summary>Outcome of a compare-and-set.</summary>
/// <param name="Succeeded">True if the value was replaced.</param>
/// <param name="Current">The key's value after the call: the new value on success, else the value that did not match (null if absent).</param>
public sealed record CompareAndSetResult(bool Succeeded, byte[]? Current);
