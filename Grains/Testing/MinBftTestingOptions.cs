using MinBft.Application;
using MinBft.Client;
using MinBft.Crypto;
using MinBft.Hosting;
using Orleans.Hosting;

namespace MinBft.Testing;

/// <summary>What <c>AddMinBft</c> deploys into a test cluster.</summary>
public sealed class MinBftTestingOptions
{
    /// <summary>Faults tolerated: the cluster has n = 2f+1 replicas, one per fault domain (silo k is fault domain k).</summary>
    public int F { get; set; } = 1;

    /// <summary>The USIGs' certificate scheme.</summary>
    public UsigScheme UsigScheme { get; set; } = UsigScheme.Ed25519;

    /// <summary>Extra silos after the n fault domains' silos, with no fault domain: they host client proxies only.</summary>
    public int GatewaySilos { get; set; }

    /// <summary>Checkpoint interval written into the manifest (a cluster-wide constant).</summary>
    public int CheckpointInterval { get; set; } = ClusterManifest.DefaultCheckpointInterval;

    /// <summary>Watermark window written into the manifest (a cluster-wide constant).</summary>
    public int Watermark { get; set; } = ClusterManifest.DefaultWatermark;

    /// <summary>
    /// Most client records the replicated state keeps, written into the manifest (a cluster-wide
    /// constant). Tests set it low (a few records) to exercise client record eviction.
    /// </summary>
    public int MaxClientRecords { get; set; } = ClusterManifest.DefaultMaxClientRecords;

    /// <summary>
    /// The replicated service: called once per replica (with its id) for a fresh state machine.
    /// Null: the key-value sample, which <see cref="KeyValueClient"/> speaks to.
    /// </summary>
    public Func<int, IStateMachine>? StateMachine { get; set; }

    /// <summary>
    /// Directory for the deployment's keys and SQLite stores. Null: a new directory under the
    /// system temp directory, deleted when the <see cref="MinBftTestDeployment"/> is disposed
    /// (or, failing that, when the process exits).
    /// </summary>
    public string? Directory { get; set; }

    /// <summary>Adjusts every silo's MinBFT options (timeouts, batching) after the helper set its own.</summary>
    public Action<MinBftOptions>? ConfigureMinBft { get; set; }

    /// <summary>Extra configuration of each silo: (its fault domain, or null for a gateway silo; the silo builder).</summary>
    public Action<int?, ISiloBuilder>? ConfigureSilo { get; set; }

    /// <summary>Adjusts the test cluster client's <see cref="MinBftClientOptions"/> (the manifest path is set already).</summary>
    public Action<MinBftClientOptions>? ConfigureClient { get; set; }

    internal void Validate()
    {
        if (F < 0) throw new ArgumentException($"{nameof(F)} must not be negative, got {F}");
        if (GatewaySilos < 0) throw new ArgumentException($"{nameof(GatewaySilos)} must not be negative, got {GatewaySilos}");
        if (2 * F + 1 + GatewaySilos > short.MaxValue) throw new ArgumentException($"too many silos: 2f+1 + {GatewaySilos}");
    }
}
