namespace MinBft.Encoding;

/// <summary>
/// Cuts a run of items into delivery calls bounded both in count and in bytes, so that no call
/// makes one Orleans message larger than MessageLimits.MaxDeliveryBytes, whatever the items are.
/// An item larger than the byte bound on its own still goes, alone in its call: every item the
/// limits admit must be deliverable.
/// </summary>
public static class DeliveryRuns
{
    /// <summary>The (start, length) of each call, in order, covering all <paramref name="count"/> items.</summary>
    public static List<(int Start, int Length)> Split(int count, Func<int, long> bytesOf, int maxCount, long maxBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxCount, 1);
        var runs = new List<(int, int)>();
        var start = 0;
        long bytes = 0;
        for (var i = 0; i < count; i++)
        {
            var size = bytesOf(i);
            if (i > start && (i - start == maxCount || bytes + size > maxBytes))
            {
                runs.Add((start, i - start));
                start = i;
                bytes = 0;
            }
            bytes += size;
        }
        if (count > start) runs.Add((start, count - start));
        return runs;
    }
}
