using LeaderSidecar.Election;
using Microsoft.Extensions.Logging;

namespace LeaderSidecar.Configuration;

internal enum LogFormat
{
    Json,
    Text,
}

/// <summary>Everything the daemon was configured with, after defaults, environment and flags.</summary>
internal sealed record SidecarOptions
{
    /// <summary>The <c>--backend</c> value that picks the store from the other flags and the surroundings.</summary>
    public const string AutoBackend = "auto";

    public required string LeaseName { get; init; }

    public required string Identity { get; init; }

    public required string Namespace { get; init; }

    /// <summary>A store's name (Stores/StoreKinds.cs), or <see cref="AutoBackend"/>.</summary>
    public string Backend { get; init; } = AutoBackend;

    /// <summary>Each store's settings, as its flags gave them.</summary>
    public Stores.StoreSettings Stores { get; init; } = new();

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

    /// <summary>False: observe and report, never lead (<c>--campaign=false</c>).</summary>
    public bool Campaign { get; init; } = true;

    /// <summary>How much longer than others to wait before taking a free or expired lease.</summary>
    public TimeSpan CampaignDelay { get; init; } = TimeSpan.Zero;

    /// <summary>The app's own health check that decides whether this replica is fit to lead; null: always fit.</summary>
    public AppHealth.AppHealthOptions? AppHealth { get; init; }

    /// <summary>How long shutdown waits for the app's confirmation between stepping down and releasing; zero: no wait.</summary>
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.Zero;

    /// <summary>Exec mode: the COMMAND after <c>--</c> and how it is run; null without one.</summary>
    public Surfaces.Exec.ExecOptions? Exec { get; init; }

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
        Campaign = Campaign,
        CampaignDelay = CampaignDelay,
    };
}
