using Xunit.Abstractions;
using Xunit.Sdk;

[assembly: TestCollectionOrderer("MinBft.Tests.Integration.LastCollectionsOrderer", "MinBft.Tests")]

namespace MinBft.Tests.Integration;

/// <summary>
/// Tests that start an intruding silo which fails to join (<see cref="TlsTests"/>). Such a silo
/// leaves background work behind in this process after its host is stopped and disposed (seen
/// with Orleans 10.4.2: the strongly consistent directory's membership loop, then busy thread-pool
/// work and garbage collections), which slowed every test that ran after it several times over.
/// So they run alone and last (<see cref="LastCollectionsOrderer"/>), when nothing is left to slow.
/// </summary>
[CollectionDefinition(nameof(IntruderSiloCollection), DisableParallelization = true)]
public sealed class IntruderSiloCollection;

/// <summary>Xunit's default collection order, except that <see cref="IntruderSiloCollection"/> runs last.</summary>
public sealed class LastCollectionsOrderer : ITestCollectionOrderer
{
    public IEnumerable<ITestCollection> OrderTestCollections(IEnumerable<ITestCollection> testCollections)
    {
        var ordered = new DefaultTestCollectionOrderer().OrderTestCollections(testCollections).ToList();
        return ordered.Where(c => !IsLast(c)).Concat(ordered.Where(IsLast));
    }

    private static bool IsLast(ITestCollection collection) => collection.DisplayName.EndsWith(nameof(IntruderSiloCollection), StringComparison.Ordinal);
}
