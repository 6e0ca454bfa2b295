using System.Globalization;
using LeaderSidecar.Election;
using LeaderSidecar.Surfaces.Exec;
using LeaderSidecar.Surfaces.Grpc;
using LeaderSidecar.Surfaces.Metrics;
using LeaderSidecar.Tests.EndToEnd;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace LeaderSidecar.Tests.Surfaces.Exec;

/// <summary>
/// <see cref="LeaderCommand"/> over a <see cref="LeadershipState"/> the test publishes to, running
/// real shell commands through the built sidecar binary's re-exec.
/// </summary>
public sealed class LeaderCommandTests : IAsyncLifetime
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);
    private static readonly ElectionOptions Election = new() { Identity = "me", LeaseName = "app" };
    private readonly TempDirectory _dir = new();
    private readonly CancellationTokenSource _shuttingDown = new();
    private readonly List<int> _exits = [];
    private readonly List<TimeSpan> _resigns = [];
    private TimeProvider _time = TimeProvider.System;
    private LeadershipState _state = null!;
    private SidecarMetrics _metrics = null!;
    private LeaderCommand? _command;

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        if (_command is not null)
        {
            // A command stopped on a fake clock gets SIGKILL only once that clock passes the grace.
            var stopped = _command.StopAsync(CancellationToken.None);
            await Poll.UntilAsync(
                () =>
                {
                    (_time as TimerWatch)?.Inner.Advance(TimeSpan.FromSeconds(1));
                    return Task.FromResult(stopped.IsCompleted);
                },
                Deadline,
                "the command to stop");
            _command.Dispose();
        }

        _state?.Dispose();
        _shuttingDown.Dispose();
        _dir.Dispose();
    }

    [Fact]
    public async Task The_command_runs_only_while_leading_with_the_claims_variables_and_without_the_sidecars_settings()
    {
        // As a store password would be: the sidecar's own settings are not the command's business.
        Environment.SetEnvironmentVariable("LEADER_SIDECAR_TEST_SECRET", "hunter2");
        try
        {
            Start($"grep -E '^Sig(Ign|Blk)' /proc/$$/status > {_dir.File("signals")}; echo \"$LEADER_SIDECAR_TERM $LEADER_SIDECAR_LEASE_UID $LEADER_SIDECAR_IDENTITY ${{LEADER_SIDECAR_TEST_SECRET:-unset}}\" > {_dir.File("env")}; exec sleep 1000");
            Publish(Role.Follower, term: 6);
            await _command!.WaitStoppedAsync(CancellationToken.None);
            Assert.False(File.Exists(_dir.File("env")));

            Publish(Role.Leader, term: 7);

            await Poll.UntilAsync(() => Task.FromResult(File.Exists(_dir.File("env")) && File.ReadAllText(_dir.File("env")).EndsWith('\n')), Deadline, "the command started");
            Assert.Equal("7 uid-1 me unset\n", File.ReadAllText(_dir.File("env")));

            // No signal ignored or blocked, as from a shell (the runtime ignores SIGPIPE, for one).
            Assert.Equal(["SigBlk:\t0000000000000000", "SigIgn:\t0000000000000000"], File.ReadAllLines(_dir.File("signals")));
        }
        finally
        {
            Environment.SetEnvironmentVariable("LEADER_SIDECAR_TEST_SECRET", null);
        }
    }

    [Fact]
    public async Task When_leadership_ends_the_whole_process_group_is_stopped_and_the_release_waits_for_it()
    {
        // A child in the background that notes the stop signal, and a trap that exits only once the test says so.
        // Each writes its pid once its trap is set.
        Start($"trap 'echo stopping > {_dir.File("stopping")}; while [ ! -e {_dir.File("go")} ]; do sleep 0.05; done; exit 0' TERM; sh -c \"trap 'echo term > {_dir.File("child-stopped")}; exit 0' TERM; echo \\$\\$ > {_dir.File("child")}; while :; do sleep 0.05; done\" & echo $$ > {_dir.File("pid")}; wait");
        Publish(Role.Leader);
        var pid = await ReadPidAsync("pid");
        var child = await ReadPidAsync("child");
        Assert.Equal(pid, SessionOf(pid));
        Assert.Equal(pid, SessionOf(child));

        Publish(Role.Unknown);
        await Poll.UntilAsync(() => Task.FromResult(File.Exists(_dir.File("stopping"))), Deadline, "the stop signal");
        var stopped = _command!.WaitStoppedAsync(CancellationToken.None);
        Assert.False(stopped.IsCompleted);
        Assert.False(Gone(pid));

        File.WriteAllText(_dir.File("go"), "");
        await stopped.WaitAsync(Deadline);
        Assert.True(Gone(pid));
        await Poll.UntilAsync(() => Task.FromResult(Gone(child)), Deadline, "the child to go with its group");
        Assert.True(File.Exists(_dir.File("child-stopped")), "the child did not get the stop signal");
        Assert.Contains("leader_sidecar_exec_exits_total{name=\"app\",reason=\"stopped\"} 1", await ScrapeAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_command_that_ignores_the_stop_signal_is_killed_after_the_grace()
    {
        Start($"trap '' TERM; echo $$ > {_dir.File("pid")}; while :; do sleep 0.05; done", grace: TimeSpan.FromMilliseconds(200));
        Publish(Role.Leader);
        var pid = await ReadPidAsync("pid");

        Publish(Role.Follower);
        await _command!.WaitStoppedAsync(CancellationToken.None).WaitAsync(Deadline);

        Assert.True(Gone(pid));
        Assert.Contains("leader_sidecar_exec_exits_total{name=\"app\",reason=\"killed\"} 1", await ScrapeAsync(), StringComparison.Ordinal);
        Assert.Empty(_exits);
    }

    [Fact]
    public async Task A_kill_after_the_grace_during_shutdown_sets_exit_code_3()
    {
        Start($"trap '' TERM; echo $$ > {_dir.File("pid")}; while :; do sleep 0.05; done", grace: TimeSpan.FromMilliseconds(200));
        Publish(Role.Leader);
        await ReadPidAsync("pid");

        await _shuttingDown.CancelAsync();
        Publish(Role.Follower);
        await _command!.WaitStoppedAsync(CancellationToken.None).WaitAsync(Deadline);

        Assert.Equal([LeaderCommand.KilledAtShutdown], _exits);
    }

    [Fact]
    public async Task A_claim_regained_after_a_gap_is_a_new_claim_and_runs_a_new_command()
    {
        Start($"echo $$ >> {_dir.File("runs")}; exec sleep 1000");
        Publish(Role.Leader);
        await Poll.UntilAsync(() => Task.FromResult(Runs() == 1), Deadline, "the first run");

        // The claim ran out (no renew in time) and the next renew succeeded under the same term.
        Publish(Role.Unknown);
        Publish(Role.Leader);

        await Poll.UntilAsync(() => Task.FromResult(Runs() == 2), Deadline, "a second run");
        Assert.True(Gone(int.Parse(File.ReadAllLines(_dir.File("runs"))[0], CultureInfo.InvariantCulture)));
    }

    [Fact]
    public async Task On_exit_exit_ends_the_sidecar_with_the_commands_code()
    {
        // It leaves a child behind in its process group, which goes with it.
        Start($"sleep 1000 & echo $! > {_dir.File("child")}; exit 7");
        Publish(Role.Leader);

        await Poll.UntilAsync(() => Task.FromResult(_exits.Count > 0), Deadline, "the exit");
        Assert.Equal([7], _exits);
        var child = await ReadPidAsync("child");
        await Poll.UntilAsync(() => Task.FromResult(Gone(child)), Deadline, "the child left behind to be killed");
        Assert.Contains("leader_sidecar_exec_exits_total{name=\"app\",reason=\"failed\"} 1", await ScrapeAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task On_exit_resign_resigns_with_the_hold_off_and_runs_again_only_when_leading_again()
    {
        Start($"echo run >> {_dir.File("runs")}; exit 0", onExit: ExecOnExit.Resign);
        Publish(Role.Leader);

        await Poll.UntilAsync(() => Task.FromResult(_resigns.Count == 1), Deadline, "the resign");
        Assert.Equal([TimeSpan.FromSeconds(15)], _resigns);
        Assert.Empty(_exits);
        await _command!.WaitStoppedAsync(CancellationToken.None);
        Assert.Equal(1, Runs());

        Publish(Role.Leader, term: 2);
        await Poll.UntilAsync(() => Task.FromResult(_resigns.Count == 2), Deadline, "the second run's resign");
        Assert.Equal(2, Runs());
    }

    [Fact]
    public async Task On_exit_restart_runs_it_again_under_the_same_claim_with_a_growing_backoff()
    {
        var time = new TimerWatch(new FakeTimeProvider());
        _time = time;
        Start($"echo $LEADER_SIDECAR_TERM >> {_dir.File("runs")}; n=$(wc -l < {_dir.File("runs")}); [ $n -ge 3 ] && exec sleep 1000; exit 1", onExit: ExecOnExit.Restart);
        Publish(Role.Leader, term: 4);

        // Each quick exit asks the clock for a delay, twice as long as the one before, and nothing
        // runs again until that delay has passed on the sidecar's clock.
        await time.UntilTimerAsync(LeaderCommand.RestartBackoffInitial);
        Assert.Equal(1, Runs());
        time.Inner.Advance(LeaderCommand.RestartBackoffInitial);
        await Poll.UntilAsync(() => Task.FromResult(Runs() == 2), Deadline, "the first restart");

        await time.UntilTimerAsync(LeaderCommand.RestartBackoffInitial * 2);
        Assert.Equal(2, Runs());
        time.Inner.Advance(LeaderCommand.RestartBackoffInitial * 2);
        await Poll.UntilAsync(() => Task.FromResult(Runs() == 3), Deadline, "the second restart");

        Assert.Equal(["4", "4", "4"], File.ReadAllLines(_dir.File("runs")));
        Assert.Contains("reason=\"failed\"} 2", await ScrapeAsync(), StringComparison.Ordinal);
        Assert.Empty(_exits);
        Assert.Empty(_resigns);
    }

    [Fact]
    public async Task Stopping_the_host_stops_a_command_still_running()
    {
        Start($"echo $$ > {_dir.File("pid")}; exec sleep 1000");
        Publish(Role.Leader);
        var pid = await ReadPidAsync("pid");

        await _command!.StopAsync(CancellationToken.None).WaitAsync(Deadline);

        Assert.True(Gone(pid));
        // Stopped, not exited by itself: --exec-on-exit does not apply.
        Assert.Empty(_exits);
        Assert.Contains("leader_sidecar_exec_exits_total{name=\"app\",reason=\"stopped\"} 1", await ScrapeAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_re_exec_refuses_to_run_the_command_when_its_parent_is_not_the_one_named()
    {
        var marker = _dir.File("ran");
        var info = new System.Diagnostics.ProcessStartInfo(DaemonProcess.BinaryPath) { RedirectStandardError = true };
        foreach (var arg in new[] { ExecChild.Flag, "1", "/bin/sh", "sh", "-c", $"touch {marker}" })
        {
            info.ArgumentList.Add(arg);
        }

        using var process = System.Diagnostics.Process.Start(info)!;
        await process.WaitForExitAsync().WaitAsync(Deadline);

        Assert.Equal(ExecChild.ParentGone, process.ExitCode);
        Assert.False(File.Exists(marker));
    }

    private void Start(string script, TimeSpan? grace = null, ExecOnExit onExit = ExecOnExit.Exit)
    {
        _state = new LeadershipState(Election, _time, NullLogger<LeadershipState>.Instance);
        _metrics = new SidecarMetrics(Election, _state, new WatchStreams(), _time);
        var options = new ExecOptions
        {
            Command = "/bin/sh",
            Arguments = ["sh", "-c", script],
            Grace = grace ?? TimeSpan.FromSeconds(5),
            OnExit = onExit,
        };
        _command = new LeaderCommand(
            options,
            [DaemonProcess.BinaryPath],
            _state,
            _time,
            NullLogger<LeaderCommand>.Instance,
            _metrics,
            ExecOptions.ResignHoldOff(Election.LeaseDuration),
            resign: (holdOff, _) =>
            {
                // As the elector does: the step-down is published before the resign returns.
                lock (_resigns)
                {
                    _resigns.Add(holdOff);
                }

                Publish(Role.Follower);
                return Task.CompletedTask;
            },
            exit: code =>
            {
                lock (_exits)
                {
                    _exits.Add(code);
                }
            },
            _shuttingDown.Token);
        _command.StartAsync(CancellationToken.None).Wait();
    }

    private void Publish(Role role, long term = 1)
    {
        var now = _time.GetTimestamp();
        _state.Publish(new LeadershipStatus
        {
            Identity = Election.Identity,
            Role = role,
            Holder = role == Role.Leader ? Election.Identity : "",
            Term = term,
            LeaseUid = "uid-1",
            LeaseName = Election.LeaseName,
            LeaseNamespace = Election.LeaseNamespace,
            LastObservedAt = now,
            ClaimDeadline = role == Role.Leader ? now + (_time.TimestampFrequency * 3600) : null,
            ValidUntil = role == Role.Leader ? _time.GetUtcNow().AddHours(1) : null,
        });
    }

    private int Runs() => File.Exists(_dir.File("runs")) ? File.ReadAllLines(_dir.File("runs")).Length : 0;

    private async Task<int> ReadPidAsync(string name)
    {
        var path = _dir.File(name);
        var pid = 0;
        await Poll.UntilAsync(
            () => Task.FromResult(File.Exists(path) && int.TryParse(File.ReadAllText(path).Trim(), CultureInfo.InvariantCulture, out pid)),
            Deadline,
            $"{name} written");
        return pid;
    }

    private async Task<string> ScrapeAsync()
    {
        using var stream = new MemoryStream();
        await _metrics.WriteAsync(stream, CancellationToken.None);
        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }

    /// <summary>A fake clock that notes the due time of every timer made on it.</summary>
    private sealed class TimerWatch(FakeTimeProvider inner) : TimeProvider
    {
        private readonly List<TimeSpan> _dueTimes = [];

        public FakeTimeProvider Inner => inner;

        public override long GetTimestamp() => inner.GetTimestamp();

        public override long TimestampFrequency => inner.TimestampFrequency;

        public override DateTimeOffset GetUtcNow() => inner.GetUtcNow();

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            lock (_dueTimes)
            {
                _dueTimes.Add(dueTime);
            }

            return inner.CreateTimer(callback, state, dueTime, period);
        }

        /// <summary>Waits until a timer due in <paramref name="dueTime"/> has been made.</summary>
        public Task UntilTimerAsync(TimeSpan dueTime) =>
            Poll.UntilAsync(
                () =>
                {
                    lock (_dueTimes)
                    {
                        return Task.FromResult(_dueTimes.Contains(dueTime));
                    }
                },
                Deadline,
                $"a timer due in {dueTime}");
    }

    /// <summary>The session id of a process (field 6 of <c>/proc/PID/stat</c>).</summary>
    private static int SessionOf(int pid) =>
        int.Parse(ProcessStat.Fields(pid)![3], CultureInfo.InvariantCulture);

    private static bool Gone(int pid) => ProcessStat.Gone(pid);
}
