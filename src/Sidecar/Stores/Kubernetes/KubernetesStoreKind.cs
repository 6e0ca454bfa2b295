using LeaderSidecar.Configuration;
using LeaderSidecar.Election;
using LeaderSidecar.Hosting;

namespace LeaderSidecar.Stores.Kubernetes;

/// <summary>The Kubernetes store's settings (<c>--kubeconfig</c>, <c>--leader-service</c>).</summary>
internal sealed record KubernetesSettings
{
    public string? Kubeconfig { get; init; }

    /// <summary>The Service whose EndpointSlice <c>NAME-leader</c> lists the leader (<see cref="LeaderEndpointSlice"/>).</summary>
    public string? LeaderService { get; init; }
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
        new("leader-service", "NAME", "Keep the EndpointSlice NAME-leader listing only the leader's pod IP ($POD_IP), so the selector-less Service NAME reaches only the leader (kubernetes backend).", null,
            (s, v) => LeaderEndpointSlice.ServiceNameProblem(v) ?? s.Set<KubernetesSettings>(k => k with { LeaderService = v })),
        LeaseEvents.Flag,
    ];

    public override string? ChosenBy(SidecarOptions options) =>
        options.Stores.Get<KubernetesSettings>().Kubeconfig is null ? null : "--kubeconfig";

    /// <summary>In a pod, or with <c>$KUBECONFIG</c> set: a shell's exported variable is weaker than another store's flag.</summary>
    public override bool IsAmbient(SidecarOptions options, Func<string, string?> environment) =>
        !string.IsNullOrEmpty(environment(KubeconfigVariable)) || KubernetesConnection.IsInCluster(environment);

    public override string? OnlyWith(SidecarOptions options) =>
        options.Stores.Get<KubernetesSettings>().LeaderService is null ? null : "--leader-service";

    public override Func<IServiceProvider, ILeaseStore> Create(SidecarOptions options, Func<string, string?> environment, TimeProvider time) =>
        StoreOn(Connect(options, environment, time), options, time);

    /// <summary>The store, and beside it the writers that share its connection.</summary>
    public override void Register(IServiceCollection services, SidecarOptions options, Func<string, string?> environment, TimeProvider time)
    {
        var api = Connect(options, environment, time);
        services.AddSingleton(StoreOn(api, options, time));
        if (options.Stores.Get<KubernetesSettings>().LeaderService is { } service)
        {
            LeaderEndpointSlice.Register(services, api, options, service, environment, time);
        }

        LeaseEvents.Register(services, api, options, time);
    }

    private static Func<IServiceProvider, ILeaseStore> StoreOn(ApiClient api, SidecarOptions options, TimeProvider time) =>
        services => new KubernetesLeaseStore(api, options.Namespace, options.LeaseName, options.Election.RequestTimeout, time, services.GetRequiredService<ILogger<KubernetesLeaseStore>>());

    private static ApiClient Connect(SidecarOptions options, Func<string, string?> environment, TimeProvider time)
    {
        var flag = options.Stores.Get<KubernetesSettings>().Kubeconfig;
        var variable = environment(KubeconfigVariable) is { Length: > 0 } set ? set : null;
        var (path, source) = flag is not null ? (flag, "--kubeconfig")
            : variable is not null ? (variable, "$" + KubeconfigVariable)
            : ((string?)null, "in-cluster configuration");
        try
        {
            return path is not null ? KubernetesConnection.FromKubeconfig(path) : KubernetesConnection.InCluster(environment, time);
        }
        catch (ArgumentException e)
        {
            throw new StartupException($"{e.Message} ({source})");
        }
    }
}
