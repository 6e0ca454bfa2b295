using System.Diagnostics;
using System.Globalization;

namespace LeaderSidecar.Surfaces.Exec;

/// <summary>
/// How COMMAND is started: through a re-exec of this binary that prepares the process and then
/// becomes COMMAND (<c>execv</c>), because <see cref="Process.Start()"/> can neither start a new
/// session nor set a parent-death signal.
/// </summary>
/// <remarks>
/// <para>
/// The re-exec (<c>leader-sidecar --exec-child-internal PARENT-PID PATH ARGV0 ARGS...</c>, handled
/// first thing in <c>Program.Main</c>, before any parsing or hosting) makes itself a session and
/// process-group leader (<c>setsid</c>), so the sidecar can signal COMMAND and all its children at
/// once and a terminal's Ctrl-C reaches only the sidecar; asks for SIGKILL when its parent dies
/// (<c>PR_SET_PDEATHSIG</c>, kept across <c>execv</c>); checks that the parent is still the sidecar
/// (if the sidecar died before the <c>prctl</c>, nobody would send the signal); resets the signal
/// dispositions the runtime changed; and executes COMMAND.
/// </para>
/// <para>
/// The kernel sends the parent-death signal when the <em>thread</em> that forked the child ends,
/// not the process: <see cref="ForkThread"/> starts every COMMAND from one long-lived thread.
/// </para>
/// </remarks>
internal static class ExecChild
{
    /// <summary>The first argument that makes <c>Program.Main</c> run <see cref="Run"/> instead of the sidecar.</summary>
    public const string Flag = "--exec-child-internal";

    /// <summary>The exit code when the sidecar died before COMMAND could start.</summary>
    public const int ParentGone = 125;

    /// <summary>Variables COMMAND gets: the fencing term, the lease uid and this replica's identity.</summary>
    public const string TermVariable = "LEADER_SIDECAR_TERM";

    public const string LeaseUidVariable = "LEADER_SIDECAR_LEASE_UID";

    public const string IdentityVariable = "LEADER_SIDECAR_IDENTITY";

    /// <summary>Whether <paramref name="args"/> ask for the re-exec rather than the sidecar.</summary>
    public static bool IsRequested(string[] args) => args.Length > 0 && args[0] == Flag;

    /// <summary>
    /// The re-exec. Returns only when COMMAND could not be executed, with the exit code a shell
    /// would give (126: not executable, 127: not found), or <see cref="ParentGone"/>.
    /// </summary>
    public static int Run(string[] args)
    {
        if (args.Length < 4 || !int.TryParse(args[1], NumberStyles.None, CultureInfo.InvariantCulture, out var parent))
        {
            Console.Error.WriteLine($"leader-sidecar: {Flag} is for the sidecar's own use");
            return 2;
        }

        // The order matters: the death signal is armed before the parent check, so a parent that
        // dies after the check still takes this process with it.
        _ = UnixProcess.NewSession();
        _ = UnixProcess.SetDeathSignal(Signal.Kill);
        if (UnixProcess.ParentId != parent)
        {
            return ParentGone;
        }

        UnixProcess.ResetSignals();
        var error = UnixProcess.Exec(args[2], args[3..]);
        Console.Error.WriteLine($"leader-sidecar: cannot run {args[2]}: {System.Runtime.InteropServices.Marshal.GetPInvokeErrorMessage(error)}");
        return error == UnixProcess.NoSuchFile ? 127 : 126;
    }

    /// <summary>
    /// How to start <paramref name="options"/>' COMMAND for a claim, through <paramref name="launcher"/>
    /// (this binary). COMMAND gets the sidecar's environment without the sidecar's own settings
    /// (<c>LEADER_SIDECAR_*</c>, which may hold a store password), plus the claim's variables;
    /// stdout and stderr are the sidecar's, stdin is empty.
    /// </summary>
    public static ProcessStartInfo StartInfo(IReadOnlyList<string> launcher, ExecOptions options, string identity, long? term, string leaseUid)
    {
        var info = new ProcessStartInfo(launcher[0])
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
        };
        foreach (var argument in launcher.Skip(1))
        {
            info.ArgumentList.Add(argument);
        }

        info.ArgumentList.Add(Flag);
        info.ArgumentList.Add(Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
        info.ArgumentList.Add(options.Command);
        foreach (var argument in options.Arguments)
        {
            info.ArgumentList.Add(argument);
        }

        foreach (var name in info.Environment.Keys.Where(k => k.StartsWith("LEADER_SIDECAR_", StringComparison.Ordinal)).ToList())
        {
            info.Environment.Remove(name);
        }

        info.Environment[TermVariable] = term?.ToString(CultureInfo.InvariantCulture) ?? "";
        info.Environment[LeaseUidVariable] = leaseUid;
        info.Environment[IdentityVariable] = identity;
        return info;
    }

    /// <summary>
    /// Resolves COMMAND as a shell would: a name with a slash is a path (relative to the working
    /// directory), any other is looked up in <paramref name="searchPath"/>. Returns the absolute
    /// path of an executable regular file, or null with the problem.
    /// </summary>
    public static string? Resolve(string command, string? searchPath, out string problem)
    {
        problem = "";
        if (command.Length == 0)
        {
            problem = "the command after -- is empty";
            return null;
        }

        if (command.Contains('/', StringComparison.Ordinal))
        {
            var path = Path.GetFullPath(command);
            return Usable(path, out problem) ? path : null;
        }

        foreach (var directory in (searchPath ?? "").Split(':'))
        {
            // An empty PATH entry means the working directory, as in a shell.
            var candidate = Path.GetFullPath(Path.Combine(directory.Length == 0 ? "." : directory, command));
            if (Usable(candidate, out _))
            {
                return candidate;
            }
        }

        problem = $"command {Configuration.CommandLine.Quote(command)} not found in PATH";
        return null;
    }

    private static bool Usable(string path, out string problem)
    {
        problem = !File.Exists(path) ? (Directory.Exists(path) ? $"command {Configuration.CommandLine.Quote(path)} is a directory" : $"command {Configuration.CommandLine.Quote(path)} does not exist")
            : !UnixProcess.IsExecutable(path) ? $"command {Configuration.CommandLine.Quote(path)} is not executable"
            : "";
        return problem.Length == 0;
    }
}
