using System.Diagnostics;
using LeaderSidecar.Configuration;
using LeaderSidecar.Election;
using LeaderSidecar.Surfaces.Metrics;

namespace LeaderSidecar.Surfaces.Exec;

/// <summary>
/// Exec mode: runs COMMAND while this replica leads, and only then. Like every surface it only
/// observes <see cref="LeadershipState"/>; it never decides leadership.
/// </summary>
/// <remarks>
/// <para>
/// What is promised: COMMAND starts only under a leader status, with that claim's term and lease
/// uid in its environment, and one COMMAND at most runs at a time in this sidecar. The moment the
/// claim ends — step-down at the renew deadline, a lost compare-and-swap, a resign, shutdown —
/// its process group gets the stop signal, and SIGKILL <see cref="ExecOptions.Grace"/> later. A
/// release waits for COMMAND to be gone (<see cref="WaitStoppedAsync"/>, awaited by
/// <see cref="Drain"/>), so the next leader's COMMAND cannot overlap with this one.
/// </para>
/// <para>
/// Why it holds without a release: a claim that ends at the renew deadline leaves followers
/// <c>lease-duration − renew-deadline</c> more to wait, and the grace is shorter than that
/// (checked at start-up), so COMMAND is dead before anyone else can lead.
/// </para>
/// <para>
/// What is not promised: a sidecar that is paused (SIGSTOP, a frozen VM) cannot stop COMMAND, which
/// may run on past the claim while another replica leads; and a process that leaves COMMAND's
/// process group (<c>setsid</c>, a daemonizing fork) is not tracked. COMMAND's writes are fenced
/// with <c>LEADER_SIDECAR_TERM</c> for that. A sidecar killed outright takes COMMAND with it
/// (the parent-death signal, see <see cref="ExecChild"/>), but not COMMAND's own children.
/// </para>
/// </remarks>
internal sealed partial class LeaderCommand : IHostedService, IDisposable
{
    /// <summary>The first restart's delay with <c>--exec-on-exit=restart</c>.</summary>
    public static readonly TimeSpan RestartBackoffInitial = TimeSpan.FromSeconds(1);

    /// <summary>The longest restart delay; a COMMAND that ran at least this long starts the backoff over.</summary>
    public static readonly TimeSpan RestartBackoffMax = TimeSpan.FromSeconds(30);

    /// <summary>The sidecar's exit code when shutdown had to kill COMMAND after the grace.</summary>
    public const int KilledAtShutdown = 3;

    private readonly ExecOptions _options;
    private readonly IReadOnlyList<string> _launcher;
    private readonly LeadershipState _state;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly SidecarMetrics? _metrics;
    private readonly TimeSpan _resignHoldOff;
    private readonly Func<TimeSpan, CancellationToken, Task> _resign;
    private readonly Action<int> _exit;
    private readonly CancellationToken _shuttingDown;
    private readonly ForkThread _fork = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _gate = new();

    // Guarded by _gate.
    private Claim? _wanted;
    private long _claims;
    private TaskCompletionSource _changed = NewSignal();
    private Task _idle = Task.CompletedTask;

    private Task _run = Task.CompletedTask;

    /// <param name="options">COMMAND and how to stop it.</param>
    /// <param name="launcher">This binary (its path, and any arguments before its own), re-executed to start COMMAND (<see cref="ExecChild"/>).</param>
    /// <param name="state">The published leadership.</param>
    /// <param name="time">The clock of the grace and the restart backoff.</param>
    /// <param name="logger">Where starts, stops and exits go.</param>
    /// <param name="metrics">Counts exits; null in tests that do not look.</param>
    /// <param name="resignHoldOff">How long a resign after COMMAND exited keeps this replica out of the election.</param>
    /// <param name="resign">Steps down and releases, as a gRPC <c>Resign</c> does.</param>
    /// <param name="exit">Ends the sidecar with an exit code (also called with <see cref="KilledAtShutdown"/> during a shutdown).</param>
    /// <param name="shuttingDown">Cancelled when the sidecar shuts down.</param>
    public LeaderCommand(
        ExecOptions options,
        IReadOnlyList<string> launcher,
        LeadershipState state,
        TimeProvider time,
        ILogger<LeaderCommand> logger,
        SidecarMetrics? metrics,
        TimeSpan resignHoldOff,
        Func<TimeSpan, CancellationToken, Task> resign,
        Action<int> exit,
        CancellationToken shuttingDown)
    {
        _options = options;
        _launcher = launcher;
        _state = state;
        _time = time;
        _logger = logger;
        _metrics = metrics;
        _resignHoldOff = resignHoldOff;
        _resign = resign;
        _exit = exit;
        _shuttingDown = shuttingDown;
    }

    private string Name => _options.Arguments.Count > 0 ? _options.Arguments[0] : _options.Command;

    /// <summary>Subscribes before the elector runs, so the first claim is seen.</summary>
    public Task StartAsync(CancellationToken cancellationToken)
    {
        _state.Subscribe(OnStatus);
        _run = Task.Run(() => RunAsync(_stop.Token), CancellationToken.None);
        return Task.CompletedTask;
    }

    /// <summary>Normally COMMAND is gone by now (the release waited for it); if not, it is stopped as at a step-down.</summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stop.CancelAsync();
        await _run.WaitAsync(cancellationToken).ContinueWith(_ => { }, TaskScheduler.Default);
    }

    /// <summary>
    /// Completes once no COMMAND runs, and none will until this replica leads again: called
    /// between a step-down and the release.
    /// </summary>
    public Task WaitStoppedAsync(CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            return _idle.WaitAsync(cancellationToken);
        }
    }

    public void Dispose()
    {
        _fork.Dispose();
        _stop.Dispose();
    }

    /// <summary>
    /// Called by <see cref="LeadershipState"/> with every status, in order, inside its lock. A
    /// claim is one uninterrupted stretch of leader statuses under one term and lease uid: any
    /// other status in between, however brief, ends it, and the next one is a new claim.
    /// </summary>
    private void OnStatus(LeadershipStatus status)
    {
        TaskCompletionSource changed;
        lock (_gate)
        {
            var same = status.IsLeader && _wanted is { } claim && claim.Term == status.Term && claim.LeaseUid == status.LeaseUid;
            if (same || (!status.IsLeader && _wanted is null))
            {
                return;
            }

            _wanted = status.IsLeader ? new Claim(++_claims, status.Identity, status.Term, status.LeaseUid) : null;
            changed = _changed;
            _changed = NewSignal();
        }

        changed.SetResult();
    }

    private async Task RunAsync(CancellationToken stop)
    {
        var backoff = RestartBackoffInitial;
        Claim? previous = null;
        try
        {
            while (true)
            {
                var claim = await NextClaimAsync(stop);
                if (claim != previous)
                {
                    backoff = RestartBackoffInitial;
                    previous = claim;
                }

                if (await RunOnceAsync(claim, stop) is not { } run || !ExitedWhileLeading(claim, run))
                {
                    continue;
                }

                switch (_options.OnExit)
                {
                    case ExecOnExit.Exit:
                        LogExitedWhileLeading(_logger, Name, run.ExitCode, "releasing the lease and exiting with its exit code");
                        _exit(run.ExitCode);
                        return;

                    case ExecOnExit.Resign:
                        LogExitedWhileLeading(_logger, Name, run.ExitCode, $"resigning for {GoDuration.Format(_resignHoldOff)} so another replica runs it");
                        await ResignAsync(stop);
                        break;

                    default:
                        backoff = run.Lasted >= RestartBackoffMax ? RestartBackoffInitial : backoff;
                        LogExitedWhileLeading(_logger, Name, run.ExitCode, $"running it again in {GoDuration.Format(backoff)}");
                        await UntilClaimEndsAsync(claim, backoff, stop);
                        backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, RestartBackoffMax.Ticks));
                        break;
                }
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
    }

    /// <summary>Waits until this replica leads; returns its claim. Throws once <paramref name="stop"/> is cancelled.</summary>
    private async Task<Claim> NextClaimAsync(CancellationToken stop)
    {
        while (true)
        {
            stop.ThrowIfCancellationRequested();
            Task changed;
            lock (_gate)
            {
                if (_wanted is { } claim)
                {
                    return claim;
                }

                changed = _changed.Task;
            }

            await changed.WaitAsync(stop);
        }
    }

    /// <summary>
    /// Runs COMMAND for <paramref name="claim"/> until it exits or the claim ends (then stops it).
    /// Null when the claim ended before COMMAND could start.
    /// </summary>
    private async Task<Run?> RunOnceAsync(Claim claim, CancellationToken stop)
    {
        var idle = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate)
        {
            // Checked under the lock that orders it with the step-down: a release that begins
            // after this sees the new _idle and waits for it.
            if (_wanted != claim || stop.IsCancellationRequested)
            {
                return null;
            }

            _idle = idle.Task;
        }

        try
        {
            return await StartAndWatchAsync(claim, stop);
        }
        finally
        {
            idle.SetResult();
        }
    }

    private async Task<Run> StartAndWatchAsync(Claim claim, CancellationToken stop)
    {
        var startedAt = _time.GetTimestamp();
        Process process;
        try
        {
            process = await _fork.StartAsync(ExecChild.StartInfo(_launcher, _options, claim.Identity, claim.Term, claim.LeaseUid));
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException or IOException)
        {
            LogStartFailed(_logger, Name, e.Message);
            _metrics?.ExecExited("failed");
            return new Run(127, TimeSpan.Zero, BySelf: true);
        }

        using (process)
        {
            var pid = process.Id;
            process.StandardInput.Close();
            _metrics?.ExecRunning(true);
            LogStarted(_logger, Name, pid, claim.Term, claim.LeaseUid);
            var exited = process.WaitForExitAsync(CancellationToken.None);
            using var claimEnded = CancellationTokenSource.CreateLinkedTokenSource(stop);
            var ended = UntilClaimEndsAsync(claim, Timeout.InfiniteTimeSpan, claimEnded.Token);
            string reason;
            var bySelf = await Task.WhenAny(exited, ended) == exited;
            if (bySelf)
            {
                await claimEnded.CancelAsync();
                reason = process.ExitCode == 0 ? "exited" : "failed";
            }
            else
            {
                reason = await TerminateAsync(pid, exited);
            }

            // Whatever COMMAND left behind in its process group goes with it. Never to the pid
            // alone: COMMAND is reaped, and the number may be reused.
            UnixProcess.KillGroup(pid);
            _metrics?.ExecRunning(false);
            _metrics?.ExecExited(reason);
            LogExited(_logger, Name, pid, process.ExitCode, reason);
            if (reason == "killed" && _shuttingDown.IsCancellationRequested)
            {
                _exit(KilledAtShutdown);
            }

            return new Run(process.ExitCode, _time.GetElapsedTime(startedAt), bySelf);
        }
    }

    /// <summary>
    /// The stop signal to COMMAND's process group, then SIGKILL after the grace. Returns the exit
    /// reason. A stop within milliseconds of the start can reach the re-exec before it became
    /// COMMAND; the runtime takes that signal and COMMAND never sees it, so it ends at the grace.
    /// </summary>
    private async Task<string> TerminateAsync(int pid, Task exited)
    {
        LogStopping(_logger, Name, pid, _options.StopSignal.Name, GoDuration.Format(_options.Grace));
        _ = UnixProcess.SignalGroup(pid, _options.StopSignal);
        try
        {
            await exited.WaitAsync(_options.Grace, _time);
            return "stopped";
        }
        catch (TimeoutException)
        {
            _ = UnixProcess.SignalGroup(pid, Signal.Kill);
            LogKilled(_logger, Name, pid, GoDuration.Format(_options.Grace), _options.StopSignal.Name);
            await exited;
            return "killed";
        }
    }

    /// <summary>Whether COMMAND ended by itself while its claim still held, outside a shutdown: then <c>--exec-on-exit</c> applies.</summary>
    private bool ExitedWhileLeading(Claim claim, Run run)
    {
        lock (_gate)
        {
            return run.BySelf && _wanted == claim && !_shuttingDown.IsCancellationRequested;
        }
    }

    /// <summary>
    /// Waits <paramref name="timeout"/> or until <paramref name="claim"/> ends, whichever is first;
    /// throws when <paramref name="cancellationToken"/> is cancelled.
    /// </summary>
    private async Task UntilClaimEndsAsync(Claim claim, TimeSpan timeout, CancellationToken cancellationToken)
    {
        using var deadline = new CancellationTokenSource(timeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(deadline.Token, cancellationToken);
        try
        {
            while (true)
            {
                Task changed;
                lock (_gate)
                {
                    if (_wanted != claim)
                    {
                        return;
                    }

                    changed = _changed.Task;
                }

                await changed.WaitAsync(linked.Token);
            }
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
        }
    }

    private async Task ResignAsync(CancellationToken stop)
    {
        try
        {
            await _resign(_resignHoldOff, stop);
        }
        catch (Exception e) when (e is not OperationCanceledException || !stop.IsCancellationRequested)
        {
            LogResignFailed(_logger, e.Message);
        }
    }

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <param name="Number">Counts claims, so a claim regained after a gap is a new one.</param>
    private sealed record Claim(long Number, string Identity, long? Term, string LeaseUid);

    /// <param name="BySelf">It exited (or could not start) without being asked to stop.</param>
    private readonly record struct Run(int ExitCode, TimeSpan Lasted, bool BySelf);

    [LoggerMessage(EventId = 1200, EventName = "ExecStarted", Level = LogLevel.Information,
        Message = "Leading: started {Command} as process {Pid} (term {Term}, lease uid {LeaseUid})")]
    private static partial void LogStarted(ILogger logger, string command, int pid, long? term, string leaseUid);

    [LoggerMessage(EventId = 1201, EventName = "ExecStopping", Level = LogLevel.Information,
        Message = "Leadership ended: sent {Signal} to {Command} (process group {Pid}); SIGKILL after {Grace}")]
    private static partial void LogStopping(ILogger logger, string command, int pid, string signal, string grace);

    [LoggerMessage(EventId = 1202, EventName = "ExecKilled", Level = LogLevel.Warning,
        Message = "{Command} (process group {Pid}) did not exit within {Grace} of {Signal}; killed it with SIGKILL")]
    private static partial void LogKilled(ILogger logger, string command, int pid, string grace, string signal);

    [LoggerMessage(EventId = 1203, EventName = "ExecExited", Level = LogLevel.Information,
        Message = "{Command} (process {Pid}) ended with exit code {ExitCode} ({Reason})")]
    private static partial void LogExited(ILogger logger, string command, int pid, int exitCode, string reason);

    [LoggerMessage(EventId = 1204, EventName = "ExecExitedWhileLeading", Level = LogLevel.Warning,
        Message = "{Command} exited by itself with exit code {ExitCode} while leading; {Action}")]
    private static partial void LogExitedWhileLeading(ILogger logger, string command, int exitCode, string action);

    [LoggerMessage(EventId = 1205, EventName = "ExecStartFailed", Level = LogLevel.Error,
        Message = "Could not start {Command}: {Reason}")]
    private static partial void LogStartFailed(ILogger logger, string command, string reason);

    [LoggerMessage(EventId = 1206, EventName = "ExecResignFailed", Level = LogLevel.Warning,
        Message = "Resigning after the command exited failed ({Reason}); the lease runs out instead")]
    private static partial void LogResignFailed(ILogger logger, string reason);
}
