using System.Diagnostics;
using LeaderSidecar.Tests.Stores.MySql;
using static LeaderSidecar.Tests.EndToEnd.Timing;

namespace LeaderSidecar.Tests.EndToEnd;

/// <summary>Real daemon processes on the mysql backend, against a real MariaDB started by the test.</summary>
public sealed class MySqlBackendTests : SqlBackendTests
{
    private MariaDbServer _server = null!;

    protected override string ServerName => "MariaDB";

    protected override string Flag => "--mysql";

    protected override string HolderColumn => "holderIdentity";

    protected override string DurationColumn => "leaseDurationSeconds";

    protected override string TransitionsColumn => "leaseTransitions";

    protected override IReadOnlyDictionary<string, string> DaemonEnvironment { get; } = new Dictionary<string, string> { ["LEADER_SIDECAR_MYSQL_PASSWORD"] = MariaDbServer.Password };

    public override async Task InitializeAsync() => _server = await MariaDbServer.StartAsync();

    [Fact]
    public async Task Two_least_privileged_daemons_elect_one_leader_and_hand_over_on_sigterm()
    {
        // The table and the user exactly as docs/STORES-MYSQL.md sets them up: no DDL by the daemon.
        await _server.SqlAsync(DocumentedSql());
        var all = new[] { await StartAsync("a", user: "leader_sidecar", "--mysql-create-table=false"), await StartAsync("b", user: "leader_sidecar", "--mysql-create-table=false") };
        await HandsOverOnSigtermAsync(all, $"mysql table {Table} row demo/app at 127.0.0.1:{_server.Port}/{MariaDbServer.Database}");
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

        await DaemonGroup.AllAsync(all, r => r != "LEADER", Deadline, "the leader to step down");
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
        await DaemonGroup.AllAsync(all, r => r == "UNKNOWN", Deadline, "both daemons to report UNKNOWN");
        await _server.RestartAsync();

        await DaemonProcess.SingleLeaderAsync(all);
        Assert.All(all, d => Assert.False(d.HasExited));
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
        await group.AssertOneLeaderAtATimeAsync();
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
        await using var group = new DaemonGroup(["--lease-name", "app", "--namespace", "demo", .. FastTiming]);
        var daemon = await group.StartOneAsync("a", environment: new Dictionary<string, string> { ["LEADER_SIDECAR_MYSQL"] = _server.ConnectionString() });

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

    protected override string Url(string? user = null) => $"mysql://{user ?? MariaDbServer.User}@127.0.0.1:{_server.Port}/{MariaDbServer.Database}";

    protected override async Task<string> SqlAsync(string sql) => (await _server.SqlAsync(sql)).Trim();

    protected override Task StopServerAsync() => _server.StopAsync();

    protected override Task RestartServerAsync() => _server.RestartAsync();

    protected override void PauseServer() => _server.Pause();

    protected override void ResumeServer() => _server.Resume();

    protected override ValueTask DisposeServerAsync() => _server.DisposeAsync();
}
