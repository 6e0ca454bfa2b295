using LeaderSidecar.Election;
using Microsoft.Extensions.Logging;

namespace LeaderSidecar.Configuration;

/// <summary>Which lease store to use.</summary>
internal enum BackendKind
{
    /// <summary>Kubernetes when in a cluster or given a kubeconfig, else the local file backend.</summary>
    Auto,

    /// <summary>A JSON file under <see cref="SidecarOptions.LeaseDirectory"/>; one host only.</summary>
    File,

    /// <summary>A <c>coordination.k8s.io/v1</c> Lease.</summary>
    Kubernetes,

    /// <summary>A key in etcd v3 (Stores/Etcd).</summary>
    Etcd,
}

internal enum LogFormat
{
    Json,
    Text,
}

/// <summary>Everything the daemon was configured with, after defaults, environment and flags.</summary>
internal sealed record SidecarOptions
{
    /// <summary>How <c>--help</c> names the default of <see cref="LeaseDirectory"/>.</summary>
    public const string DefaultLeaseDirectory = "/tmp/leader-sidecar-UID (private to this user)";

    public required string LeaseName { get; init; }

    public required string Identity { get; init; }

    public required string Namespace { get; init; }

    public BackendKind Backend { get; init; } = BackendKind.Auto;

    /// <summary>
    /// The file backend's directory as given (<c>--lease-dir</c>); <see langword="null"/>: the private
    /// per-user default, which is held to stricter rules (Stores/LocalFile/LeaseDirectory.cs).
    /// </summary>
    public string? LeaseDirectory { get; init; }

    public string? Kubeconfig { get; init; }

    /// <summary>The etcd store's settings; null: no <c>--etcd-*</c> flag was given.</summary>
    public Stores.Etcd.EtcdOptions? Etcd { get; init; }

    public TimeSpan LeaseDuration { get; init; } = TimeSpan.FromSeconds(15);

    public TimeSpan RenewDeadline { get; init; } = TimeSpan.FromSeconds(10);

    public TimeSpan RetryPeriod { get; init; } = TimeSpan.FromSeconds(2);

    public ListenAddress HttpAddress { get; init; } = new(System.Net.IPAddress.Loopback, 4040, null);

    public ListenAddress GrpcAddress { get; init; } = new(System.Net.IPAddress.Loopback, 4041, null);

    /// <summary>Where the probe listener (health and metrics only) listens; null: not at all.</summary>
    public ListenAddress? ProbeAddress { get; init; }

    /// <summary>Lets gRPC clients that present it change leadership over TCP; null: none is accepted.</summary>
    public ControlToken? ControlToken { get; init; }

    /// <summary>Lets any gRPC client change leadership over TCP (a pod's private loopback).</summary>
    public bool AllowTcpControl { get; init; }

    public string? LeaderFile { get; init; }

    /// <summary>How long shutdown waits for the app's confirmation between stepping down and releasing; zero: no wait.</summary>
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.Zero;

    public LogFormat LogFormat { get; init; } = LogFormat.Json;

    public LogLevel LogLevel { get; init; } = LogLevel.Information;

    /// <summary>
    /// The longest identity: the election core refuses a longer <c>holderIdentity</c> in a record,
    /// so a longer one could never lead. Kubernetes pod names, the usual identity, stop at 253.
    /// </summary>
    public const int MaxIdentityLength = 1024;

    /// <summary>The longest value any duration flag takes.</summary>
    public static readonly TimeSpan MaxDuration = TimeSpan.FromHours(24);

    public ElectionOptions Election => new()
    {
        Identity = Identity,
        LeaseName = LeaseName,
        LeaseNamespace = Namespace,
        LeaseDuration = LeaseDuration,
        RenewDeadline = RenewDeadline,
        RetryPeriod = RetryPeriod,
    };
}
