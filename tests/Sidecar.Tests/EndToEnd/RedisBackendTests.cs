using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography.X509Certificates;
using LeaderSidecar.Testing.LeaseApi.Tls;
using LeaderSidecar.Tests.Stores;
using LeaderSidecar.Tests.Stores.Redis;
using static LeaderSidecar.Tests.EndToEnd.Timing;

namespace LeaderSidecar.Tests.EndToEnd;

/// <summary>
/// Real daemon processes on the Redis backend, against a real redis-server started by the test,
/// edited by hand with <c>redis-cli</c> as an operator would. Every test that runs several daemons
/// ends by checking their logged role changes: at no instant did two of them say "leader", and
/// terms never went back.
/// </summary>
public sealed class RedisBackendTests : IAsyncLifetime
{
    private const string Key = RedisLeaseStoreTests.Key;


    // A retry period far longer than a published message takes to arrive or the watch's own
    // re-read: a follower that learned of a release only by polling would take up to one.
    private static readonly string[] SlowPollTiming = ["--lease-duration", "6s", "--renew-deadline", "4s", "--retry-period", "3s", "--log-level", "debug"];
    private const string WatchConnected = "\"EventId\":8,";
    private const string ScriptLoaded = "\"EventId\":901,";
    private readonly TempDirectory _dir = new();
    private readonly List<RedisServer> _servers = [];
    private DaemonGroup _group = null!;
    private RedisServer _redis = null!;

    public async Task InitializeAsync()
    {
        _redis = await StartServerAsync();
        _group = Group(_redis.Url);
    }

    public async Task DisposeAsync()
    {
        await _group.DisposeAsync();
        foreach (var server in _servers)
        {
            await server.DisposeAsync();
        }

        _dir.Dispose();
    }

    [Fact]
    public async Task Two_daemons_elect_one_leader_and_hand_over_through_the_published_release_on_sigterm()
    {
        var all = await _group.StartAsync("a", "b");
        var leader = await DaemonProcess.SingleLeaderAsync(all);
        Assert.Equal(await IdentityAsync(leader), (await _redis.HashAsync(Key))["holderIdentity"]);
        Assert.Contains(all[0].OutputLines, l => l.Contains($"redis key {Key} at redis://127.0.0.1:{_redis.Port}/0", StringComparison.Ordinal));

        var stopped = Stopwatch.StartNew();
        await _group.TerminateAsync(leader);
        var next = await DaemonProcess.SingleLeaderAsync(all.Where(d => d != leader).ToList());

        var hash = await _redis.HashAsync(Key);
        Assert.Equal(await IdentityAsync(next), hash["holderIdentity"]);
        Assert.Equal("1", hash["leaseTransitions"]);
        Assert.True(stopped.Elapsed < LeaseDuration, "the handover waited for expiry instead of the release");
        await _group.AssertOneLeaderAtATimeAsync();
    }

    [Fact]
    public async Task After_a_sigkill_the_other_daemon_takes_over_once_the_lease_ran_out_with_a_higher_term()
    {
        var all = await _group.StartAsync("a", "b");
        var leader = await DaemonProcess.SingleLeaderAsync(all);
        var term = await DaemonGroup.TermAsync(leader);

        await _group.KillAsync(leader);

        var next = await DaemonProcess.SingleLeaderAsync(all.Where(d => d != leader).ToList());
        Assert.Equal(term + 1, await DaemonGroup.TermAsync(next));
        await _group.AssertOneLeaderAtATimeAsync();
    }

    [Fact]
    public async Task A_key_deleted_with_redis_cli_is_created_again_under_a_new_uid()
    {
        var all = await _group.StartAsync("a", "b");
        await DaemonProcess.SingleLeaderAsync(all);
        var before = (await _redis.HashAsync(Key))["uid"];

        // A hand DEL publishes nothing: the leader finds it at its next renew, followers at their next read.
        await _redis.ExpectAsync("1", "DEL", Key);

        await Poll.UntilAsync(async () => (await _redis.HashAsync(Key)).GetValueOrDefault("uid") is { } uid && uid != before, Deadline, "the lease to be created again");
        var leader = await DaemonProcess.SingleLeaderAsync(all);
        var hash = await _redis.HashAsync(Key);
        Assert.Equal(hash["uid"], (await leader.GetAsync("/status")).Body.GetProperty("leaseUid").GetString());
        Assert.Equal(await IdentityAsync(leader), hash["holderIdentity"]);
        await _group.AssertOneLeaderAtATimeAsync();
    }

    [Fact]
    public async Task A_stranger_written_with_hset_is_waited_out_for_its_lease_duration_though_the_version_did_not_move()
    {
        var all = await _group.StartAsync("a", "b");
        var term = await DaemonGroup.TermAsync(await DaemonProcess.SingleLeaderAsync(all));
        var now = DateTime.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss.ffffff'Z'", CultureInfo.InvariantCulture);

        var edited = Stopwatch.StartNew();
        await _redis.CliAsync(
            "HSET", Key, "holderIdentity", "stranger", "leaseDurationSeconds", "5", "acquireTime", now, "renewTime", now,
            "leaseTransitions", (term + 1).ToString(CultureInfo.InvariantCulture));

        // The leader's next renew loses the compare (the fingerprint covers every field), and both follow the stranger.
        await Poll.UntilAsync(
            async () => (await Task.WhenAll(all.Select(d => d.GetAsync("/status")))).All(s => s.Body.GetProperty("role").GetString() == "FOLLOWER" && s.Body.GetProperty("holder").GetString() == "stranger"),
            Deadline,
            "both daemons to follow the stranger");
        var leader = await DaemonProcess.SingleLeaderAsync(all);

        // A lower bound, not a timing: taking over earlier would overlap the stranger's claim.
        Assert.True(edited.Elapsed >= TimeSpan.FromSeconds(5), $"the stranger's 5 s claim was taken after {edited.Elapsed.TotalSeconds:0.0} s");
        Assert.Equal(term + 2, await DaemonGroup.TermAsync(leader));
        await _group.AssertOneLeaderAtATimeAsync();
    }

    [Fact]
    public async Task A_string_set_over_the_key_is_an_invalid_lease_nobody_claims_it_and_nothing_crashes()
    {
        var all = await _group.StartAsync("a", "b");
        await DaemonProcess.SingleLeaderAsync(all);

        await _redis.ExpectAsync("OK", "SET", Key, "this is not a lease record");

        // Nobody can read a record (WRONGTYPE), so nobody knows the holder or the term: the leader
        // stops by its renew deadline, and every daemon says UNKNOWN, logs why and counts it.
        await DaemonGroup.AllAsync(all, r => r == "UNKNOWN", Deadline, "every daemon to say UNKNOWN");
        var reads = (int)Math.Ceiling((LeaseDuration + RetryPeriod) / RetryPeriod);
        await Poll.UntilAsync(async () => (await Task.WhenAll(all.Select(d => DaemonGroup.FailedRequestsAsync(d, "get", "invalid")))).All(n => n >= reads), Deadline, $"{reads} invalid reads by each daemon");
        Assert.Equal("this is not a lease record", (await _redis.CliAsync("GET", Key)).Trim());
        Assert.All(all, d => Assert.False(d.HasExited));
        Assert.All(all, d => Assert.Contains(d.OutputLines, l => l.Contains("WRONGTYPE", StringComparison.Ordinal) && l.Contains("Invalid", StringComparison.Ordinal)));

        // Deleting it is the way out: the lease is created again and someone leads.
        await _redis.ExpectAsync("1", "DEL", Key);
        await DaemonProcess.SingleLeaderAsync(all);
        await _group.AssertOneLeaderAtATimeAsync();
    }

    [Fact]
    public async Task Redis_killed_and_restarted_on_its_append_only_file_keeps_the_lease_and_a_leader_returns_within_a_lease_duration()
    {
        var all = await _group.StartAsync("a", "b");
        await DaemonProcess.SingleLeaderAsync(all);
        var uid = (await _redis.HashAsync(Key))["uid"];

        await _redis.StopAsync();
        await DaemonGroup.AllAsync(all, r => r == "UNKNOWN", Deadline, "every daemon to say UNKNOWN while Redis is down");
        await _redis.RestartAsync();

        await DaemonGroup.LeaderWithinAsync(all, LeaseDuration + RetryPeriod, "after Redis came back");
        Assert.Equal(uid, (await _redis.HashAsync(Key))["uid"]);
        await _group.AssertOneLeaderAtATimeAsync();
    }

    [Fact]
    public async Task Redis_paused_past_the_lease_duration_makes_the_leader_step_down_by_its_renew_deadline()
    {
        var all = await _group.StartAsync("a", "b");
        await DaemonProcess.SingleLeaderAsync(all);

        _redis.Pause();
        var paused = Stopwatch.StartNew();
        await DaemonGroup.AllAsync(all, r => r != "LEADER", RenewDeadline + DaemonGroup.ObservationMargin, "the leader to step down by its renew deadline");
        await Poll.UntilAsync(() => Task.FromResult(paused.Elapsed > LeaseDuration + RetryPeriod), Deadline, "the pause to outlast the lease");
        _redis.Resume();

        await DaemonGroup.LeaderWithinAsync(all, LeaseDuration + RetryPeriod, "after Redis resumed");
        await _group.AssertOneLeaderAtATimeAsync();
    }

    [Fact]
    public async Task Subscribers_killed_by_client_kill_resubscribe_keep_the_data_and_a_release_still_arrives_as_a_published_message()
    {
        await using var group = new DaemonGroup(["--lease-name", "app", "--namespace", "demo", "--redis", _redis.Url, .. SlowPollTiming]);
        var all = await group.StartAsync("a", "b");
        var leader = await DaemonProcess.SingleLeaderAsync(all);
        var follower = all.Single(d => d != leader);
        await Poll.UntilAsync(() => Task.FromResult(Count(follower, WatchConnected) > 0), Deadline, "the follower to watch");
        var watches = Count(follower, WatchConnected);
        var uid = (await _redis.HashAsync(Key))["uid"];

        var logged = follower.OutputLines.Count;
        Assert.NotEqual("0", (await _redis.KillSubscribersAsync()).Trim());

        await Poll.UntilAsync(() => Task.FromResult(Count(follower, WatchConnected) > watches), Deadline, "the follower to subscribe again");
        Assert.Equal(uid, (await _redis.HashAsync(Key))["uid"]);
        Assert.Same(leader, await DaemonProcess.SingleLeaderAsync(all));

        // Measured from the leader's logged release to the follower's logged acquisition, so the
        // leader's own shutdown and this test's polling do not count. A published message takes
        // milliseconds; a poll comes every retry period (3 s), the watch's own read after two.
        var tookOver = await group.TerminateAndTimeTakeOverAsync(leader, follower);
        Assert.True(
            tookOver < TimeSpan.FromSeconds(1),
            $"the follower took over {tookOver.TotalSeconds:0.0} s after the release instead of acting on the published message; its log since the kill:\n{string.Join('\n', follower.OutputLines.Skip(logged))}\nthe leader's:\n{string.Join('\n', leader.OutputLines.TakeLast(15))}");
        await group.AssertOneLeaderAtATimeAsync();
    }

    [Theory]
    [InlineData("CLIENT PAUSE")]
    [InlineData("DEBUG SLEEP")]
    public async Task Redis_blocked_past_the_lease_duration_makes_the_leader_step_down_by_its_renew_deadline(string how)
    {
        var all = await _group.StartAsync("a", "b");
        await DaemonProcess.SingleLeaderAsync(all);
        var blockedFor = LeaseDuration + RetryPeriod + TimeSpan.FromMilliseconds(500);

        var blocked = Stopwatch.StartNew();
        if (how == "DEBUG SLEEP")
        {
            await _redis.SleepAsync(blockedFor.TotalSeconds);
        }
        else
        {
            await _redis.ExpectAsync("OK", "CLIENT", "PAUSE", blockedFor.TotalMilliseconds.ToString(CultureInfo.InvariantCulture), "ALL");
        }

        await DaemonGroup.AllAsync(all, r => r != "LEADER", RenewDeadline + DaemonGroup.ObservationMargin, "the leader to step down by its renew deadline");
        await Poll.UntilAsync(() => Task.FromResult(blocked.Elapsed > blockedFor), Deadline, "the server to answer again");

        await DaemonGroup.LeaderWithinAsync(all, LeaseDuration + RetryPeriod, $"after {how} ended");
        Assert.DoesNotContain(all, d => d.HasExited);
        await _group.AssertOneLeaderAtATimeAsync();
    }

    [Fact]
    public async Task After_script_flush_the_next_renew_loads_the_script_again_and_after_flushall_the_lease_is_created_again()
    {
        var all = await _group.StartAsync("a", "b");
        var leader = await DaemonProcess.SingleLeaderAsync(all);
        var term = await DaemonGroup.TermAsync(leader);
        await Poll.UntilAsync(() => Task.FromResult(Count(leader, ScriptLoaded) > 0), Deadline, "the leader to load its script");
        var loads = Count(leader, ScriptLoaded);

        // SCRIPT FLUSH: the renew's EVALSHA answers NOSCRIPT; the script is loaded again and the renew goes through.
        await _redis.ScriptFlushAsync();
        await Poll.UntilAsync(() => Task.FromResult(Count(leader, ScriptLoaded) > loads), Deadline, "the leader to load its script again");
        var renewed = (await _redis.HashAsync(Key))["renewTime"];
        await Poll.UntilAsync(async () => (await _redis.HashAsync(Key))["renewTime"] != renewed, Deadline, "a renew after the flush");
        Assert.Equal(term, await DaemonGroup.TermAsync(await DaemonProcess.SingleLeaderAsync(all)));
        Assert.Same(leader, await DaemonProcess.SingleLeaderAsync(all));

        // FLUSHALL: the key is gone, as after a DEL; the lease is created again under a new uid.
        var uid = (await _redis.HashAsync(Key))["uid"];
        await _redis.ExpectAsync("OK", "FLUSHALL");
        await Poll.UntilAsync(async () => (await _redis.HashAsync(Key)).GetValueOrDefault("uid") is { } now && now != uid, Deadline, "the lease to be created again");
        var next = await DaemonProcess.SingleLeaderAsync(all);
        Assert.Equal(await IdentityAsync(next), (await _redis.HashAsync(Key))["holderIdentity"]);
        await _group.AssertOneLeaderAtATimeAsync();
    }

    [Fact]
    public async Task With_tls_auth_clients_a_daemon_presenting_its_certificate_elects_and_one_without_is_refused_and_logs_why()
    {
        using var certificates = TestCertificates.Create(TimeProvider.System);
        using var client = certificates.IssueClient("leader-sidecar");
        await File.WriteAllTextAsync(_dir.File("ca.pem"), certificates.Authority.ExportCertificatePem());
        await File.WriteAllTextAsync(_dir.File("server.pem"), certificates.Server.ExportCertificatePem());
        await File.WriteAllTextAsync(_dir.File("server-key.pem"), certificates.Server.GetECDsaPrivateKey()!.ExportPkcs8PrivateKeyPem());
        await File.WriteAllTextAsync(_dir.File("client.pem"), client.ExportCertificatePem());
        await File.WriteAllTextAsync(_dir.File("client-key.pem"), client.GetECDsaPrivateKey()!.ExportPkcs8PrivateKeyPem());
        var tlsPort = ServerProcess.FreePort();
        var server = await StartServerAsync(
            "--tls-port", tlsPort.ToString(CultureInfo.InvariantCulture), "--tls-cert-file", _dir.File("server.pem"), "--tls-key-file", _dir.File("server-key.pem"),
            "--tls-ca-cert-file", _dir.File("ca.pem"), "--tls-auth-clients", "yes");

        // Without a certificate: the server ends the connection after the handshake; logged, retried, never leading.
        await using var refused = Group($"rediss://127.0.0.1:{tlsPort}", "--redis-ca", _dir.File("ca.pem"));
        var stranger = await refused.StartOneAsync("stranger");
        const string RequestFailed = "\"EventId\":7,";
        await Poll.UntilAsync(() => Task.FromResult(Count(stranger, RequestFailed) >= 2), Deadline, "the refused requests to be logged");
        var refusal = stranger.OutputLines.Last(l => l.Contains(RequestFailed, StringComparison.Ordinal));
        Assert.True(refusal.Contains("failed (Unavailable)", StringComparison.Ordinal), refusal);

        await using var group = Group($"rediss://127.0.0.1:{tlsPort}", "--redis-ca", _dir.File("ca.pem"), "--redis-cert", _dir.File("client.pem"), "--redis-key", _dir.File("client-key.pem"));
        var all = await group.StartAsync("a", "b");
        var leader = await DaemonProcess.SingleLeaderAsync(all);
        Assert.Equal(await IdentityAsync(leader), (await server.HashAsync(Key))["holderIdentity"]);

        Assert.NotEqual("LEADER", await stranger.RoleAsync());
        Assert.False(stranger.HasExited);
        Assert.False(DaemonGroup.HasLed(stranger), "a daemon without a client certificate led");
        await group.AssertOneLeaderAtATimeAsync();
    }

    [Fact]
    public async Task A_redis_that_is_down_at_start_up_is_waited_for()
    {
        await _redis.StopAsync();
        var daemon = await _group.StartOneAsync("a");
        await Poll.UntilAsync(() => Task.FromResult(daemon.Output.Contains("First read of the lease failed", StringComparison.Ordinal)), Deadline, "the failed first read to be logged");
        Assert.False(daemon.HasExited);

        await _redis.RestartAsync();

        await Poll.UntilAsync(async () => await daemon.RoleAsync() == "LEADER", Deadline, "the daemon to lead once Redis is back");
    }

    [Fact]
    public async Task With_min_replicas_and_no_replica_nobody_leads_on_unconfirmed_writes_until_a_replica_acknowledges()
    {
        var daemon = await _group.StartOneAsync("a", ["--redis-min-replicas", "1"]);

        // Each write lands on the primary but is not acknowledged by a replica: failed, logged, counted.
        await Poll.UntilAsync(async () => await DaemonGroup.FailedRequestsAsync(daemon, "update", "unavailable") + await DaemonGroup.FailedRequestsAsync(daemon, "create", "unavailable") >= 3, Deadline, "three unconfirmed writes");
        Assert.Contains(daemon.OutputLines, l => l.Contains("\"EventId\":900,", StringComparison.Ordinal) && l.Contains("not confirmed", StringComparison.Ordinal));
        Assert.Equal("a", (await _redis.HashAsync(Key))["holderIdentity"]);
        Assert.False(DaemonGroup.HasLed(daemon), "the daemon led on a write no replica acknowledged");

        _servers.Add(await _redis.StartReplicaAsync());

        await Poll.UntilAsync(async () => await daemon.RoleAsync() == "LEADER", Deadline, "the daemon to lead once a replica acknowledges");
    }

    [Fact]
    public async Task The_documented_acl_user_with_its_password_in_a_file_elects_and_hands_over_and_the_password_is_never_logged()
    {
        const string secret = "s3cret-Pa55word";
        await _redis.AddUserAsync("leader-sidecar", secret, RedisLeaseStoreTests.DocumentedAclRules());
        await File.WriteAllTextAsync(_dir.File("password"), secret + "\n");
        await using var group = Group($"redis://leader-sidecar@127.0.0.1:{_redis.Port}/0", "--redis-password-file", _dir.File("password"), "--log-level", "trace");

        var all = await group.StartAsync("a", "b");
        var leader = await DaemonProcess.SingleLeaderAsync(all);
        await group.TerminateAsync(leader);
        await DaemonProcess.SingleLeaderAsync(all.Where(d => d != leader).ToList());

        Assert.All(all, d => Assert.DoesNotContain(secret, d.Output, StringComparison.Ordinal));
        await group.AssertOneLeaderAtATimeAsync();
    }

    [Fact]
    public async Task Over_rediss_with_a_private_ca_two_daemons_elect_and_hand_over()
    {
        using var certificates = TestCertificates.Create(TimeProvider.System);
        await File.WriteAllTextAsync(_dir.File("ca.pem"), certificates.Authority.ExportCertificatePem());
        await File.WriteAllTextAsync(_dir.File("server.pem"), certificates.Server.ExportCertificatePem());
        await File.WriteAllTextAsync(_dir.File("server-key.pem"), certificates.Server.GetECDsaPrivateKey()!.ExportPkcs8PrivateKeyPem());
        var tlsPort = ServerProcess.FreePort();
        var server = await StartServerAsync(
            "--tls-port", tlsPort.ToString(CultureInfo.InvariantCulture), "--tls-cert-file", _dir.File("server.pem"), "--tls-key-file", _dir.File("server-key.pem"),
            "--tls-ca-cert-file", _dir.File("ca.pem"), "--tls-auth-clients", "no");
        await using var group = Group($"rediss://127.0.0.1:{tlsPort}", "--redis-ca", _dir.File("ca.pem"));

        var all = await group.StartAsync("a", "b");
        var leader = await DaemonProcess.SingleLeaderAsync(all);
        Assert.Equal(await IdentityAsync(leader), (await server.HashAsync(Key))["holderIdentity"]);
        await group.TerminateAsync(leader);
        await DaemonProcess.SingleLeaderAsync(all.Where(d => d != leader).ToList());
        await group.AssertOneLeaderAtATimeAsync();
    }

    [Theory]
    [InlineData("environment")]
    [InlineData("file")]
    public async Task Rejected_credentials_are_one_line_and_exit_2_and_the_password_is_never_printed(string source)
    {
        await _redis.RequirePasswordAsync("right-secret");
        var environment = new Dictionary<string, string>();
        var args = new List<string> { "--lease-name", "app", "--namespace", "demo", "--redis", _redis.Url, "--http-address", "127.0.0.1:0", "--grpc-address", "127.0.0.1:0", "--log-level", "error" };
        if (source == "file")
        {
            await File.WriteAllTextAsync(_dir.File("password"), "wrong-secret\n");
            args.AddRange(["--redis-password-file", _dir.File("password")]);
        }
        else
        {
            environment["LEADER_SIDECAR_REDIS_PASSWORD"] = "wrong-secret";
        }

        var (code, stdout, stderr) = await DaemonProcess.RunToExitAsync(environment, [.. args]);

        Assert.Equal(2, code);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("credentials rejected", line, StringComparison.Ordinal);
        Assert.Contains("WRONGPASS", line, StringComparison.Ordinal);
        Assert.DoesNotContain("wrong-secret", stdout + stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_user_the_acl_keeps_off_the_key_is_one_line_and_exit_2()
    {
        await _redis.AddUserAsync("nobody", "nobody-secret", "~other:*", "+@all");

        var (code, stdout, stderr) = await DaemonProcess.RunToExitAsync(
            new Dictionary<string, string> { ["LEADER_SIDECAR_REDIS_PASSWORD"] = "nobody-secret" },
            "--lease-name", "app", "--namespace", "demo", "--redis", $"redis://nobody@127.0.0.1:{_redis.Port}", "--http-address", "127.0.0.1:0", "--grpc-address", "127.0.0.1:0", "--log-level", "error");

        Assert.Equal(2, code);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("access denied", line, StringComparison.Ordinal);
        Assert.Contains("NOPERM", line, StringComparison.Ordinal);
        Assert.DoesNotContain("nobody-secret", stdout + stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("redis://app:s3cret@127.0.0.1:6379/0", "must not carry a password")]
    [InlineData("127.0.0.1:6379", "Redis URL")]
    [InlineData("redis://127.0.0.1:6379/zero", "Redis URL")]
    public async Task A_bad_url_is_one_line_and_exit_2_and_never_shows_a_password(string url, string problem)
    {
        var (code, stdout, stderr) = await DaemonProcess.RunToExitAsync("--lease-name", "app", "--redis", url);

        Assert.Equal(2, code);
        Assert.Empty(stdout);
        var line = Assert.Single(stderr.Trim().Split('\n'));
        Assert.Contains(problem, line, StringComparison.Ordinal);
        Assert.DoesNotContain("s3cret", line, StringComparison.Ordinal);
    }

    private static async Task<string?> IdentityAsync(DaemonProcess daemon) =>
        (await daemon.GetAsync("/status")).Body.GetProperty("identity").GetString();

    private static int Count(DaemonProcess daemon, string eventId) =>
        daemon.OutputLines.Count(l => l.Contains(eventId, StringComparison.Ordinal));

    private static DaemonGroup Group(string url, params string[] extra) =>
        new(["--lease-name", "app", "--namespace", "demo", "--redis", url, .. FastTiming, .. extra]);

    private async Task<RedisServer> StartServerAsync(params string[] extraArgs)
    {
        var server = await RedisServer.StartAsync(extraArgs);
        _servers.Add(server);
        return server;
    }
}
