using System.Globalization;
using System.Runtime.Versioning;
using System.Text.Json;

namespace LeaderSidecar.Tests.EndToEnd;

/// <summary>
/// Exec mode (<c>leader-sidecar [flags] -- COMMAND</c>) on real daemons sharing a lease directory.
/// Every COMMAND is one script that holds an exclusive lock on a shared file while it runs and
/// fails loudly when it cannot take it at once, and logs its start and stop to a shared file: a
/// second COMMAND running at the same instant as another is caught, whatever the timing.
/// </summary>
[SupportedOSPlatform("linux")]
public sealed class ExecModeTests : IAsyncLifetime
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(5) };

    /// <summary>
    /// Renews may fail for 4 s before the claim ends, and followers wait 4 s more: COMMAND must be
    /// dead 3 s after the claim ends (the grace), within that.
    /// </summary>
    private static readonly string[] Timing = ["--lease-duration", "8s", "--renew-deadline", "4s", "--retry-period", "1s", "--exec-grace", "3s"];

    private const string Script = """
        #!/bin/sh
        # Stands for a program that must never run twice at once.
        dir=$(dirname "$0")
        me=$LEADER_SIDECAR_IDENTITY
        # Set before anything is logged: a test acts on the log.
        if [ -n "$IGNORE_TERM" ]; then
          trap '' TERM
        else
          # It takes 2 s to stop (within the grace), holding the lock: a release before it exited
          # would let the next leader's COMMAND start meanwhile, and fail to take the lock.
          trap 'sleep 2; echo "stop $me" >> "$dir/log"; exit 0' TERM
        fi
        exec 9>>"$dir/lock"
        if ! flock -n 9; then
          echo "OVERLAP $me term=$LEADER_SIDECAR_TERM" >> "$dir/log"
          exit 99
        fi
        echo "start $me term=$LEADER_SIDECAR_TERM uid=$LEADER_SIDECAR_LEASE_UID pid=$$ setting=${LEADER_SIDECAR_LOG_LEVEL:-none}" >> "$dir/log"
        echo $$ > "$dir/pid.$me"
        if [ "$(grep -c '^start ' "$dir/log")" -le "${CRASHES:-0}" ]; then
          echo "crash $me" >> "$dir/log"
          exit "${CRASH_CODE:-1}"
        fi
        while :; do
          sleep 0.2 & wait $!
        done
        """;

    private readonly TempDirectory _dir = new();
    private readonly List<DaemonProcess> _daemons = [];

    public Task InitializeAsync()
    {
        File.WriteAllText(ScriptPath, Script.ReplaceLineEndings("\n") + "\n");
        File.SetUnixFileMode(ScriptPath, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        foreach (var daemon in _daemons)
        {
            await daemon.DisposeAsync();
        }

        // A COMMAND a failed test left behind.
        foreach (var pidFile in Directory.GetFiles(_dir.Path, "pid.*"))
        {
            if (int.TryParse(File.ReadAllText(pidFile).Trim(), CultureInfo.InvariantCulture, out var pid) && !ProcessStat.Gone(pid))
            {
                try
                {
                    System.Diagnostics.Process.GetProcessById(pid).Kill(entireProcessTree: true);
                }
                catch (ArgumentException)
                {
                }
            }
        }

        _dir.Dispose();
    }

    private string ScriptPath => _dir.File("command.sh");

    [Fact]
    public async Task Only_the_leaders_command_runs_and_sigterm_hands_it_over_after_it_stopped()
    {
        // A sidecar setting in the sidecar's environment: none of the command's business.
        var all = await StartAsync(new Dictionary<string, string> { ["LEADER_SIDECAR_LOG_LEVEL"] = "info" }, [], "a", "b", "c");
        var first = await DaemonProcess.SingleLeaderAsync(all);
        var firstId = await IdentityAsync(first);
        await UntilLoggedAsync($"start {firstId} term=0 ");
        var started = Assert.Single(Log(), l => l.StartsWith("start ", StringComparison.Ordinal));
        Assert.Matches(@"^start \w term=0 uid=\S+ pid=\d+ setting=none$", started);
        Assert.False(File.Exists(_dir.File($"pid.{(firstId == "a" ? "b" : "a")}")));

        first.Terminate();
        await UntilHandedOverAsync(term: 1);
        Assert.Equal(0, await first.WaitForExitAsync(Deadline));
        var rest = all.Where(d => d != first).ToList();
        var second = await DaemonProcess.SingleLeaderAsync(rest);
        var secondId = await IdentityAsync(second);
        await UntilLoggedAsync($"start {secondId} term=1 ");

        var log = Log();
        Assert.True(log.IndexOf($"stop {firstId}") < log.FindIndex(l => l.StartsWith($"start {secondId} ", StringComparison.Ordinal)), string.Join('\n', log));
        Assert.True(ProcessStat.Gone(Pid(firstId)));
        Assert.Contains("ended with exit code 0 (stopped)", first.Output, StringComparison.Ordinal);
        AssertNoOverlap();
    }

    [Fact]
    public async Task A_resign_over_grpc_stops_the_command_before_the_release()
    {
        var all = await StartAsync(new Dictionary<string, string>(), ["--allow-tcp-control"], "a", "b");
        var first = await DaemonProcess.SingleLeaderAsync(all);
        var firstId = await IdentityAsync(first);
        await UntilLoggedAsync($"start {firstId} term=0 ");

        using (var channel = Surfaces.GrpcChannels.For(first.GrpcAddress))
        {
            var client = new Leadership.V1.Leadership.LeadershipClient(channel);
            await client.ResignAsync(new Leadership.V1.ResignRequest { HoldOff = Google.Protobuf.WellKnownTypes.Duration.FromTimeSpan(TimeSpan.FromSeconds(30)) }, deadline: DateTime.UtcNow.Add(Deadline));
        }

        await UntilHandedOverAsync(term: 1);
        var second = all.Single(d => d != first);
        Assert.Same(second, await DaemonProcess.SingleLeaderAsync(all));
        var log = Log();
        Assert.True(log.IndexOf($"stop {firstId}") < log.FindIndex(l => l.Contains(" term=1 ", StringComparison.Ordinal)), string.Join('\n', log));
    }

    [Fact]
    public async Task A_sidecar_killed_with_sigkill_takes_its_command_with_it()
    {
        var all = await StartAsync(new Dictionary<string, string>(), [], "a", "b");
        var leader = await DaemonProcess.SingleLeaderAsync(all);
        var leaderId = await IdentityAsync(leader);
        await UntilLoggedAsync($"start {leaderId} ");
        var pid = Pid(leaderId);

        await leader.KillAsync();

        await Poll.UntilAsync(() => Task.FromResult(ProcessStat.Gone(pid)), TimeSpan.FromSeconds(10), $"the command (pid {pid}) to die with its sidecar");
        var other = all.Single(d => d != leader);
        await DaemonProcess.SingleLeaderAsync([other]);
        await UntilLoggedAsync($"start {await IdentityAsync(other)} term=1 ");
        Assert.DoesNotContain($"stop {leaderId}", Log());
        AssertNoOverlap();
    }

    [Fact]
    public async Task A_command_that_ignores_sigterm_is_killed_after_the_grace_and_the_exit_code_says_so()
    {
        var daemon = Assert.Single(await StartAsync(new Dictionary<string, string> { ["IGNORE_TERM"] = "1" }, [], "a"));
        await UntilLoggedAsync("start a ");
        var pid = Pid("a");

        daemon.Terminate();

        Assert.Equal(3, await daemon.WaitForExitAsync(Deadline));
        Assert.True(ProcessStat.Gone(pid));
        Assert.Contains("did not exit within 3s of SIGTERM; killed it with SIGKILL", daemon.Output, StringComparison.Ordinal);
        Assert.Equal("", LeaseHolder());
        Assert.DoesNotContain("stop a", Log());
    }

    [Fact]
    public async Task On_exit_exit_the_sidecar_releases_and_exits_with_the_commands_code()
    {
        var daemon = Assert.Single(await StartAsync(new Dictionary<string, string> { ["CRASHES"] = "1", ["CRASH_CODE"] = "7" }, [], "a"));

        Assert.Equal(7, await daemon.WaitForExitAsync(Deadline));
        Assert.Contains("crash a", Log());
        Assert.Contains("exited by itself with exit code 7 while leading; releasing the lease and exiting with its exit code", daemon.Output, StringComparison.Ordinal);
        Assert.Equal("", LeaseHolder());
    }

    [Fact]
    public async Task On_exit_resign_another_replica_runs_the_command()
    {
        var all = await StartAsync(new Dictionary<string, string> { ["CRASHES"] = "1" }, ["--exec-on-exit", "resign"], "a", "b");
        await UntilLoggedAsync("crash ");
        var crashed = Log().Single(l => l.StartsWith("crash ", StringComparison.Ordinal))["crash ".Length..];

        await UntilLoggedAsync("start ", count: 2);
        var next = Log().Where(l => l.StartsWith("start ", StringComparison.Ordinal)).Last();
        Assert.StartsWith($"start {(crashed == "a" ? "b" : "a")} term=1 ", next, StringComparison.Ordinal);
        var resigned = all.Single(d => d.OutputLines.Any(l => l.Contains("resigning for 8s so another replica runs it", StringComparison.Ordinal)));
        Assert.Equal(crashed, await IdentityAsync(resigned));
        Assert.Same(all.Single(d => d != resigned), await DaemonProcess.SingleLeaderAsync(all));
        Assert.Contains("leader_sidecar_exec_exits_total{name=\"e2e\",reason=\"failed\"} 1", await MetricsAsync(resigned), StringComparison.Ordinal);
        AssertNoOverlap();
    }

    [Fact]
    public async Task On_exit_restart_the_command_runs_again_under_the_same_term()
    {
        var daemon = Assert.Single(await StartAsync(new Dictionary<string, string> { ["CRASHES"] = "2" }, ["--exec-on-exit", "restart"], "a"));

        await UntilLoggedAsync("start a ", count: 3);

        Assert.Equal(3, Log().Count(l => l.StartsWith("start a term=0 ", StringComparison.Ordinal)));
        Assert.Equal(2, Log().Count(l => l == "crash a"));
        Assert.Equal("LEADER", await daemon.RoleAsync());
        var metrics = await MetricsAsync(daemon);
        Assert.Contains("leader_sidecar_exec_exits_total{name=\"e2e\",reason=\"failed\"} 2", metrics, StringComparison.Ordinal);
        Assert.Contains("leader_sidecar_exec_running{name=\"e2e\"} 1", metrics, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("command \"/nonexistent/command\" does not exist", "--", "/nonexistent/command")]
    [InlineData("command \"no-such-command-for-leader-sidecar\" not found in PATH", "--", "no-such-command-for-leader-sidecar")]
    [InlineData("is not executable", "--", "NOT-EXECUTABLE")]
    [InlineData("nothing after --", "--")]
    [InlineData("--exec-grace 5s does not fit in lease-duration - renew-deadline (5s)", "--exec-grace", "5s", "--", "sh")]
    [InlineData("unknown stop signal \"SIGFOO\"", "--exec-stop-signal", "SIGFOO", "--", "sh")]
    [InlineData("unknown exec-on-exit \"retry\" (use exit, resign or restart)", "--exec-on-exit", "retry", "--", "sh")]
    public async Task A_command_that_cannot_run_or_a_bad_exec_flag_is_one_line_and_exit_code_2(string expected, params string[] args)
    {
        var notExecutable = _dir.File("not-executable");
        File.WriteAllText(notExecutable, "#!/bin/sh\n");
        args = [.. args.Select(a => a == "NOT-EXECUTABLE" ? notExecutable : a)];

        var (code, stdout, stderr) = await DaemonProcess.RunToExitAsync(["--lease-name", "e2e", "--lease-dir", _dir.Path, .. args]);

        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("leader-sidecar: ", line, StringComparison.Ordinal);
        Assert.Contains(expected, line, StringComparison.Ordinal);
    }

    private async Task<List<DaemonProcess>> StartAsync(IReadOnlyDictionary<string, string> environment, string[] extra, params string[] identities)
    {
        var started = new List<DaemonProcess>();
        foreach (var identity in identities)
        {
            var daemon = await DaemonProcess.StartAsync(environment, ["--lease-name", "e2e", "--lease-dir", _dir.Path, "--identity", identity, .. Timing, .. extra, "--", ScriptPath]);
            _daemons.Add(daemon);
            started.Add(daemon);
        }

        return started;
    }

    private List<string> Log() => File.Exists(_dir.File("log")) ? [.. File.ReadAllLines(_dir.File("log"))] : [];

    private Task UntilLoggedAsync(string prefix, int count = 1) =>
        Poll.UntilAsync(() => Task.FromResult(Log().Count(l => l.StartsWith(prefix, StringComparison.Ordinal)) >= count), Deadline, $"{count} line(s) \"{prefix}...\" in the log:\n{string.Join('\n', Log())}");

    /// <summary>Waits until a COMMAND started under <paramref name="term"/>, or one could not take the lock; fails on the latter.</summary>
    private async Task UntilHandedOverAsync(long term)
    {
        await Poll.UntilAsync(() => Task.FromResult(Log().Any(l => l.StartsWith("OVERLAP", StringComparison.Ordinal) || l.Contains($" term={term} ", StringComparison.Ordinal))), Deadline, $"a COMMAND under term {term}:\n{string.Join('\n', Log())}");
        AssertNoOverlap();
    }

    private void AssertNoOverlap() =>
        Assert.DoesNotContain(Log(), l => l.StartsWith("OVERLAP", StringComparison.Ordinal));

    private int Pid(string identity) => int.Parse(File.ReadAllText(_dir.File($"pid.{identity}")).Trim(), CultureInfo.InvariantCulture);

    private string? LeaseHolder()
    {
        using var document = JsonDocument.Parse(File.ReadAllText(_dir.File("default_e2e.json")));
        return document.RootElement.GetProperty("spec").GetProperty("holderIdentity").GetString();
    }

    private static async Task<string> IdentityAsync(DaemonProcess daemon) =>
        (await daemon.GetAsync("/status")).Body.GetProperty("identity").GetString()!;

    private static Task<string> MetricsAsync(DaemonProcess daemon) =>
        Http.GetStringAsync(new Uri(daemon.BaseAddress, "/metrics"));
}
