using System.Globalization;

namespace LeaderSidecar.Surfaces.Exec;

/// <summary>What <c>--exec-on-exit</c> does when COMMAND exits by itself while this replica leads.</summary>
internal enum ExecOnExit
{
    /// <summary>Release the lease and exit with COMMAND's exit code: the job is over, or failed, and the host decides.</summary>
    Exit,

    /// <summary>Release the lease with a hold-off, so another replica runs COMMAND.</summary>
    Resign,

    /// <summary>Run COMMAND again under the same claim, after a backoff that grows while it keeps failing fast.</summary>
    Restart,
}

/// <summary>
/// Exec mode (<c>leader-sidecar [flags] -- COMMAND [ARGS...]</c>): COMMAND runs only while this
/// replica leads. Built by the command line; <see cref="Command"/> is already resolved through
/// <c>PATH</c> to an executable file.
/// </summary>
internal sealed record ExecOptions
{
    /// <summary>
    /// Default <c>--exec-grace</c>. It must fit in <c>lease-duration − renew-deadline</c> (5 s by
    /// default); what it leaves of that gap is the slack for a late timer and for clock rates.
    /// </summary>
    public static readonly TimeSpan DefaultGrace = TimeSpan.FromSeconds(3);

    /// <summary>The executable to run, an absolute path.</summary>
    public string Command { get; init; } = "";

    /// <summary>COMMAND's argv as the user wrote it: the name first (as a shell would pass it), then the arguments.</summary>
    public IReadOnlyList<string> Arguments { get; init; } = [];

    /// <summary>How long COMMAND has to exit after the stop signal before its process group gets SIGKILL.</summary>
    public TimeSpan Grace { get; init; } = DefaultGrace;

    /// <summary>The signal that asks COMMAND to stop (SIGTERM unless <c>--exec-stop-signal</c> says otherwise).</summary>
    public Signal StopSignal { get; init; } = Signal.Term;

    public ExecOnExit OnExit { get; init; } = ExecOnExit.Exit;

    /// <summary>
    /// The hold-off of <see cref="ExecOnExit.Resign"/>: one lease duration, so another replica that
    /// is up takes the lease first; with none up, this one leads and runs COMMAND again after it.
    /// </summary>
    public static TimeSpan ResignHoldOff(TimeSpan leaseDuration) => leaseDuration;

    /// <summary>
    /// The problem with the grace for these timings, or null. A leader whose renews fail stops
    /// claiming at its renew deadline, and a follower may take over <c>lease-duration −
    /// renew-deadline</c> later at the earliest; COMMAND must be dead by then.
    /// </summary>
    public static string? GraceProblem(TimeSpan grace, TimeSpan leaseDuration, TimeSpan renewDeadline)
    {
        var gap = leaseDuration - renewDeadline;
        return grace < gap ? null
            : $"--exec-grace {Configuration.GoDuration.Format(grace)} does not fit in lease-duration - renew-deadline ({Configuration.GoDuration.Format(gap)}): "
              + "after a missed renew another replica may lead that much later, and COMMAND must be gone by then; shorten --exec-grace or widen the gap";
    }
}

/// <summary>A signal by its Linux number (the same on x86-64 and arm64 for the ones offered).</summary>
internal readonly record struct Signal(int Number, string Name)
{
    public static readonly Signal Hup = new(1, "SIGHUP");
    public static readonly Signal Int = new(2, "SIGINT");
    public static readonly Signal Quit = new(3, "SIGQUIT");
    public static readonly Signal Kill = new(9, "SIGKILL");
    public static readonly Signal Usr1 = new(10, "SIGUSR1");
    public static readonly Signal Usr2 = new(12, "SIGUSR2");
    public static readonly Signal Term = new(15, "SIGTERM");

    /// <summary>The signals <c>--exec-stop-signal</c> takes.</summary>
    public static readonly IReadOnlyList<Signal> StopSignals = [Term, Int, Hup, Quit, Usr1, Usr2, Kill];

    /// <summary><c>TERM</c>, <c>SIGTERM</c>, <c>sigterm</c> or <c>15</c>; null for anything else.</summary>
    public static Signal? Parse(string value)
    {
        var name = value.ToUpperInvariant();
        name = name.StartsWith("SIG", StringComparison.Ordinal) ? name : "SIG" + name;
        foreach (var signal in StopSignals)
        {
            if (signal.Name == name || value == signal.Number.ToString(CultureInfo.InvariantCulture))
            {
                return signal;
            }
        }

        return null;
    }

    public override string ToString() => Name;
}
