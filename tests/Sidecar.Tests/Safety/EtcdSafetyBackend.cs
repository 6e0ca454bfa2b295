using LeaderSidecar.Tests.Stores.Etcd;

namespace LeaderSidecar.Tests.Safety;

/// <summary>
/// The etcd backend on a real single-member etcd. Each daemon reaches it through its own
/// <see cref="TcpProxy"/>, which makes the network faults; the store faults are etcd's own
/// process (stopped, or killed and restarted on its data) and hand edits with the real
/// <c>etcdctl</c>.
/// </summary>
internal sealed class EtcdSafetyBackend : ServerSafetyBackend
{
    private const string Key = $"/leader-sidecar/{SafetyCluster.Namespace}/{SafetyCluster.LeaseName}";
    private readonly EtcdServer _server;

    private EtcdSafetyBackend(EtcdServer server, IReadOnlyList<SafetyCluster.Replica> replicas)
        : base("etcd", server.Endpoint.Port, replicas)
    {
        _server = server;
    }

    public override IReadOnlySet<FaultKind> Faults { get; } = new HashSet<FaultKind>(CommonFaults);

    public static async Task<EtcdSafetyBackend> StartAsync(IReadOnlyList<SafetyCluster.Replica> replicas) =>
        new(await EtcdServer.StartAsync(), replicas);

    public override IEnumerable<string> Arguments(SafetyCluster.Replica replica) =>
        ["--backend", "etcd", "--etcd-endpoints", $"http://127.0.0.1:{ProxyPort(replica)}"];

    public override async Task<string> DeleteLeaseAsync() =>
        Unavailable("deleted")
        ?? ((await EtcdctlAsync("del", Key)).Trim() == "1" ? "lease deleted (etcdctl del)" : "lease deleted (it was not there)");

    public override async Task<string> RewriteLeaseAsync(string holder, bool newTerm)
    {
        if (Unavailable($"rewritten to {holder}") is { } skipped)
        {
            return skipped;
        }

        var value = (await EtcdctlAsync("get", Key, "--print-value-only")).TrimEnd('\n');
        if (value.Length == 0)
        {
            return $"lease not rewritten to {holder}: it does not exist";
        }

        if (HandEdit.Parse(value) is not { } spec)
        {
            return $"lease not rewritten to {holder}: it holds garbage";
        }

        HandEdit.Rewrite(spec, holder, newTerm);
        await EtcdctlAsync("put", Key, spec.ToJsonString());
        return HandEdit.Rewritten(holder, newTerm) + " (etcdctl put)";
    }

    public override async Task<string> PutGarbageAsync(string garbage)
    {
        if (Unavailable("overwritten with garbage") is { } skipped)
        {
            return skipped;
        }

        await EtcdctlAsync("put", Key, garbage);
        return $"lease overwritten with garbage '{garbage}' (etcdctl put)";
    }

    public override async Task<string> ClearGarbageAsync(string garbage)
    {
        if (Unavailable("cleared of garbage") is { } skipped)
        {
            return skipped;
        }

        if ((await EtcdctlAsync("get", Key, "--print-value-only")).TrimEnd('\n') != garbage)
        {
            return "garbage already gone";
        }

        await EtcdctlAsync("del", Key);
        return "garbage deleted (etcdctl del)";
    }

    protected override void PauseServer() => _server.Pause();

    protected override void ResumeServer() => _server.Resume();

    protected override Task StopServerAsync() => _server.StopAsync();

    protected override Task RestartServerAsync() => _server.RestartAsync();

    protected override ValueTask DisposeServerAsync() => _server.DisposeAsync();

    private Task<string> EtcdctlAsync(params string[] args) => _server.EtcdctlAsync(args);
}
