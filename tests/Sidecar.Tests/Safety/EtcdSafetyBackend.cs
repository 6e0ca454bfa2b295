using LeaderSidecar.Tests.Stores.Etcd;

namespace LeaderSidecar.Tests.Safety;

/// <summary>
/// The etcd backend on a real single-member etcd. Each daemon reaches it through its own
/// <see cref="TcpProxy"/>, which makes the network faults; the store faults are etcd's own
/// process (stopped, or killed and restarted on its data) and hand edits with the real
/// <c>etcdctl</c>.
/// </summary>
internal sealed class EtcdSafetyBackend : ISafetyBackend
{
    private const string Key = $"/leader-sidecar/{SafetyCluster.Namespace}/{SafetyCluster.LeaseName}";
    private readonly EtcdServer _server;
    private readonly Dictionary<SafetyCluster.Replica, TcpProxy> _proxies;
    private string? _unavailable;

    private EtcdSafetyBackend(EtcdServer server, IReadOnlyList<SafetyCluster.Replica> replicas)
    {
        _server = server;
        _proxies = replicas.ToDictionary(r => r, _ => new TcpProxy(server.Endpoint.Port));
    }

    public IReadOnlySet<FaultKind> Faults { get; } = new HashSet<FaultKind>
    {
        FaultKind.Latency, FaultKind.PartitionLeader, FaultKind.PartitionFollower, FaultKind.ResetConnections,
        FaultKind.PauseStore, FaultKind.RestartStore, FaultKind.DeleteLease, FaultKind.RewriteLease, FaultKind.GarbageLease,
    };

    public static async Task<EtcdSafetyBackend> StartAsync(IReadOnlyList<SafetyCluster.Replica> replicas) =>
        new(await EtcdServer.StartAsync(), replicas);

    public IEnumerable<string> Arguments(SafetyCluster.Replica replica) =>
        ["--backend", "etcd", "--etcd-endpoints", $"http://127.0.0.1:{_proxies[replica].Port}"];

    public async Task InjectAsync(FaultKind kind, FaultRound round)
    {
        switch (kind)
        {
            case FaultKind.Latency:
                // From slow but working to past the request timeout (half the renew deadline) each way.
                var oneWay = round.Between(TimeSpan.FromMilliseconds(50), TimeSpan.FromMilliseconds(1500));
                round.Note($"network latency {oneWay.TotalMilliseconds:0} ms each way");
                var delays = _proxies.Values.Select(p => p.Delay(oneWay)).ToList();
                round.Heals.Add(() =>
                {
                    delays.ForEach(d => d.Dispose());
                    round.Note("latency removed");
                    return Task.CompletedTask;
                });
                break;

            case FaultKind.PartitionLeader:
            case FaultKind.PartitionFollower:
                var cut = kind == FaultKind.PartitionFollower ? round.Follower() : round.Victim;
                round.Note($"partition {cut.Label} (black hole)");
                round.HealWith($"partition of {cut.Label} healed", _proxies[cut].BlackHole());
                break;

            case FaultKind.ResetConnections:
                for (var i = 1 + round.Random.Next(3); i > 0; i--)
                {
                    round.AtSomeMoment(() =>
                    {
                        round.Note("connections reset");
                        foreach (var proxy in _proxies.Values)
                        {
                            proxy.Reset();
                        }

                        return Task.CompletedTask;
                    });
                }

                break;

            case FaultKind.PauseStore:
                _server.Pause();
                _unavailable = "paused";
                round.Note("SIGSTOP etcd");
                round.Heals.Add(() =>
                {
                    _server.Resume();
                    _unavailable = null;
                    round.Note("SIGCONT etcd");
                    return Task.CompletedTask;
                });
                break;

            case FaultKind.RestartStore:
                await _server.StopAsync();
                _unavailable = "down";
                round.Note("SIGKILL etcd");
                round.Heals.Add(async () =>
                {
                    await _server.RestartAsync();
                    _unavailable = null;
                    round.Note("etcd restarted on its data");
                });
                break;

            default:
                throw new ArgumentOutOfRangeException(nameof(kind), kind, "not a fault of the etcd backend");
        }
    }

    public async Task<string> DeleteLeaseAsync() =>
        Unavailable("deleted")
        ?? ((await EtcdctlAsync("del", Key)).Trim() == "1" ? "lease deleted (etcdctl del)" : "lease deleted (it was not there)");

    public async Task<string> RewriteLeaseAsync(string holder, bool newTerm)
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

    public async Task<string> PutGarbageAsync(string garbage)
    {
        if (Unavailable("overwritten with garbage") is { } skipped)
        {
            return skipped;
        }

        await EtcdctlAsync("put", Key, garbage);
        return $"lease overwritten with garbage '{garbage}' (etcdctl put)";
    }

    public async Task<string> ClearGarbageAsync(string garbage)
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

    public async ValueTask DisposeAsync()
    {
        foreach (var proxy in _proxies.Values)
        {
            await proxy.DisposeAsync();
        }

        await _server.DisposeAsync();
    }

    /// <summary>A hand edit cannot reach a stopped or killed etcd; the timeline says it was skipped.</summary>
    private string? Unavailable(string what) => _unavailable is { } state ? $"lease not {what}: etcd is {state}" : null;

    private Task<string> EtcdctlAsync(params string[] args) => _server.EtcdctlAsync(args);
}
