namespace LeaderSidecar.Bench;

/// <summary>Whether a counted request reads, writes, or is traffic that is not a request (a ping, a connection).</summary>
internal enum RequestKind
{
    Read,
    Write,
    NotARequest,
}

/// <summary>
/// One column of the per-replica request table: a counter key, its heading, what it counts, and the
/// verb of the daemon's own <c>leader_sidecar_lease_requests_total</c> that counts the same requests
/// (null when none does), shown beside it as a cross-check.
/// </summary>
internal sealed record RequestColumn(string Key, string Header, RequestKind Kind, string? OwnVerb = null);

/// <summary>
/// Where the daemons under test keep their lease (<c>bench/run --backend</c>), and what the harness
/// can count there. Every scenario asks this for a daemon's flags and for request counts; none of
/// them knows which store it runs on.
/// </summary>
internal abstract class Backend : IAsyncDisposable
{
    /// <summary>The id of this backend's section in the report (the section between its markers).</summary>
    public abstract string Section { get; }

    /// <summary>The heading of that section.</summary>
    public abstract string Title { get; }

    /// <summary>The store's name in row labels: "idle RSS, leader, {Name} backend".</summary>
    public abstract string Name { get; }

    /// <summary>Where the leases live, for the report's header.</summary>
    public abstract string Description { get; }

    /// <summary>The Kubernetes Lease API the polling reference elector talks to; null when this store has none.</summary>
    public virtual LeaseApi? PollingApi => null;

    /// <summary>
    /// The section and store name whose figures the report puts beside this section's, in place of
    /// the polling reference (a section written by another run); null when the polling reference runs here.
    /// </summary>
    public virtual (string Section, string Name)? CompareWith => null;

    /// <summary>
    /// Reads per minute every replica, leader or follower, sends by design (a store without a
    /// change feed polls: MySQL); 0 when followers watch.
    /// </summary>
    public virtual double PollsPerMinute => 0;

    /// <summary>The columns of the request table, in order.</summary>
    public abstract IReadOnlyList<RequestColumn> RequestColumns { get; }

    /// <summary>Where the per-replica counts of <see cref="ServerCountsAsync"/> come from, for the report.</summary>
    public abstract string CountSource { get; }

    /// <summary>A lease name no earlier run used.</summary>
    public abstract string NewLease(string scenario);

    /// <summary>
    /// The flags that put a daemon on <paramref name="lease"/> as <paramref name="identity"/>. With
    /// <paramref name="counted"/> its requests must show in <see cref="ServerCountsAsync"/>.
    /// </summary>
    public abstract string[] DaemonArgs(string lease, string identity, bool counted);

    /// <summary>
    /// What the store's side saw from one counted replica so far, by <see cref="RequestColumn.Key"/>;
    /// null when it cannot tell replicas apart (a real cluster).
    /// </summary>
    public abstract Task<Dictionary<string, long>?> ServerCountsAsync(string lease, string identity);

    /// <summary>
    /// Makes what a counted replica needs on the server before it starts (its own user, where the
    /// server counts per user); nothing by default.
    /// </summary>
    public virtual Task PrepareCountedAsync(string identity) => Task.CompletedTask;

    /// <summary>The whole server's own request counters by method, for a cross-check; null when it has none to offer.</summary>
    public virtual Task<Dictionary<string, long>?> ServerTotalsAsync() => Task.FromResult<Dictionary<string, long>?>(null);

    public abstract ValueTask DisposeAsync();
}

/// <summary>
/// The Kubernetes backend: the Lease API test server in the harness process (the default), or a
/// real cluster. Each daemon gets its own kubeconfig (and, on the test server, its own token, by
/// which the server counts its requests). The polling reference runs beside it.
/// </summary>
internal sealed class KubernetesBackend(LeaseApi api) : Backend
{
    private static readonly RequestColumn[] Columns =
    [
        new("get", "get", RequestKind.Read, "get"),
        new("list", "list", RequestKind.Read, "list"),
        new("watch", "watch", RequestKind.Read, "watch"),
        new("create", "create", RequestKind.Write, "create"),
        new("update", "update", RequestKind.Write, "update"),
    ];

    public override string Section => api.CountsOnServer ? "kubernetes" : "kubernetes-cluster";

    public override string Title => api.CountsOnServer
        ? "Kubernetes backend, on the Lease API test server"
        : "Kubernetes backend, on a real cluster";

    public override string Name => "Kubernetes";

    public override string Description => api.Description;

    public override LeaseApi PollingApi => api;

    public override IReadOnlyList<RequestColumn> RequestColumns => Columns;

    public override string CountSource => "the test server's per-token counters (a watch counts once, when it opens)";

    public override string NewLease(string scenario) => api.NewLease(scenario);

    public override string[] DaemonArgs(string lease, string identity, bool counted) =>
        ["--backend", "kubernetes", "--kubeconfig", api.Candidate(lease, identity).Kubeconfig, "--namespace", api.Namespace, "--lease-name", lease];

    public override Task<Dictionary<string, long>?> ServerCountsAsync(string lease, string identity) =>
        Task.FromResult(api.CountsOnServer ? api.ServerCounts(api.Candidate(lease, identity)) : null);

    public override ValueTask DisposeAsync() => api.DisposeAsync();
}
