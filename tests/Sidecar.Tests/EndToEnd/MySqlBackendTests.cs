using System.Diagnostics;
using LeaderSidecar.Tests.Stores.MySql;

namespace LeaderSidecar.Tests.EndToEnd;

/// <summary>Real daemon processes on the mysql backend, against a real MariaDB started by the test.</summary>
public sealed class MySqlBackendTests : IAsyncLifetime
{
    private const string Table = "leader_sidecar_leases";
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan LeaseDuration = TimeSpan.FromSeconds(3);
    private static readonly TimeSpan RenewDeadline = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan RetryPeriod = TimeSpan.FromMilliseconds(500);
    private static readonly string[] FastTiming = ["--lease-duration", "3s", "--renew-deadline", "2s", "--retry-period", "500ms"];
    private readonly List<DaemonProcess> _daemons = [];
    private MariaDbServer _server = null!;

    public async Task InitializeAsync() => _server = await MariaDbServer.StartAsync();

    public async Task DisposeAsync()
    {
        foreach (var daemon in _daemons)
        {
            await daemon.DisposeAsync();
        }

        await _server.DisposeAsync();
    }

    [Fact]
    public async Task Two_least_privileged_daemons_elect_one_leader_and_hand_over_on_sigterm()
    {
        // The table and the user exactly as docs/STORES-MYSQL.md sets them up: no DDL by the daemon.
        await _server.SqlAsync(DocumentedSql());
        var all = new[] { await StartAsync("a", user: "leader_sidecar", "--mysql-create-table=false"), await StartAsync("b", user: "leader_sidecar", "--mysql-create-table=false") };
        var leader = await DaemonProcess.SingleLeaderAsync(all);
        var identity = await IdentityAsync(leader);
        Assert.Equal(identity, await ColumnAsync("holderIdentity"));
        Assert.Contains(all[0].OutputLines, l => l.Contains($"mysql table {Table} row demo/app at 127.0.0.1:{_server.Port}/{MariaDbServer.Database}", StringComparison.Ordinal));

        var stopped = Stopwatch.StartNew();
        leader.Terminate();
        Assert.Equal(0, await leader.WaitForExitAsync(TimeSpan.FromSeconds(15)));
        var next = await DaemonProcess.SingleLeaderAsync(all.Where(d => d != leader).ToList());

        Assert.Equal(await IdentityAsync(next), await ColumnAsync("holderIdentity"));
        Assert.Equal("1", await ColumnAsync("leaseTransitions"));
        Assert.True(stopped.Elapsed < TimeSpan.FromSeconds(3), "the handover waited for expiry instead of the release");
    }

    [Fact]
    public async Task A_killed_leader_is_replaced_after_the_lease_duration()
    {
        var all = new[] { await StartAsync("a"), await StartAsync("b") };
        var leader = await DaemonProcess.SingleLeaderAsync(all);

        await leader.KillAsync();

        var next = await DaemonProcess.SingleLeaderAsync(all.Where(d => d != leader).ToList());
        Assert.Equal(await IdentityAsync(next), await ColumnAsync("holderIdentity"));
        Assert.Equal("1", await ColumnAsync("leaseTransitions"));
    }

    [Fact]
    public async Task A_row_deleted_with_the_cli_is_created_again_under_a_new_uid()
    {
        var all = new[] { await StartAsync("a"), await StartAsync("b") };
        await DaemonProcess.SingleLeaderAsync(all);
        var uid = await ColumnAsync("uid");

        await _server.SqlAsync($"DELETE FROM {Table}");

        await Poll.UntilAsync(async () => (await _server.SqlAsync($"SELECT uid FROM {Table}")).Trim() is { Length: > 0 } now && now != uid, Deadline, "the lease to be created again");
        await DaemonProcess.SingleLeaderAsync(all);
        Assert.All(all, d => Assert.False(d.HasExited));
    }

    [Fact]
    public async Task A_stranger_written_with_the_cli_is_followed_then_waited_out()
    {
        var all = new[] { await StartAsync("a"), await StartAsync("b") };
        await DaemonProcess.SingleLeaderAsync(all);

        // A hand edit that does not touch the version: the store still sees it, and the leader's
        // next renew loses its compare.
        await _server.SqlAsync($"UPDATE {Table} SET holderIdentity = 'stranger', leaseTransitions = leaseTransitions + 1");

        await Poll.UntilAsync(
            async () => (await Task.WhenAll(all.Select(d => d.GetAsync("/status")))).All(s => s.Body.GetProperty("role").GetString() == "FOLLOWER" && s.Body.GetProperty("holder").GetString() == "stranger"),
            Deadline,
            "both daemons to follow the stranger");
        var leader = await DaemonProcess.SingleLeaderAsync(all);
        Assert.Equal(await IdentityAsync(leader), await ColumnAsync("holderIdentity"));
        Assert.Equal("2", await ColumnAsync("leaseTransitions"));
    }

    [Fact]
    public async Task Garbage_written_with_the_cli_is_logged_and_waited_out_and_a_repaired_row_is_used_again()
    {
        var all = new[] { await StartAsync("a"), await StartAsync("b") };
        await DaemonProcess.SingleLeaderAsync(all);

        await _server.SqlAsync($"UPDATE {Table} SET renewTime = '0000-00-00 00:00:00'");

        await Poll.UntilAsync(async () => (await Task.WhenAll(all.Select(d => d.RoleAsync()))).All(r => r != "LEADER"), Deadline, "the leader to step down");
        await Poll.UntilAsync(() => Task.FromResult(all.All(d => d.Output.Contains("is not a lease record", StringComparison.Ordinal))), Deadline, "both daemons to log the invalid row");
        Assert.All(all, d => Assert.False(d.HasExited));

        await _server.SqlAsync($"DELETE FROM {Table}");

        await DaemonProcess.SingleLeaderAsync(all);
    }

    [Fact]
    public async Task A_server_killed_and_restarted_is_waited_for_and_a_leader_returns()
    {
        var all = new[] { await StartAsync("a"), await StartAsync("b") };
        await DaemonProcess.SingleLeaderAsync(all);

        await _server.StopAsync();
        await Poll.UntilAsync(async () => (await Task.WhenAll(all.Select(d => d.RoleAsync()))).All(r => r == "UNKNOWN"), Deadline, "both daemons to report UNKNOWN");
        await _server.RestartAsync();

        await DaemonProcess.SingleLeaderAsync(all);
        Assert.All(all, d => Assert.False(d.HasExited));
    }

    [Fact]
    public async Task A_server_that_is_down_at_start_up_is_waited_for()
    {
        await _server.StopAsync();
        var daemon = await StartAsync("a");
        await Poll.UntilAsync(() => Task.FromResult(daemon.Output.Contains("First read of the lease failed", StringComparison.Ordinal)), Deadline, "the failed first read to be logged");
        Assert.False(daemon.HasExited);

        await _server.RestartAsync();

        await Poll.UntilAsync(async () => await daemon.RoleAsync() == "LEADER", Deadline, "the daemon to lead once MariaDB is back");
    }

    [Fact]
    public async Task Connections_ended_by_kill_come_back_and_a_release_is_still_handed_over()
    {
        await using var group = Group();
        var all = await StartAllAsync(group, "a", "b");
        var leader = await DaemonProcess.SingleLeaderAsync(all);
        var renewed = await ColumnAsync("renewTime");

        // Every connection of both daemons (requests and polls), found by their user, as a DBA would.
        var ids = (await _server.SqlAsync($"SELECT id FROM information_schema.PROCESSLIST WHERE USER = '{MariaDbServer.User}'", database: null))
            .Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(ids.Length >= 2, $"only {ids.Length} connections of the daemons were found");
        foreach (var id in ids)
        {
            // A connection may have ended meanwhile: "Unknown thread id" is not a failure here.
            await _server.CliAsync($"KILL CONNECTION {id.Trim()}", database: null);
        }

        // The leader renews again on new connections, and a release still reaches the follower.
        await Poll.UntilAsync(async () => await ColumnAsync("renewTime") != renewed, Deadline, "a renew after the kill");
        leader = await DaemonProcess.SingleLeaderAsync(all);
        var stopped = Stopwatch.StartNew();
        await group.TerminateAsync(leader);
        var next = await DaemonProcess.SingleLeaderAsync(all.Where(d => d != leader).ToList());
        Assert.True(stopped.Elapsed < LeaseDuration, "the handover waited for expiry instead of the release");
        Assert.Equal(await IdentityAsync(next), await ColumnAsync("holderIdentity"));
        group.AssertOneLeaderAtATime();
    }

    [Fact]
    public async Task A_server_paused_past_the_lease_duration_makes_the_leader_step_down_by_its_renew_deadline()
    {
        await using var group = Group();
        var all = await StartAllAsync(group, "a", "b");
        await DaemonProcess.SingleLeaderAsync(all);

        _server.Pause();
        var paused = Stopwatch.StartNew();
        await DaemonGroup.AllAsync(all, r => r != "LEADER", RenewDeadline + DaemonGroup.ObservationMargin, "the leader to step down by its renew deadline");
        await Poll.UntilAsync(() => Task.FromResult(paused.Elapsed > LeaseDuration + RetryPeriod), Deadline, "the pause to outlast the lease");
        _server.Resume();

        await DaemonGroup.LeaderWithinAsync(all, LeaseDuration + RetryPeriod, "after MariaDB resumed");
        Assert.DoesNotContain(all, d => d.HasExited);
        group.AssertOneLeaderAtATime();
    }

    [Fact]
    public async Task A_huge_duration_written_with_the_cli_is_waited_out_and_a_negative_one_reads_as_expired()
    {
        await using var group = Group();
        var all = await StartAllAsync(group, "a", "b");
        await DaemonProcess.SingleLeaderAsync(all);

        // A stranger claiming the lease for 68 years: followed, never taken, nothing overflows.
        await _server.SqlAsync($"UPDATE {Table} SET holderIdentity = 'stranger', leaseDurationSeconds = 2147483647, leaseTransitions = 4");
        await Poll.UntilAsync(async () => (await Task.WhenAll(all.Select(d => d.GetAsync("/status")))).All(s => s.Body.GetProperty("holder").GetString() == "stranger"), Deadline, "both daemons to see the stranger");
        var edited = Stopwatch.StartNew();
        await Poll.UntilAsync(() => Task.FromResult(edited.Elapsed > LeaseDuration + RetryPeriod), Deadline, "our own lease duration to pass");
        Assert.All(await Task.WhenAll(all.Select(d => d.RoleAsync())), r => Assert.Equal("FOLLOWER", r));
        Assert.Equal("stranger", await ColumnAsync("holderIdentity"));

        // A negative duration means expired, as in client-go: taken at once, with the next term.
        await _server.SqlAsync($"UPDATE {Table} SET leaseDurationSeconds = -5");
        await DaemonGroup.LeaderWithinAsync(all, LeaseDuration, "after the duration went negative");
        var leader = await DaemonProcess.SingleLeaderAsync(all);
        Assert.Equal(await IdentityAsync(leader), await ColumnAsync("holderIdentity"));
        Assert.Equal(5L, await DaemonGroup.TermAsync(leader));
        Assert.DoesNotContain(all, d => d.HasExited);
        group.AssertOneLeaderAtATime();
    }

    [Fact]
    public async Task A_user_with_no_privilege_on_the_table_is_one_line_and_exit_2()
    {
        // The table exists; the user may log in and read another table of the database, not this one.
        await _server.SqlAsync(DocumentedSql());
        await _server.SqlAsync($"CREATE TABLE other (id INT); CREATE USER 'outsider'@'%' IDENTIFIED BY 'outsider-secret'; GRANT SELECT ON {MariaDbServer.Database}.other TO 'outsider'@'%';");

        var (code, stdout, stderr) = await DaemonProcess.RunToExitAsync(
            new Dictionary<string, string> { ["LEADER_SIDECAR_MYSQL_PASSWORD"] = "outsider-secret" },
            "--lease-name", "app", "--namespace", "demo", "--mysql", $"mysql://outsider@127.0.0.1:{_server.Port}/{MariaDbServer.Database}", "--http-address", "127.0.0.1:0", "--grpc-address", "127.0.0.1:0", "--log-level", "error");

        Assert.Equal(2, code);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("access denied", line, StringComparison.Ordinal);
        Assert.DoesNotContain("outsider-secret", stdout + stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_password_in_the_flag_is_one_line_and_exit_2_and_is_never_printed()
    {
        var (code, stdout, stderr) = await DaemonProcess.RunToExitAsync("--lease-name", "app", "--mysql", $"mysql://app:{MariaDbServer.Password}@127.0.0.1:{_server.Port}/{MariaDbServer.Database}");

        Assert.Equal(2, code);
        Assert.Empty(stdout);
        Assert.Contains("ps", Assert.Single(stderr.Trim().Split('\n')), StringComparison.Ordinal);
        Assert.DoesNotContain(MariaDbServer.Password, stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_whole_connection_string_in_the_environment_twin_may_carry_the_password()
    {
        var daemon = await DaemonProcess.StartAsync(
            new Dictionary<string, string> { ["LEADER_SIDECAR_MYSQL"] = _server.ConnectionString() },
            ["--lease-name", "app", "--namespace", "demo", "--identity", "a", .. FastTiming]);
        _daemons.Add(daemon);

        await Poll.UntilAsync(async () => await daemon.RoleAsync() == "LEADER", Deadline, "the daemon to lead");
        Assert.DoesNotContain(MariaDbServer.Password, daemon.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Rejected_credentials_are_one_line_and_exit_2_and_the_password_is_never_printed()
    {
        var (code, stdout, stderr) = await DaemonProcess.RunToExitAsync(
            new Dictionary<string, string> { ["LEADER_SIDECAR_MYSQL_PASSWORD"] = "wrong-secret" },
            "--lease-name", "app", "--namespace", "demo", "--mysql", _server.Url, "--http-address", "127.0.0.1:0", "--grpc-address", "127.0.0.1:0");

        Assert.Equal(2, code);
        Assert.Contains("credentials rejected", stderr, StringComparison.Ordinal);
        Assert.Contains("1045", stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("wrong-secret", stdout + stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_missing_table_that_may_not_be_created_is_one_line_and_exit_2()
    {
        var (code, _, stderr) = await DaemonProcess.RunToExitAsync(
            new Dictionary<string, string> { ["LEADER_SIDECAR_MYSQL_PASSWORD"] = MariaDbServer.Password },
            "--lease-name", "app", "--mysql", _server.Url, "--mysql-create-table=false", "--http-address", "127.0.0.1:0", "--grpc-address", "127.0.0.1:0", "--log-level", "error");

        Assert.Equal(2, code);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("does not exist", line, StringComparison.Ordinal);
        Assert.Contains("--mysql-create-table=false", line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_malformed_server_is_one_line_and_exit_2()
    {
        var (code, stdout, stderr) = await DaemonProcess.RunToExitAsync("--lease-name", "app", "--mysql", "mysql://127.0.0.1:3306/leases");

        Assert.Equal(2, code);
        Assert.Empty(stdout);
        Assert.Contains("needs a user", Assert.Single(stderr.Trim().Split('\n')), StringComparison.Ordinal);
    }

    /// <summary>The <c>sql</c> block of docs/STORES-MYSQL.md, with the documented user's password set for the test.</summary>
    private static string DocumentedSql()
    {
        var root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "Sidecar.sln")))
        {
            root = Path.GetDirectoryName(root)!;
        }

        var doc = File.ReadAllText(Path.Combine(root, "docs", "STORES-MYSQL.md"));
        const string Fence = "```sql\n";
        var start = doc.IndexOf(Fence, StringComparison.Ordinal) + Fence.Length;
        var sql = doc[start..doc.IndexOf("```", start, StringComparison.Ordinal)];
        Assert.Contains("CREATE USER 'leader_sidecar'@'%' IDENTIFIED BY 'CHANGE-ME'", sql, StringComparison.Ordinal);
        return $"USE {MariaDbServer.Database};\n" + sql.Replace("CHANGE-ME", MariaDbServer.Password, StringComparison.Ordinal);
    }

    private async Task<DaemonProcess> StartAsync(string identity, string user = MariaDbServer.User, params string[] extra)
    {
        var daemon = await DaemonProcess.StartAsync(
            new Dictionary<string, string> { ["LEADER_SIDECAR_MYSQL_PASSWORD"] = MariaDbServer.Password },
            ["--lease-name", "app", "--namespace", "demo", "--identity", identity, "--mysql", $"mysql://{user}@127.0.0.1:{_server.Port}/{MariaDbServer.Database}", .. FastTiming, .. extra]);
        _daemons.Add(daemon);
        return daemon;
    }

    private DaemonGroup Group() =>
        new(["--lease-name", "app", "--namespace", "demo", "--mysql", _server.Url, .. FastTiming]);

    private static async Task<List<DaemonProcess>> StartAllAsync(DaemonGroup group, params string[] identities)
    {
        var environment = new Dictionary<string, string> { ["LEADER_SIDECAR_MYSQL_PASSWORD"] = MariaDbServer.Password };
        return [.. await Task.WhenAll(identities.Select(id => group.StartOneAsync(id, environment: environment)))];
    }

    private static async Task<string?> IdentityAsync(DaemonProcess daemon) =>
        (await daemon.GetAsync("/status")).Body.GetProperty("identity").GetString();

    private async Task<string> ColumnAsync(string column) =>
        (await _server.SqlAsync($"SELECT {column} FROM {Table} WHERE namespace = 'demo' AND name = 'app'")).Trim();
}
