using System.Globalization;
using LeaderSidecar.Tests.Stores.Postgres;
using static LeaderSidecar.Tests.EndToEnd.Timing;

namespace LeaderSidecar.Tests.EndToEnd;

/// <summary>Real daemon processes on the postgres backend, against a real PostgreSQL started by the test.</summary>
public sealed class PostgresBackendTests : SqlBackendTests
{
    // A retry period far longer than a notification takes to arrive: a follower that learned of a
    // release only by polling would take up to one retry period, one without a working watch (it
    // does not poll while the watch says it is up) a whole lease duration.
    private static readonly TimeSpan SlowRetryPeriod = TimeSpan.FromSeconds(3);
    private static readonly string[] SlowPollTiming = ["--lease-duration", "6s", "--renew-deadline", "4s", "--retry-period", "3s", "--log-level", "debug"];
    private PostgresServer _server = null!;

    protected override string ServerName => "PostgreSQL";

    protected override string Flag => "--postgres";

    protected override string HolderColumn => "holder_identity";

    protected override string DurationColumn => "lease_duration_seconds";

    protected override string TransitionsColumn => "lease_transitions";

    public override async Task InitializeAsync() => _server = await PostgresServer.StartAsync();

    [Fact]
    public async Task Two_daemons_elect_one_leader_and_hand_over_through_listen_on_sigterm()
    {
        var all = new[] { await StartAsync("a"), await StartAsync("b") };
        await HandsOverOnSigtermAsync(all, $"postgres row demo/app in leader_sidecar_leases at 127.0.0.1:{_server.Port}/postgres");
    }

    [Fact]
    public async Task A_row_deleted_in_psql_is_created_again_under_a_new_uid()
    {
        var all = new[] { await StartAsync("a"), await StartAsync("b") };
        await DaemonProcess.SingleLeaderAsync(all);
        var uid = await ColumnAsync("uid");

        await _server.PsqlAsync($"DELETE FROM {Table} {Where}");

        await Poll.UntilAsync(async () => await ColumnAsync("uid") is { Length: > 0 } now && now != uid, Deadline, "the lease to be created again");
        var leader = await DaemonProcess.SingleLeaderAsync(all);
        Assert.Equal(await ColumnAsync("uid"), (await leader.GetAsync("/status")).Body.GetProperty("leaseUid").GetString());
    }

    [Fact]
    public async Task A_stranger_written_in_psql_makes_the_leader_step_down_and_is_waited_out()
    {
        var all = new[] { await StartAsync("a"), await StartAsync("b") };
        var leader = await DaemonProcess.SingleLeaderAsync(all);

        await _server.PsqlAsync($"UPDATE {Table} SET holder_identity = 'stranger', lease_transitions = 5 {Where}");

        // Every daemon sees the stranger hold it (the edit is a new version, and it was notified)...
        await Poll.UntilAsync(async () => (await Task.WhenAll(all.Select(HolderAsync))).All(h => h == "stranger"), Deadline, "both daemons to see the stranger");
        Assert.Equal("FOLLOWER", await leader.RoleAsync());

        // ...and takes it once it has not changed for its lease duration, with a new term.
        var next = await DaemonProcess.SingleLeaderAsync(all);
        Assert.Equal(await IdentityAsync(next), await ColumnAsync("holder_identity"));
        Assert.Equal("6", await ColumnAsync("lease_transitions"));
    }

    [Fact]
    public async Task Garbage_in_psql_is_judged_never_crashes_and_a_fixed_row_is_taken_again()
    {
        var all = new[] { await StartAsync("a"), await StartAsync("b") };
        await DaemonProcess.SingleLeaderAsync(all);

        // A holder far longer than any identity: an unnamed claim, waited out, never echoed whole.
        await _server.PsqlAsync($"UPDATE {Table} SET holder_identity = repeat('x', 5000) {Where}");
        await Poll.UntilAsync(async () => await ColumnAsync("length(holder_identity)") != "5000", Deadline, "the overlong holder to be waited out");
        await DaemonProcess.SingleLeaderAsync(all);
        Assert.DoesNotContain(all, d => d.Output.Contains(new string('x', 2000), StringComparison.Ordinal));

        // A negative term is not a lease record: nobody leads on it, everybody says why.
        await _server.PsqlAsync($"UPDATE {Table} SET lease_transitions = -3 {Where}");
        await DaemonGroup.AllAsync(all, r => r != "LEADER", Deadline, "the leader to lose the lease it cannot read");
        await Poll.UntilAsync(() => Task.FromResult(all.All(d => d.Output.Contains("is not a lease record: lease_transitions -3 is negative", StringComparison.Ordinal))), Deadline, "both to log the invalid row");
        Assert.DoesNotContain(all, d => d.HasExited);

        // Fixed by hand (a non-positive duration reads as expired, as in client-go): taken at once.
        await _server.PsqlAsync($"UPDATE {Table} SET lease_transitions = 7, lease_duration_seconds = 0, holder_identity = 'gone' {Where}");
        var leader = await DaemonProcess.SingleLeaderAsync(all);
        Assert.Equal(await IdentityAsync(leader), await ColumnAsync("holder_identity"));
        Assert.Equal("8", await ColumnAsync("lease_transitions"));
    }

    [Fact]
    public async Task A_postgres_killed_and_restarted_is_waited_for_and_one_daemon_leads_again()
    {
        var all = new[] { await StartAsync("a"), await StartAsync("b") };
        await DaemonProcess.SingleLeaderAsync(all);

        await _server.StopAsync();
        await DaemonGroup.AllAsync(all, r => r != "LEADER", Deadline, "the leader to step down while PostgreSQL is gone");
        await _server.RestartAsync();

        var leader = await DaemonProcess.SingleLeaderAsync(all);
        Assert.Equal(await IdentityAsync(leader), await ColumnAsync("holder_identity"));
        Assert.DoesNotContain(all, d => d.HasExited);
    }

    [Fact]
    public async Task A_least_privilege_role_from_the_shipped_sql_leads_with_the_password_from_a_file()
    {
        await _server.PsqlFileAsync(Deploy.Repository.PathOf("deploy/postgres/setup.sql"));
        await _server.PsqlAsync("ALTER ROLE leader_sidecar PASSWORD 'apppw'");
        using var dir = new TempDirectory();
        await File.WriteAllTextAsync(dir.File("password"), "apppw\n");

        var all = new[] { await StartAsync("a", "leader_sidecar", "--postgres-create-table=false", "--postgres-password-file", dir.File("password")), await StartAsync("b", "leader_sidecar", "--postgres-create-table=false", "--postgres-password-file", dir.File("password")) };

        var leader = await DaemonProcess.SingleLeaderAsync(all);
        Assert.Equal(await IdentityAsync(leader), await ColumnAsync("holder_identity"));
    }

    [Fact]
    public async Task Connections_ended_by_pg_terminate_backend_come_back_and_a_release_still_reaches_the_follower_by_notification()
    {
        await using var group = Group(timing: SlowPollTiming);
        var all = await group.StartAsync("a", "b");
        var leader = await DaemonProcess.SingleLeaderAsync(all);
        var follower = all.Single(d => d != leader);
        await Poll.UntilAsync(() => Task.FromResult(Count(follower, WatchConnected) > 0), Deadline, "the follower to watch");
        var watches = Count(follower, WatchConnected);

        // Every connection of both daemons (requests and LISTEN), found by their application_name.
        var ended = await _server.PsqlAsync("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'leader-sidecar'");
        Assert.True(int.Parse(ended, CultureInfo.InvariantCulture) >= 3, $"only {ended} connections of the daemons were found");

        await Poll.UntilAsync(() => Task.FromResult(Count(follower, WatchFailed) > 0 && Count(follower, WatchConnected) > watches), Deadline, "the follower's LISTEN connection to fail and come back");
        leader = await DaemonProcess.SingleLeaderAsync(all);
        follower = all.Single(d => d != leader);
        await Poll.UntilAsync(() => Task.FromResult(WatchIsUp(follower)), Deadline, "the follower's watch to be up");

        var tookOver = await group.TerminateAndTimeTakeOverAsync(leader, follower);
        Assert.True(tookOver < TimeSpan.FromSeconds(1), $"the follower took over {tookOver.TotalMilliseconds:0} ms after the release: it polled instead of hearing the notification");
        await group.AssertOneLeaderAtATimeAsync();
    }

    [Fact]
    public async Task After_the_primary_dies_and_its_standby_is_promoted_one_daemon_leads_there_and_listen_follows_it()
    {
        await using var standby = await _server.StartStandbyAsync();
        var url = $"postgresql://postgres@127.0.0.1:{_server.Port},127.0.0.1:{standby.Port}/postgres?target_session_attrs=primary";
        await using var group = Group(url, SlowPollTiming);
        var all = await group.StartAsync("a", "b");
        var first = await DaemonProcess.SingleLeaderAsync(all);
        await Poll.UntilAsync(async () => await standby.PsqlAsync($"SELECT holder_identity FROM {Table} {Where}") == await IdentityAsync(first), Deadline, "the standby to replay the leader's row");
        var watches = all.Select(d => Count(d, WatchConnected)).ToList();

        await _server.StopAsync();
        await standby.PromoteAsync();

        var leader = await DaemonProcess.SingleLeaderAsync(all);
        Assert.Equal(await IdentityAsync(leader), await standby.PsqlAsync($"SELECT holder_identity FROM {Table} {Where}"));
        var follower = all.Single(d => d != leader);
        var index = Array.IndexOf([.. all], follower);
        await Poll.UntilAsync(() => Task.FromResult(Count(follower, WatchConnected) > watches[index] && WatchIsUp(follower)), Deadline, "the follower to LISTEN on the promoted standby");

        var tookOver = await group.TerminateAndTimeTakeOverAsync(leader, follower);
        Assert.True(tookOver < TimeSpan.FromSeconds(1), $"the follower took over {tookOver.TotalMilliseconds:0} ms after the release: it polled instead of hearing the notification");
        Assert.Equal(await IdentityAsync(follower), await standby.PsqlAsync($"SELECT holder_identity FROM {Table} {Where}"));
        await group.AssertOneLeaderAtATimeAsync();
    }

    [Fact]
    public async Task Behind_pgbouncer_in_transaction_mode_the_listen_probe_fails_and_followers_poll_and_still_take_over_a_release()
    {
        await using var bouncer = await PgBouncer.StartAsync(_server);
        await using var group = Group($"postgresql://postgres@127.0.0.1:{bouncer.Port}/postgres");
        var all = await group.StartAsync("a", "b");
        var leader = await DaemonProcess.SingleLeaderAsync(all);
        var follower = all.Single(d => d != leader);
        Assert.Equal(await IdentityAsync(leader), await ColumnAsync("holder_identity"));

        // The probe notification never comes back through the pooler: said once, and the follower polls.
        await Poll.UntilAsync(() => Task.FromResult(Count(follower, ListenSilent) > 0), Deadline, "the follower to say LISTEN hears nothing");
        Assert.Equal(1, Count(follower, ListenSilent));

        // Measured from the leader's logged release to the follower's logged acquisition (their
        // own timestamps, so the leader's shutdown and this test's polling do not count): a poll
        // comes every retry period; trusting the deaf watch would mean waiting for expiry, most
        // of a lease duration after the last renew it saw.
        var tookOver = await group.TerminateAndTimeTakeOverAsync(leader, follower);
        Assert.True(tookOver < LeaseDuration / 2, $"the follower took over {tookOver.TotalMilliseconds:0} ms after the release: it trusted a deaf watch instead of polling");
        Assert.Equal(await IdentityAsync(follower), await ColumnAsync("holder_identity"));
        await group.AssertOneLeaderAtATimeAsync();
    }

    [Theory]
    [InlineData("no-grant", "access denied")]
    [InlineData("password", "--postgres carries a password")]
    [InlineData("table", "is not [SCHEMA.]TABLE")]
    [InlineData("no-table", "access denied")]
    [InlineData("rejected", "credentials rejected")]
    public async Task Bad_input_is_one_line_and_exit_2_and_never_shows_the_password(string kind, string expected)
    {
        await _server.PsqlAsync("CREATE ROLE app LOGIN PASSWORD 'right-secret'");
        var environment = new Dictionary<string, string>();
        var args = new List<string> { "--lease-name", "app", "--namespace", "demo", "--http-address", "127.0.0.1:0", "--grpc-address", "127.0.0.1:0" };
        switch (kind)
        {
            case "password":
                args.AddRange(["--postgres", $"postgresql://app:wrong-secret@127.0.0.1:{_server.Port}/postgres"]);
                break;
            case "table":
                args.AddRange(["--postgres", _server.Url(), "--postgres-table", "Robert'); DROP TABLE students;--"]);
                break;
            case "no-grant":
                // The table exists and the role may log in, but it was granted nothing on the table.
                await _server.PsqlFileAsync(Deploy.Repository.PathOf("deploy/postgres/setup.sql"));
                environment["LEADER_SIDECAR_POSTGRES_PASSWORD"] = "right-secret";
                args.AddRange(["--postgres", _server.Url("app")]);
                break;
            case "no-table":
                args.AddRange(["--postgres", _server.Url(), "--postgres-create-table=false"]);
                break;
            default:
                environment["LEADER_SIDECAR_POSTGRES_PASSWORD"] = "wrong-secret";
                args.AddRange(["--postgres", _server.Url("app")]);
                break;
        }

        var (code, stdout, stderr) = await DaemonProcess.RunToExitAsync(environment, [.. args]);

        Assert.Equal(2, code);
        Assert.Contains(expected, stderr, StringComparison.Ordinal);
        Assert.Single(stderr.Trim().Split('\n'));
        Assert.DoesNotContain("secret", stdout + stderr, StringComparison.Ordinal);
    }

    private const string WatchConnected = "\"EventId\":8,";
    private const string WatchFailed = "\"EventId\":10,";
    private const string ListenSilent = "\"EventId\":800,";

    private static int Count(DaemonProcess daemon, string eventId) =>
        daemon.OutputLines.Count(l => l.Contains(eventId, StringComparison.Ordinal));

    /// <summary>Whether the daemon's last watch event (debug log) says it connected, rather than failed or ended.</summary>
    private static bool WatchIsUp(DaemonProcess daemon) =>
        daemon.OutputLines.LastOrDefault(l => l.Contains(WatchConnected, StringComparison.Ordinal) || l.Contains(WatchFailed, StringComparison.Ordinal) || l.Contains("\"EventId\":9,", StringComparison.Ordinal)) is { } last
        && last.Contains(WatchConnected, StringComparison.Ordinal);

    protected override string Url(string? user = null) => _server.Url(user ?? "postgres");

    protected override Task<string> SqlAsync(string sql) => _server.PsqlAsync(sql);

    protected override Task StopServerAsync() => _server.StopAsync();

    protected override Task RestartServerAsync() => _server.RestartAsync();

    protected override void PauseServer() => _server.Pause();

    protected override void ResumeServer() => _server.Resume();

    protected override async ValueTask DisposeServerAsync()
    {
        _server.Resume();
        await _server.DisposeAsync();
    }
}
