using Xunit.Abstractions;
using Xunit.Sdk;

[assembly: TestCollectionOrderer("MinBft.Tests.Integration.LastCollectionsOrderer", "MinBft.Tests")]

namespace MinBft.Tests.Integration;

/// <summary>
/// Tests that start an intruding silo which fails to join (<see cref="TlsTests"/>). Such a silo
/// leaves busy loops behind in this process after its host is stopped and disposed, which slowed
/// every test that ran after it several times over. Measured with Orleans 10.4.2 (stop 28): the
/// test host used 0.2 of a core before one refused intruder and 1.4-1.6 cores for the next 60 s.
/// A dump showed the cause: the failed silo's membership update stream ends at once, and the
/// consumers that loop over it until their own shutdown spin instead (the strongly consistent
/// directory's <c>DirectoryMembershipService.GetViewUpdates</c>, 2,759 live iterators, with its
/// <c>DisposeAsync</c> still pending; with the eventually consistent directory,
/// <c>LocalGrainDirectory.ProcessMembershipUpdates</c>, decaying from 1.8 to 0.6 cores in 60 s).
/// It is inside Orleans and ends only with the process, so these tests run alone and last
/// (<see cref="LastCollectionsOrderer"/>), when nothing is left to slow.
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
