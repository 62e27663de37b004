using MinBft.Application;

namespace MinBft.Tests.Application;

/// <summary>Everything observable about a service's state (its canonical snapshot and digest), to
/// check that a rejected operation changed nothing.</summary>
internal sealed record StateFingerprint(byte[] Snapshot, byte[] Digest)
{
    public static StateFingerprint Of(IStateMachine machine) => new(machine.Snapshot(), machine.Digest());

    public void AssertSame(IStateMachine machine)
    {
        Assert.Equal(Snapshot, machine.Snapshot());
        Assert.Equal(Digest, machine.Digest());
    }
}
