using System.Diagnostics;
using LeaderSidecar.Testing.LeaseApi.Faults;

namespace LeaderSidecar.Tests.Safety;

/// <summary>The faults the nemesis injects.</summary>
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

    /// <summary>Every API request is delayed longer than the renew deadline.</summary>
    ApiLatency,

    /// <summary>Every API request is answered 500, 503 or 504.</summary>
    ServerErrors,

    /// <summary>Every API request is answered 429 (as a Status or as priority-and-fairness plain text).</summary>
    Throttling,

    /// <summary>The leader's requests hang and its watch goes silent; the others are fine.</summary>
    PartitionLeader,

    /// <summary>One follower's requests hang and its watch goes silent.</summary>
    PartitionFollower,

    /// <summary>Every watch stream ends, cleanly or by a reset connection, once or a few times.</summary>
    DropWatches,

    /// <summary>The history is compacted and every watch gets ERROR 410 Gone.</summary>
    ExpireWatches,

    /// <summary>The API server restarts: every connection cut, the watch history lost, new connections refused until the heal.</summary>
    RestartApiServer,

    /// <summary>Someone deletes the Lease.</summary>
    DeleteLease,

    /// <summary>Someone rewrites the Lease to another holder: a stranger, or one of the followers.</summary>
    RewriteLease,

    /// <summary>One replica's wall clock, or everyone's, jumps hours ahead or minutes back.</summary>
    WallClockJump,
}

/// <summary>
/// Injects a seeded random schedule of faults into a <see cref="SafetyCluster"/>, round by round, and
/// heals them all at the end of each round. The same seed gives the same choices (not the same
/// timings: the processes are real).
/// </summary>
internal sealed class Nemesis(SafetyCluster cluster, int seed)
{
    private static readonly FaultKind[] ProcessFaults = [FaultKind.PauseLeader, FaultKind.KillLeader, FaultKind.KillFollower, FaultKind.TerminateLeader];
    private readonly Random _random = new(seed);
    private readonly List<NemesisEvent> _events = [];
    private readonly List<HealWindow> _heals = [];

    public IReadOnlyList<NemesisEvent> Events => _events;

    public IReadOnlyList<HealWindow> Heals => _heals;

    public Dictionary<FaultKind, int> Injected { get; } = Enum.GetValues<FaultKind>().ToDictionary(k => k, _ => 0);

    /// <summary>
    /// One to three faults that make sense together: at most one of them acts on a process, and a
    /// deletion is not combined with a restart (a process that never saw the Lease creates it at once,
    /// as client-go does; that is outside the safety model, see docs/SAFETY.md).
    /// </summary>
    public IReadOnlyList<FaultKind> Choose()
    {
        var all = Enum.GetValues<FaultKind>();
        var count = 1 + _random.Next(3);
        var chosen = new List<FaultKind>();
        while (chosen.Count < count)
        {
            var kind = all[_random.Next(all.Length)];
            var restarts = kind is FaultKind.KillLeader or FaultKind.KillFollower or FaultKind.TerminateLeader;
            if (chosen.Contains(kind)
                || (ProcessFaults.Contains(kind) && chosen.Any(ProcessFaults.Contains))
                || (kind == FaultKind.DeleteLease && chosen.Any(k => k is FaultKind.KillLeader or FaultKind.KillFollower or FaultKind.TerminateLeader))
                || (restarts && chosen.Contains(FaultKind.DeleteLease)))
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
        var leader = await cluster.LeaderAsync();
        var hold = kinds.Contains(FaultKind.PauseLeader)
            ? SafetyCluster.LeaseDuration + Between(TimeSpan.FromMilliseconds(500), TimeSpan.FromMilliseconds(1500))
            : Between(TimeSpan.FromMilliseconds(300), SafetyCluster.LeaseDuration + TimeSpan.FromSeconds(1));
        Note($"round {round}: {string.Join(" + ", kinds)} for {hold.TotalMilliseconds:0} ms (leader {leader?.Label ?? "none"})");

        var started = Stopwatch.GetTimestamp();
        var heals = new List<Func<Task>>();
        var momentary = new List<Momentary>();
        foreach (var kind in kinds)
        {
            Injected[kind]++;
            await InjectAsync(kind, leader, hold, heals, momentary);
        }

        foreach (var (at, act) in momentary.OrderBy(m => m.At))
        {
            var wait = at - Stopwatch.GetElapsedTime(started);
            if (wait > TimeSpan.Zero)
            {
                await Task.Delay(wait);
            }

            act();
        }

        // The faults last as long as the schedule says: a fixed hold by design.
        var left = hold - Stopwatch.GetElapsedTime(started);
        if (left > TimeSpan.Zero)
        {
            await Task.Delay(left);
        }

        foreach (var heal in Enumerable.Reverse(heals))
        {
            await heal();
        }

        var healedAt = Note($"round {round}: healed");
        await cluster.WaitForLeaderAsync(TimeSpan.FromSeconds(30), $"a leader after round {round} healed");

        // A quiet window of fixed length is part of the schedule, not a wait for a condition: it
        // lets the new leader renew twice, so the checker sees whether it stayed.
        await Task.Delay(SafetyCluster.RetryPeriod * 2);
        _heals.Add(new HealWindow(round, healedAt, Stopwatch.GetTimestamp()));
    }

    private async Task InjectAsync(FaultKind kind, SafetyCluster.Replica? leader, TimeSpan hold, List<Func<Task>> heals, List<Momentary> momentary)
    {
        var live = cluster.Replicas.Where(r => r.Process is not null).ToList();
        var victim = leader ?? live[_random.Next(live.Count)];
        var followers = live.Where(r => r != leader).ToList();
        var server = cluster.Server;
        switch (kind)
        {
            case FaultKind.PauseLeader:
                victim.Process!.Pause();
                victim.Paused = true;
                Note($"SIGSTOP {victim.Label}");
                heals.Add(() =>
                {
                    victim.Process!.Resume();
                    victim.Paused = false;
                    Note($"SIGCONT {victim.Label}");
                    return Task.CompletedTask;
                });
                break;

            case FaultKind.KillLeader:
            case FaultKind.KillFollower:
                var killed = kind == FaultKind.KillFollower && followers.Count > 0 ? followers[_random.Next(followers.Count)] : victim;
                Note($"SIGKILL {killed.Label}");
                await cluster.KillAsync(killed);
                heals.Add(() => RestartAsync(killed));
                break;

            case FaultKind.TerminateLeader:
                Note($"SIGTERM {victim.Label}");
                await cluster.TerminateAsync(victim);
                heals.Add(() => RestartAsync(victim));
                break;

            case FaultKind.ApiLatency:
                var delay = SafetyCluster.RenewDeadline + Between(TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(1));
                Note($"API latency {delay.TotalMilliseconds:0} ms");
                heals.Add(Healing("latency removed", server.Faults.AddLatency(delay)));
                break;

            case FaultKind.ServerErrors:
                var error = _random.Next(3) switch
                {
                    0 => FaultResponse.InternalError(),
                    1 => FaultResponse.ServiceUnavailable(),
                    _ => FaultResponse.Timeout(),
                };
                Note($"API answers {error.Code}");
                heals.Add(Healing("errors stopped", server.Faults.FailAll(error)));
                break;

            case FaultKind.Throttling:
                var throttle = _random.Next(2) == 0 ? FaultResponse.TooManyRequests() : FaultResponse.TooManyRequestsPlainText();
                Note("API answers 429");
                heals.Add(Healing("throttling stopped", server.Faults.FailAll(throttle)));
                break;

            case FaultKind.PartitionLeader:
            case FaultKind.PartitionFollower:
                var cut = kind == FaultKind.PartitionFollower && followers.Count > 0 ? followers[_random.Next(followers.Count)] : victim;
                Note($"partition {cut.Label}");
                heals.Add(Healing($"partition of {cut.Label} healed", server.Faults.Hang(new RequestFilter(Token: cut.Token))));
                break;

            case FaultKind.DropWatches:
                for (var i = 1 + _random.Next(3); i > 0; i--)
                {
                    var abort = _random.Next(2) == 0;
                    momentary.Add(new Momentary(Between(TimeSpan.Zero, hold), () =>
                    {
                        Note(abort ? "watches reset" : "watches ended");
                        server.DropWatches(abort);
                    }));
                }

                break;

            case FaultKind.ExpireWatches:
                momentary.Add(new Momentary(Between(TimeSpan.Zero, hold), () =>
                {
                    Note("watches expired (410)");
                    server.ExpireWatches();
                }));
                break;

            case FaultKind.RestartApiServer:
                Note("API server down");
                server.Faults.RefuseConnections = true;
                server.Restart();
                heals.Add(() =>
                {
                    server.Faults.RefuseConnections = false;
                    Note("API server up");
                    return Task.CompletedTask;
                });
                break;

            case FaultKind.DeleteLease:
                momentary.Add(new Momentary(Between(TimeSpan.Zero, hold), () =>
                {
                    Note(server.Store.Delete(SafetyCluster.Namespace, SafetyCluster.LeaseName) ? "lease deleted" : "lease deleted (it was not there)");
                }));
                break;

            case FaultKind.RewriteLease:
                var to = _random.Next(2) == 0 || followers.Count == 0 ? "intruder" : followers[_random.Next(followers.Count)].Identity;
                var bump = _random.Next(2);
                momentary.Add(new Momentary(Between(TimeSpan.Zero, hold), () =>
                {
                    if (server.Store.Get(SafetyCluster.Namespace, SafetyCluster.LeaseName) is null)
                    {
                        Note($"lease not rewritten to {to}: it does not exist");
                        return;
                    }

                    var now = DateTimeOffset.UtcNow;
                    now = new DateTimeOffset(now.UtcTicks - (now.UtcTicks % 10), TimeSpan.Zero);
                    server.Store.Update(SafetyCluster.Namespace, SafetyCluster.LeaseName, spec => spec with
                    {
                        HolderIdentity = to,
                        LeaseDurationSeconds = (int)SafetyCluster.LeaseDuration.TotalSeconds,
                        AcquireTime = now,
                        RenewTime = now,
                        LeaseTransitions = (spec.LeaseTransitions ?? 0) + bump,
                    });
                    Note($"lease rewritten to {to}{(bump == 1 ? ", transitions + 1" : "")}");
                }));
                break;

            case FaultKind.WallClockJump:
                var jump = _random.Next(2) == 0
                    ? TimeSpan.FromMinutes(_random.Next(1, 24 * 60))
                    : -TimeSpan.FromMinutes(_random.Next(1, 10));
                var jumped = _random.Next(2) == 0 ? [victim] : live;
                foreach (var replica in jumped)
                {
                    cluster.SetWallClockOffset(replica, jump);
                }

                Note($"wall clock of {string.Join(", ", jumped.Select(r => r.Label))} {(jump > TimeSpan.Zero ? "+" : "")}{jump.TotalMinutes:0} min");
                heals.Add(() =>
                {
                    foreach (var replica in jumped)
                    {
                        cluster.SetWallClockOffset(replica, TimeSpan.Zero);
                    }

                    Note("wall clocks set right");
                    return Task.CompletedTask;
                });
                break;

            default:
                throw new ArgumentOutOfRangeException(nameof(kind), kind, null);
        }
    }

    private async Task RestartAsync(SafetyCluster.Replica replica)
    {
        await cluster.StartProcessAsync(replica);
        Note($"started {replica.Label}");
    }

    private Func<Task> Healing(string what, IDisposable fault) => () =>
    {
        fault.Dispose();
        Note(what);
        return Task.CompletedTask;
    };

    private long Note(string what)
    {
        var at = Stopwatch.GetTimestamp();
        lock (_events)
        {
            _events.Add(new NemesisEvent(at, what));
        }

        return at;
    }

    /// <summary>A fault that happens in an instant, at a moment of the round.</summary>
    private sealed record Momentary(TimeSpan At, Action Act);

    private TimeSpan Between(TimeSpan min, TimeSpan max) => min + ((max - min) * _random.NextDouble());
}
