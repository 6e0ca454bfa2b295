namespace LeaderSidecar.Tests.Safety;

/// <summary>
/// A backend on one real server process (etcd, PostgreSQL, MariaDB, Redis) that each daemon
/// reaches through its own <see cref="TcpProxy"/>. The proxies make the network faults; the
/// server's own process makes the outages (stopped with SIGSTOP past the lease, or killed and
/// started again on its data). A hand edit that falls while the server is stopped or down is
/// skipped, and the timeline says so; the store-specific faults and hand edits are the subclass's.
/// </summary>
internal abstract class ServerSafetyBackend : ISafetyBackend
{
    private readonly Dictionary<SafetyCluster.Replica, TcpProxy> _proxies;
    private string? _unavailable;

    protected ServerSafetyBackend(string server, int port, IReadOnlyList<SafetyCluster.Replica> replicas)
    {
        Server = server;
        _proxies = replicas.ToDictionary(r => r, _ => new TcpProxy(port));
    }

    /// <summary>The network faults and outages every server backend injects.</summary>
    protected static FaultKind[] CommonFaults { get; } =
    [
        FaultKind.Latency, FaultKind.PartitionLeader, FaultKind.PartitionFollower, FaultKind.ResetConnections,
        FaultKind.PauseStore, FaultKind.RestartStore, FaultKind.DeleteLease, FaultKind.RewriteLease, FaultKind.GarbageLease,
    ];

    public abstract IReadOnlySet<FaultKind> Faults { get; }

    public virtual IReadOnlyList<string> Garbage => HandEdit.Garbage;

    /// <summary>The server's name in the timeline (<c>etcd</c>, <c>postgres</c>…).</summary>
    protected string Server { get; }

    public abstract IEnumerable<string> Arguments(SafetyCluster.Replica replica);

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
                AtSomeMoments(round, () =>
                {
                    round.Note("connections reset");
                    foreach (var proxy in _proxies.Values)
                    {
                        proxy.Reset();
                    }

                    return Task.CompletedTask;
                });
                break;

            case FaultKind.PauseStore:
                PauseServer();
                Unavailable(round, "paused", $"SIGSTOP {Server}", $"SIGCONT {Server}", () =>
                {
                    ResumeServer();
                    return Task.CompletedTask;
                });
                break;

            case FaultKind.RestartStore:
                await StopServerAsync();
                Unavailable(round, "down", $"SIGKILL {Server}", $"{Server} restarted on its data", RestartServerAsync);
                break;

            default:
                await InjectServerFaultAsync(kind, round);
                break;
        }
    }

    public abstract Task<string> DeleteLeaseAsync();

    public abstract Task<string> RewriteLeaseAsync(string holder, bool newTerm);

    public abstract Task<string> PutGarbageAsync(string garbage);

    public abstract Task<string> ClearGarbageAsync(string garbage);

    public async ValueTask DisposeAsync()
    {
        foreach (var proxy in _proxies.Values)
        {
            await proxy.DisposeAsync();
        }

        await DisposeServerAsync();
    }

    /// <summary>The loopback port of <paramref name="replica"/>'s proxy: where its daemon connects.</summary>
    protected int ProxyPort(SafetyCluster.Replica replica) => _proxies[replica].Port;

    /// <summary>The faults of this server beyond <see cref="CommonFaults"/>.</summary>
    protected virtual Task InjectServerFaultAsync(FaultKind kind, FaultRound round) =>
        throw new ArgumentOutOfRangeException(nameof(kind), kind, $"not a fault of the {Server} backend");

    /// <summary>
    /// Marks the server unreachable for hand edits (<paramref name="state"/>: paused, down…) until
    /// the heal, which runs <paramref name="heal"/> first.
    /// </summary>
    protected void Unavailable(FaultRound round, string state, string injected, string healed, Func<Task> heal)
    {
        _unavailable = state;
        round.Note(injected);
        round.Heals.Add(async () =>
        {
            await heal();
            _unavailable = null;
            round.Note(healed);
        });
    }

    /// <summary>Why the server cannot be reached now (paused, down…), or null.</summary>
    protected string? UnavailableState => _unavailable;

    /// <summary>A hand edit cannot reach a stopped or killed server: the note saying it was skipped, else null.</summary>
    protected string? Unavailable(string what) => _unavailable is { } state ? $"lease not {what}: {Server} is {state}" : null;

    /// <summary>Runs <paramref name="act"/> one to three times, each at a random moment of the round.</summary>
    protected static void AtSomeMoments(FaultRound round, Func<Task> act)
    {
        for (var i = 1 + round.Random.Next(3); i > 0; i--)
        {
            round.AtSomeMoment(act);
        }
    }

    protected abstract void PauseServer();

    protected abstract void ResumeServer();

    protected abstract Task StopServerAsync();

    protected abstract Task RestartServerAsync();

    protected abstract ValueTask DisposeServerAsync();
}
