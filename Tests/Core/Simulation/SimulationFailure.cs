namespace MinBft.Tests.Simulation;

/// <summary>A property of the protocol failed in a simulated run; the message names the seed.</summary>
public sealed class SimulationFailure(string message) : Exception(message);
