using System.Diagnostics;

namespace LeaderSidecar.Tests.Safety;

/// <summary>The faults the nemesis injects; which store and network faults a run uses depends on its <see cref="ISafetyBackend"/>.</summary>
internal enum FaultKind
{
    /// <summary>SIGSTOP the leader for longer than the lease, then SIGCONT (a long GC pause, a VM migration).</summary>
    PauseLeader,

    /// <summary>SIGKILL the leader; a new process of the same identity starts at the heal.</summary>
    KillLeader,

    /// <summary>SIGKILL a follower; restarted at the heal.</summary>
    KillFollower,

    /// <summary>SIGTERM the leader (graceful release); restarted at the heal.</summary>
    TerminateLeader,

    /// <summary>One replica's wall clock, or everyone's, jumps hours ahead or minutes back.</summary>
    WallClockJump,

    /// <summary>Every request to the store is slow: past the renew deadline (Kubernetes), or a random delay each way (the proxy).</summary>
    Latency,

    /// <summary>Every API request is answered 500, 503 or 504.</summary>
    ServerErrors,

    /// <summary>Every API request is answered 429 (as a Status or as priority-and-fairness plain text).</summary>
    Throttling,

    /// <summary>The leader's requests hang and its watch goes silent; the others are fine.</summary>
    PartitionLeader,

    /// <summary>One follower's requests hang and its watch goes silent.</summary>
    PartitionFollower,

    /// <summary>Every daemon's connections to the store are reset, once or a few times.</summary>
    ResetConnections,

    /// <summary>Every watch stream ends, cleanly or by a reset connection, once or a few times.</summary>
    DropWatches,

    /// <summary>The history is compacted and every watch gets ERROR 410 Gone.</summary>
    ExpireWatches,

    /// <summary>The store process is stopped (SIGSTOP) for longer than the lease, then continued.</summary>
    PauseStore,

    /// <summary>The store goes down (every connection cut, new ones refused) and comes back at the heal with its data.</summary>
    RestartStore,

    /// <summary>Someone deletes the lease.</summary>
    DeleteLease,

    /// <summary>Someone rewrites the lease to another holder: a stranger, or one of the followers.</summary>
    RewriteLease,

    /// <summary>Someone writes something that is not a lease record where the lease lives; cleared at the heal.</summary>
    GarbageLease,

    // Added after the first long runs: new kinds go last, so a seed still replays the same choices on the older backends.
    /// <summary>The server closes the daemons' connections itself (an administrator's kill), once or a few times.</summary>
    SeverConnections,

    /// <summary>The server blocks in one command (Redis <c>DEBUG SLEEP</c>) for longer than the lease.</summary>
    StoreSleep,

    /// <summary>The server holds every client's commands (Redis <c>CLIENT PAUSE</c>) for longer than the lease.</summary>
    PauseClients,

    /// <summary>The server forgets its loaded scripts (Redis <c>SCRIPT FLUSH</c>), once or a few times.</summary>
    ScriptFlush,

    /// <summary>Someone empties the whole store (Redis <c>FLUSHALL</c>): a deletion of the lease among everything else.</summary>
    FlushAll,
}

/// <summary>
/// One round as a backend sees it when it injects a fault: who leads, how long the faults hold,
/// and where the heals and the acts at a moment of the round go.
/// </summary>
internal sealed class FaultRound(Random random, Func<string, long> note, SafetyCluster.Replica victim, IReadOnlyList<SafetyCluster.Replica> followers, TimeSpan hold)
{
    /// <summary>The leader, or a random live replica when none leads.</summary>
    public SafetyCluster.Replica Victim => victim;

    public TimeSpan Hold => hold;

    public Random Random => random;

    /// <summary>Run at the end of the round, the last added first.</summary>
    public List<Func<Task>> Heals { get; } = [];

    /// <summary>Run once each, at their moment of the round, before the heals.</summary>
    public List<(TimeSpan At, Func<Task> Act)> Acts { get; } = [];

    /// <summary>A random follower, or the victim when nobody else runs.</summary>
    public SafetyCluster.Replica Follower() => followers.Count > 0 ? followers[random.Next(followers.Count)] : victim;

    public void Note(string what) => note(what);

    public TimeSpan Between(TimeSpan min, TimeSpan max) => min + ((max - min) * random.NextDouble());

    /// <summary>Runs <paramref name="act"/> at a random moment of the hold.</summary>
    public void AtSomeMoment(Func<Task> act) => Acts.Add((Between(TimeSpan.Zero, hold), act));

    /// <summary>Disposes <paramref name="fault"/> at the heal and notes <paramref name="what"/>.</summary>
    public void HealWith(string what, IDisposable fault) => Heals.Add(() =>
    {
        fault.Dispose();
        Note(what);
        return Task.CompletedTask;
    });
}

/// <summary>
/// Injects a seeded random schedule of faults into a <see cref="SafetyCluster"/>, round by round, and
/// heals them all at the end of each round. It chooses among the process faults, the wall-clock
/// jumps and the faults the cluster's backend supports. The same seed on the same backend gives
/// the same choices (not the same timings: the processes are real).
/// </summary>
internal sealed class Nemesis
{
    private static readonly FaultKind[] Everywhere = [FaultKind.PauseLeader, FaultKind.KillLeader, FaultKind.KillFollower, FaultKind.TerminateLeader, FaultKind.WallClockJump];
    private static readonly FaultKind[] ProcessFaults = [FaultKind.PauseLeader, FaultKind.KillLeader, FaultKind.KillFollower, FaultKind.TerminateLeader];
    private static readonly FaultKind[] Restarts = [FaultKind.KillLeader, FaultKind.KillFollower, FaultKind.TerminateLeader];
    private static readonly FaultKind[] StoreOutages = [FaultKind.PauseStore, FaultKind.RestartStore, FaultKind.StoreSleep, FaultKind.PauseClients];
    private static readonly FaultKind[] LongOutages = [FaultKind.PauseLeader, FaultKind.PauseStore, FaultKind.StoreSleep, FaultKind.PauseClients];
    private static readonly FaultKind[] Deletions = [FaultKind.DeleteLease, FaultKind.GarbageLease, FaultKind.FlushAll];
    private readonly SafetyCluster _cluster;
    private readonly Random _random;
    private readonly FaultKind[] _kinds;
    private readonly List<NemesisEvent> _events = [];
    private readonly List<HealWindow> _heals = [];

    public Nemesis(SafetyCluster cluster, int seed)
    {
        _cluster = cluster;
        _random = new Random(seed);
        _kinds = [.. Enum.GetValues<FaultKind>().Where(k => Everywhere.Contains(k) || cluster.Backend.Faults.Contains(k))];
        Injected = _kinds.ToDictionary(k => k, _ => 0);
    }

    public IReadOnlyList<NemesisEvent> Events => _events;

    public IReadOnlyList<HealWindow> Heals => _heals;

    /// <summary>How often each fault this backend supports was injected.</summary>
    public Dictionary<FaultKind, int> Injected { get; }

    /// <summary>
    /// One to three faults that make sense together: at most one of them acts on a process, at
    /// most one takes the store down, and a deletion (or garbage, cleared by deleting it, or a
    /// <c>FLUSHALL</c>) is not
    /// combined with a restart (a process that never saw the lease creates it at once, as
    /// client-go does; that is outside the safety model, see docs/SAFETY.md).
    /// </summary>
    public IReadOnlyList<FaultKind> Choose()
    {
        var count = 1 + _random.Next(3);
        var chosen = new List<FaultKind>();
        while (chosen.Count < count)
        {
            var kind = _kinds[_random.Next(_kinds.Length)];
            if (chosen.Contains(kind)
                || (ProcessFaults.Contains(kind) && chosen.Any(ProcessFaults.Contains))
                || (StoreOutages.Contains(kind) && chosen.Any(StoreOutages.Contains))
                || (Deletions.Contains(kind) && chosen.Any(Restarts.Contains))
                || (Restarts.Contains(kind) && chosen.Any(Deletions.Contains)))
            {
                continue;
            }

            chosen.Add(kind);
        }

        return chosen;
    }

    /// <summary>Injects <paramref name="kinds"/>, holds them a while, heals them all, and waits for a leader.</summary>
    public async Task RunRoundAsync(int round, IReadOnlyList<FaultKind> kinds)
    {
        // A process that died by itself is a bug the test reports; the run goes on with a new one.
        foreach (var crashed in _cluster.EndCrashed())
        {
            Note($"{crashed.Label} is gone: it exited by itself");
            await RestartAsync(crashed);
        }

        var leader = await _cluster.LeaderAsync();
        var hold = kinds.Any(LongOutages.Contains)
            ? SafetyCluster.LeaseDuration + Between(TimeSpan.FromMilliseconds(500), TimeSpan.FromMilliseconds(1500))
            : Between(TimeSpan.FromMilliseconds(300), SafetyCluster.LeaseDuration + TimeSpan.FromSeconds(1));
        Note($"round {round}: {string.Join(" + ", kinds)} for {hold.TotalMilliseconds:0} ms (leader {leader?.Label ?? "none"})");

        var started = Stopwatch.GetTimestamp();
        var live = _cluster.Replicas.Where(r => r.Process is not null).ToList();
        var victim = leader ?? live[_random.Next(live.Count)];
        var faults = new FaultRound(_random, Note, victim, [.. live.Where(r => r != leader)], hold);
        foreach (var kind in kinds)
        {
            Injected[kind]++;
            await InjectAsync(kind, faults, live);
        }

        foreach (var (at, act) in faults.Acts.OrderBy(m => m.At))
        {
            var wait = at - Stopwatch.GetElapsedTime(started);
            if (wait > TimeSpan.Zero)
            {
                await Task.Delay(wait);
            }

            await act();
        }

        // The faults last as long as the schedule says: a fixed hold by design.
        var left = hold - Stopwatch.GetElapsedTime(started);
        if (left > TimeSpan.Zero)
        {
            await Task.Delay(left);
        }

        foreach (var heal in Enumerable.Reverse(faults.Heals))
        {
            await heal();
        }

        var healedAt = Note($"round {round}: healed");
        await _cluster.WaitForLeaderAsync(TimeSpan.FromSeconds(30), $"a leader after round {round} healed");

        // A quiet window of fixed length is part of the schedule, not a wait for a condition: it
        // lets the new leader renew twice, so the checker sees whether it stayed.
        await Task.Delay(SafetyCluster.RetryPeriod * 2);
        _heals.Add(new HealWindow(round, healedAt, Stopwatch.GetTimestamp()));
    }

    private async Task InjectAsync(FaultKind kind, FaultRound round, List<SafetyCluster.Replica> live)
    {
        var victim = round.Victim;
        var backend = _cluster.Backend;
        switch (kind)
        {
            case FaultKind.PauseLeader:
                victim.Process!.Pause();
                victim.Paused = true;
                Note($"SIGSTOP {victim.Label}");
                round.Heals.Add(() =>
                {
                    victim.Process!.Resume();
                    victim.Paused = false;
                    Note($"SIGCONT {victim.Label}");
                    return Task.CompletedTask;
                });
                break;

            case FaultKind.KillLeader:
            case FaultKind.KillFollower:
                var killed = kind == FaultKind.KillFollower ? round.Follower() : victim;
                Note($"SIGKILL {killed.Label}");
                await _cluster.KillAsync(killed);
                round.Heals.Add(() => RestartAsync(killed));
                break;

            case FaultKind.TerminateLeader:
                Note($"SIGTERM {victim.Label}");
                await _cluster.TerminateAsync(victim);
                round.Heals.Add(() => RestartAsync(victim));
                break;

            case FaultKind.WallClockJump:
                var jump = _random.Next(2) == 0
                    ? TimeSpan.FromMinutes(_random.Next(1, 24 * 60))
                    : -TimeSpan.FromMinutes(_random.Next(1, 10));
                var jumped = _random.Next(2) == 0 ? [victim] : live;
                foreach (var replica in jumped)
                {
                    _cluster.SetWallClockOffset(replica, jump);
                }

                Note($"wall clock of {string.Join(", ", jumped.Select(r => r.Label))} {(jump > TimeSpan.Zero ? "+" : "")}{jump.TotalMinutes:0} min");
                round.Heals.Add(() =>
                {
                    foreach (var replica in jumped)
                    {
                        _cluster.SetWallClockOffset(replica, TimeSpan.Zero);
                    }

                    Note("wall clocks set right");
                    return Task.CompletedTask;
                });
                break;

            case FaultKind.DeleteLease:
                round.AtSomeMoment(async () => Note(await backend.DeleteLeaseAsync()));
                break;

            case FaultKind.RewriteLease:
                var to = _random.Next(2) == 0 ? "intruder" : round.Follower().Identity;
                var newTerm = _random.Next(2) == 1;
                round.AtSomeMoment(async () => Note(await backend.RewriteLeaseAsync(to, newTerm)));
                break;

            case FaultKind.GarbageLease:
                var garbage = backend.Garbage[_random.Next(backend.Garbage.Count)];
                round.AtSomeMoment(async () => Note(await backend.PutGarbageAsync(garbage)));
                round.Heals.Add(async () => Note(await backend.ClearGarbageAsync(garbage)));
                break;

            default:
                await backend.InjectAsync(kind, round);
                break;
        }
    }

    private async Task RestartAsync(SafetyCluster.Replica replica)
    {
        await _cluster.StartProcessAsync(replica);
        Note($"started {replica.Label}");
    }

    private long Note(string what)
    {
        var at = Stopwatch.GetTimestamp();
        lock (_events)
        {
            _events.Add(new NemesisEvent(at, what));
        }

        return at;
    }

    private TimeSpan Between(TimeSpan min, TimeSpan max) => min + ((max - min) * _random.NextDouble());
}
