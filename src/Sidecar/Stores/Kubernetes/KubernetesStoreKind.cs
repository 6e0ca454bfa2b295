using LeaderSidecar.Configuration;
using LeaderSidecar.Election;
using LeaderSidecar.Hosting;

namespace LeaderSidecar.Stores.Kubernetes;

/// <summary>The Kubernetes store's settings (<c>--kubeconfig</c>).</summary>
internal sealed record KubernetesSettings
{
    public string? Kubeconfig { get; init; }
}

/// <summary><c>--backend kubernetes</c>: a <c>coordination.k8s.io/v1</c> Lease.</summary>
internal sealed class KubernetesStoreKind : StoreKind
{
    /// <summary>The kubeconfig variable every Kubernetes client reads.</summary>
    public const string KubeconfigVariable = "KUBECONFIG";

    public override string Name => "kubernetes";

    public override IReadOnlyList<StoreFlag> Flags { get; } =
    [
        new("kubeconfig", "PATH", "Kubeconfig file for the kubernetes backend outside a cluster.", "$" + KubeconfigVariable,
            (s, v) => v.Length > 0 ? s.Set<KubernetesSettings>(k => k with { Kubeconfig = v }) : "kubeconfig path must not be empty"),
        LeaseEvents.Flag,
    ];

    public override string? ChosenBy(SidecarOptions options) =>
        options.Stores.Get<KubernetesSettings>().Kubeconfig is null ? null : "--kubeconfig";

    /// <summary>In a pod, or with <c>$KUBECONFIG</c> set: a shell's exported variable is weaker than another store's flag.</summary>
    public override bool IsAmbient(SidecarOptions options, Func<string, string?> environment) =>
        !string.IsNullOrEmpty(environment(KubeconfigVariable)) || KubernetesConnection.IsInCluster(environment);

    public override void Register(IServiceCollection services, SidecarOptions options, Func<string, string?> environment, TimeProvider time)
    {
        base.Register(services, options, environment, time);
        LeaseEvents.Register(services, options, time);
    }

    public override Func<IServiceProvider, ILeaseStore> Create(SidecarOptions options, Func<string, string?> environment, TimeProvider time)
    {
        var flag = options.Stores.Get<KubernetesSettings>().Kubeconfig;
        var variable = environment(KubeconfigVariable) is { Length: > 0 } set ? set : null;
        var (path, source) = flag is not null ? (flag, "--kubeconfig")
            : variable is not null ? (variable, "$" + KubeconfigVariable)
            : ((string?)null, "in-cluster configuration");
        ApiClient api;
        try
        {
            api = path is not null ? KubernetesConnection.FromKubeconfig(path) : KubernetesConnection.InCluster(environment, time);
        }
        catch (ArgumentException e)
        {
            throw new StartupException($"{e.Message} ({source})");
        }

        return services => new KubernetesLeaseStore(api, options.Namespace, options.LeaseName, options.Election.RequestTimeout, time, services.GetRequiredService<ILogger<KubernetesLeaseStore>>());
    }
}
