using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using LeaderSidecar.Tests.Stores.Etcd;
using static LeaderSidecar.Tests.EndToEnd.Timing;

namespace LeaderSidecar.Tests.EndToEnd;

/// <summary>
/// Real daemon processes on the etcd backend, against a real etcd (one member, a three-member
/// cluster, over https, with auth) started by the test. Every test that runs several daemons ends
/// by checking their logged role changes: at no instant did two of them say "leader", and terms
/// never went back.
/// </summary>
public sealed class EtcdBackendTests : IAsyncLifetime
{
    private const string Key = "/leader-sidecar/demo/app";
    private readonly TempDirectory _dir = new();
    private readonly DaemonGroup _group = new(["--lease-name", "app", "--namespace", "demo", .. FastTiming]);
    private readonly List<IAsyncDisposable> _servers = [];
    private EtcdTls? _tls;

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        await _group.DisposeAsync();
        foreach (var server in _servers)
        {
            await server.DisposeAsync();
        }

        _tls?.Dispose();
        _dir.Dispose();
    }

    [Fact]
    public async Task Two_daemons_elect_one_leader_and_hand_over_through_the_watch_on_sigterm()
    {
        var etcd = await EtcdAsync();
        var all = await StartAsync(etcd.Endpoint, "a", "b");
        var leader = await DaemonProcess.SingleLeaderAsync(all);
        var identity = (await leader.GetAsync("/status")).Body.GetProperty("identity").GetString();
        Assert.Equal(identity, (await RecordAsync(etcd)).GetProperty("holderIdentity").GetString());
        Assert.Contains(all[0].OutputLines, l => l.Contains($"etcd key {Key} at {etcd.Endpoint.GetLeftPart(UriPartial.Authority)}", StringComparison.Ordinal));

        var stopped = Stopwatch.StartNew();
        await _group.TerminateAsync(leader);
        var next = await DaemonProcess.SingleLeaderAsync(all.Where(d => d != leader).ToList());

        var record = await RecordAsync(etcd);
        Assert.Equal((await next.GetAsync("/status")).Body.GetProperty("identity").GetString(), record.GetProperty("holderIdentity").GetString());
        Assert.Equal(1, record.GetProperty("leaseTransitions").GetInt32());
        Assert.True(stopped.Elapsed < LeaseDuration, "the handover waited for expiry instead of the release");
        await _group.AssertOneLeaderAtATimeAsync();
    }

    [Theory]
    [InlineData(2, "SIGTERM")]
    [InlineData(3, "SIGTERM")]
    [InlineData(2, "SIGKILL")]
    [InlineData(3, "SIGKILL")]
    public async Task Leaders_stopped_one_after_another_hand_over_to_exactly_one_successor_with_a_higher_term(int daemons, string signal)
    {
        var etcd = await EtcdAsync();
        var remaining = await StartAsync(etcd.Endpoint.ToString(), [.. Enumerable.Range(0, daemons).Select(i => $"d{i}")]);
        var leader = await DaemonProcess.SingleLeaderAsync(remaining);
        var term = await DaemonGroup.TermAsync(leader);

        while (remaining.Count > 1)
        {
            if (signal == "SIGKILL")
            {
                // No release: the others wait the lease out.
                await _group.KillAsync(leader);
            }
            else
            {
                await _group.TerminateAsync(leader);
            }

            remaining.Remove(leader);
            leader = await DaemonProcess.SingleLeaderAsync(remaining);
            var next = await DaemonGroup.TermAsync(leader);
            Assert.True(next > term, $"the term went from {term} to {next}");
            term = next;
        }

        await _group.AssertOneLeaderAtATimeAsync();
    }

    [Fact]
    public async Task A_key_deleted_with_etcdctl_is_created_again_under_a_larger_uid()
    {
        var etcd = await EtcdAsync();
        var all = await StartAsync(etcd.Endpoint, "a", "b");
        await DaemonProcess.SingleLeaderAsync(all);
        var before = (await KeyAsync(etcd))!.Value;

        await etcd.EtcdctlAsync("del", Key);

        // etcd revisions only grow, so a key created again has a larger create_revision: the uid.
        await Poll.UntilAsync(async () => await KeyAsync(etcd) is { } now && now.CreateRevision > before.CreateRevision, Deadline, "the lease to be created again");
        var leader = await DaemonProcess.SingleLeaderAsync(all);
        var status = (await leader.GetAsync("/status")).Body;
        Assert.Equal((await KeyAsync(etcd))!.Value.CreateRevision.ToString(CultureInfo.InvariantCulture), status.GetProperty("leaseUid").GetString());
        await _group.AssertOneLeaderAtATimeAsync();
    }

    [Fact]
    public async Task A_record_naming_a_stranger_put_with_etcdctl_is_waited_out_for_its_lease_duration()
    {
        var etcd = await EtcdAsync();
        var all = await StartAsync(etcd.Endpoint, "a", "b");
        var term = await DaemonGroup.TermAsync(await DaemonProcess.SingleLeaderAsync(all));
        var now = DateTime.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss.ffffff'Z'", CultureInfo.InvariantCulture);
        var stranger = $$"""{"holderIdentity":"stranger","leaseDurationSeconds":5,"acquireTime":"{{now}}","renewTime":"{{now}}","leaseTransitions":{{term + 1}}}""";

        var edited = Stopwatch.StartNew();
        await etcd.EtcdctlAsync("put", Key, stranger);

        // The leader steps down at once (its renew loses the compare), and both follow the stranger.
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
    public async Task Garbage_put_with_etcdctl_is_an_invalid_record_nobody_claims_it_and_nothing_crashes()
    {
        var etcd = await EtcdAsync();
        var all = await StartAsync(etcd.Endpoint, "a", "b");
        await DaemonProcess.SingleLeaderAsync(all);

        await etcd.EtcdctlAsync("put", Key, "this is not a lease record");

        // Nobody can read a record, so nobody knows the holder or the term: the leader stops by its
        // renew deadline, and every daemon says UNKNOWN, logs why and counts it.
        await DaemonGroup.AllAsync(all, r => r == "UNKNOWN", Deadline, "every daemon to say UNKNOWN");

        // Past a lease duration of failed reads (one per retry period), still nobody overwrote it.
        var reads = (int)Math.Ceiling((LeaseDuration + RetryPeriod) / RetryPeriod);
        await Poll.UntilAsync(async () => (await Task.WhenAll(all.Select(d => DaemonGroup.FailedRequestsAsync(d, "get", "invalid")))).All(n => n >= reads), Deadline, $"{reads} invalid reads by each daemon");
        Assert.Equal("this is not a lease record", (await etcd.EtcdctlAsync("get", Key, "--print-value-only")).Trim());
        Assert.All(all, d => Assert.False(d.HasExited));
        Assert.All(all, d => Assert.Contains(d.OutputLines, l => l.Contains("not a lease record", StringComparison.Ordinal) && l.Contains("Invalid", StringComparison.Ordinal)));
        Assert.All(await Task.WhenAll(all.Select(d => d.RoleAsync())), r => Assert.Equal("UNKNOWN", r));

        // Deleting it is the way out: the lease is created again and someone leads.
        await etcd.EtcdctlAsync("del", Key);
        await DaemonProcess.SingleLeaderAsync(all);
        await _group.AssertOneLeaderAtATimeAsync();
    }

    [Fact]
    public async Task Etcd_killed_and_restarted_on_its_data_keeps_the_lease_and_a_leader_returns_within_a_lease_duration()
    {
        var etcd = await EtcdAsync();
        var all = await StartAsync(etcd.Endpoint, "a", "b");
        await DaemonProcess.SingleLeaderAsync(all);
        var uid = (await KeyAsync(etcd))!.Value.CreateRevision;

        await etcd.StopAsync();
        await DaemonGroup.AllAsync(all, r => r == "UNKNOWN", Deadline, "every daemon to say UNKNOWN while etcd is down");
        await etcd.RestartAsync();

        await DaemonGroup.LeaderWithinAsync(all, LeaseDuration + RetryPeriod, "after etcd came back");
        Assert.Equal(uid, (await KeyAsync(etcd))!.Value.CreateRevision);
        await _group.AssertOneLeaderAtATimeAsync();
    }

    [Fact]
    public async Task Etcd_paused_past_the_lease_duration_makes_the_leader_step_down_and_a_leader_returns_within_a_lease_duration()
    {
        var etcd = await EtcdAsync();
        var all = await StartAsync(etcd.Endpoint, "a", "b");
        await DaemonProcess.SingleLeaderAsync(all);

        etcd.Pause();
        var paused = Stopwatch.StartNew();
        await DaemonGroup.AllAsync(all, r => r != "LEADER", RenewDeadline + DaemonGroup.ObservationMargin, "the leader to step down by its renew deadline");
        await Poll.UntilAsync(() => Task.FromResult(paused.Elapsed > LeaseDuration + RetryPeriod), Deadline, "the pause to outlast the lease");
        etcd.Resume();

        await DaemonGroup.LeaderWithinAsync(all, LeaseDuration + RetryPeriod, "after etcd resumed");
        await _group.AssertOneLeaderAtATimeAsync();
    }

    [Fact]
    public async Task A_three_member_cluster_whose_raft_leader_is_killed_keeps_exactly_one_leader()
    {
        var cluster = await ClusterAsync();
        var all = await StartAsync(cluster.Endpoints, ["a", "b", "c"]);
        await DaemonProcess.SingleLeaderAsync(all);
        var raftLeader = await cluster.RaftLeaderAsync();

        await raftLeader.StopAsync();

        var survivor = await cluster.RaftLeaderAsync();
        Assert.NotSame(raftLeader, survivor);
        var renewedAt = (await KeyAsync(survivor))!.Value.ModRevision;
        await DaemonProcess.SingleLeaderAsync(all);

        // The leader renews through the surviving members: the record keeps changing.
        await Poll.UntilAsync(async () => (await KeyAsync(survivor))!.Value.ModRevision > renewedAt, Deadline, "a renew after the member was killed");
        await DaemonProcess.SingleLeaderAsync(all);
        await _group.AssertOneLeaderAtATimeAsync();
    }

    [Fact]
    public async Task Daemons_on_a_member_cut_off_from_the_quorum_stop_leading_and_stop_naming_a_holder()
    {
        // Both daemons talk to the first member only; the other two are then frozen, so that member
        // is alive and answers, but has no quorum and soon no raft leader.
        var cluster = await ClusterAsync();
        var isolated = cluster.Members[0];
        var all = await StartAsync(isolated.Endpoint, "a", "b");
        await DaemonProcess.SingleLeaderAsync(all);

        foreach (var member in cluster.Members.Skip(1))
        {
            member.Pause();
        }

        // Renews cannot reach a quorum, so the leader stops by its renew deadline.
        await DaemonGroup.AllAsync(all, r => r != "LEADER", RenewDeadline + DaemonGroup.ObservationMargin, "the leader to step down by its renew deadline");

        // The watches ask for a leader, so the member ends them once it has none, instead of
        // keeping them open and silent; the reads that follow fail, and nobody names a holder.
        await DaemonGroup.AllAsync(all, r => r == "UNKNOWN", Deadline, "every daemon to say UNKNOWN");

        foreach (var member in cluster.Members.Skip(1))
        {
            member.Resume();
        }

        await DaemonProcess.SingleLeaderAsync(all);
        await _group.AssertOneLeaderAtATimeAsync();
    }

    [Fact]
    public async Task Https_endpoints_with_the_ca_and_a_client_certificate_elect_and_hand_over()
    {
        var tls = Tls();
        var etcd = await Track(EtcdServer.StartTlsAsync(tls));
        var args = new[] { "--etcd-ca", tls.CaFile, "--etcd-cert", tls.ClientCertFile, "--etcd-key", tls.ClientKeyFile };
        var all = await StartAsync(etcd.Endpoint.ToString(), ["a", "b"], args);

        var leader = await DaemonProcess.SingleLeaderAsync(all);
        Assert.StartsWith("https://", etcd.Endpoint.ToString(), StringComparison.Ordinal);
        Assert.Equal((await leader.GetAsync("/status")).Body.GetProperty("identity").GetString(), (await RecordAsync(etcd)).GetProperty("holderIdentity").GetString());

        await _group.TerminateAsync(leader);
        await DaemonProcess.SingleLeaderAsync(all.Where(d => d != leader).ToList());
        await _group.AssertOneLeaderAtATimeAsync();
    }

    [Fact]
    public async Task Over_https_with_auth_on_the_client_certificate_names_the_etcd_user_and_no_password_is_needed()
    {
        var tls = Tls();
        var etcd = await Track(EtcdServer.StartTlsAsync(tls));
        await EtcdLeaseStoreTests.AddElectionUserAsync(etcd, EtcdTls.ClientCommonName, "never-used");
        await etcd.EnableAuthAsync();

        var all = await StartAsync(etcd.Endpoint.ToString(), ["a", "b"], ["--etcd-ca", tls.CaFile, "--etcd-cert", tls.ClientCertFile, "--etcd-key", tls.ClientKeyFile]);

        // Without a user from the certificate, etcd would refuse the token-less requests and the
        // daemons would stop at start-up.
        await DaemonProcess.SingleLeaderAsync(all);
        await _group.AssertOneLeaderAtATimeAsync();
    }

    [Fact]
    public async Task A_ca_that_did_not_sign_the_members_certificate_is_logged_and_retried_and_never_leads()
    {
        var tls = Tls();
        var etcd = await Track(EtcdServer.StartTlsAsync(tls));

        var daemon = await StartOneAsync(etcd.Endpoint.ToString(), "a", ["--etcd-ca", tls.OtherCaFile, "--etcd-cert", tls.ClientCertFile, "--etcd-key", tls.ClientKeyFile]);

        // Not a start-up error: a member's certificate can be replaced while the sidecar runs.
        await Poll.UntilAsync(async () => await DaemonGroup.FailedRequestsAsync(daemon, "get", "unavailable") >= 3, Deadline, "three failed, retried reads");
        Assert.Contains(daemon.OutputLines, l => l.Contains("First read of the lease failed", StringComparison.Ordinal) && l.Contains("TLS handshake with etcd failed: the certificate of the member (CN=kube-apiserver, issued by CN=lease-api-test-ca) is not signed by a CA in --etcd-ca", StringComparison.Ordinal));
        Assert.Equal("UNKNOWN", await daemon.RoleAsync());
        Assert.False(daemon.HasExited);
    }

    [Fact]
    public async Task With_auth_the_password_from_the_environment_or_from_a_file_works_and_is_never_logged()
    {
        const string secret = "s3cret-Pa55word";
        var etcd = await EtcdAsync();
        await EtcdLeaseStoreTests.AddElectionUserAsync(etcd, "app", secret);
        await etcd.EnableAuthAsync();
        var passwordFile = _dir.File("password");
        await File.WriteAllTextAsync(passwordFile, secret + "\n");

        var fromEnvironment = await StartOneAsync(etcd.Endpoint.ToString(), "env", ["--etcd-user", "app", "--log-level", "trace"], new Dictionary<string, string> { ["LEADER_SIDECAR_ETCD_PASSWORD"] = secret });
        var fromFile = await StartOneAsync(etcd.Endpoint.ToString(), "file", ["--etcd-user", "app", "--etcd-password-file", passwordFile, "--log-level", "trace"]);
        var all = new List<DaemonProcess> { fromEnvironment, fromFile };

        // Each leads in turn, so both wrote the lease with their credentials.
        var leader = await DaemonProcess.SingleLeaderAsync(all);
        await _group.TerminateAsync(leader);
        await DaemonProcess.SingleLeaderAsync(all.Where(d => d != leader).ToList());

        Assert.All(all, d => Assert.DoesNotContain(secret, d.Output, StringComparison.Ordinal));
        await _group.AssertOneLeaderAtATimeAsync();
    }

    [Theory]
    [InlineData("environment")]
    [InlineData("file")]
    public async Task Rejected_credentials_are_one_line_and_exit_2_and_the_password_is_never_printed(string source)
    {
        var etcd = await EtcdAsync();
        await EtcdLeaseStoreTests.AddElectionUserAsync(etcd, "app", "right-secret");
        await etcd.EnableAuthAsync();
        var environment = new Dictionary<string, string>();
        var args = new List<string> { "--lease-name", "app", "--namespace", "demo", "--etcd-endpoints", etcd.Endpoint.ToString(), "--etcd-user", "app", "--http-address", "127.0.0.1:0", "--grpc-address", "127.0.0.1:0", "--log-level", "error" };
        if (source == "file")
        {
            await File.WriteAllTextAsync(_dir.File("password"), "wrong-secret\n");
            args.AddRange(["--etcd-password-file", _dir.File("password")]);
        }
        else
        {
            environment["LEADER_SIDECAR_ETCD_PASSWORD"] = "wrong-secret";
        }

        var (code, stdout, stderr) = await DaemonProcess.RunToExitAsync(environment, [.. args]);

        Assert.Equal(2, code);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("credentials rejected", line, StringComparison.Ordinal);
        Assert.DoesNotContain("wrong-secret", stdout + stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_user_without_a_role_on_the_key_is_one_line_and_exit_2()
    {
        var etcd = await EtcdAsync();
        await etcd.EtcdctlAsync("user", "add", "nobody:nobody-secret");
        await etcd.EnableAuthAsync();

        var (code, stdout, stderr) = await DaemonProcess.RunToExitAsync(
            new Dictionary<string, string> { ["LEADER_SIDECAR_ETCD_PASSWORD"] = "nobody-secret" },
            "--lease-name", "app", "--namespace", "demo", "--etcd-endpoints", etcd.Endpoint.ToString(), "--etcd-user", "nobody", "--http-address", "127.0.0.1:0", "--grpc-address", "127.0.0.1:0", "--log-level", "error");

        Assert.Equal(2, code);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("access denied", line, StringComparison.Ordinal);
        Assert.DoesNotContain("nobody-secret", stdout + stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_etcd_that_is_down_at_start_up_is_waited_for()
    {
        var etcd = await EtcdAsync();
        await etcd.StopAsync();
        var daemon = await StartOneAsync(etcd.Endpoint.ToString(), "a", []);
        await Poll.UntilAsync(() => Task.FromResult(daemon.Output.Contains("First read of the lease failed", StringComparison.Ordinal)), Deadline, "the failed first read to be logged");
        Assert.False(daemon.HasExited);

        await etcd.RestartAsync();

        await Poll.UntilAsync(async () => await daemon.RoleAsync() == "LEADER", Deadline, "the daemon to lead once etcd is back");
    }

    [Fact]
    public async Task A_malformed_endpoint_is_one_line_and_exit_2()
    {
        var (code, stdout, stderr) = await DaemonProcess.RunToExitAsync("--lease-name", "app", "--etcd-endpoints", "127.0.0.1:2379");

        Assert.Equal(2, code);
        Assert.Empty(stdout);
        Assert.Single(stderr.Trim().Split('\n'));
        Assert.Contains("etcd endpoint", stderr, StringComparison.Ordinal);
    }

    private async Task<EtcdServer> EtcdAsync() => await Track(EtcdServer.StartAsync());

    private async Task<EtcdCluster> ClusterAsync() => await Track(EtcdCluster.StartAsync());

    private async Task<T> Track<T>(Task<T> starting)
        where T : IAsyncDisposable
    {
        var server = await starting;
        _servers.Add(server);
        return server;
    }

    private EtcdTls Tls() => _tls ??= new EtcdTls();

    private Task<List<DaemonProcess>> StartAsync(Uri endpoint, params string[] identities) =>
        StartAsync(endpoint.ToString(), identities);

    /// <summary>Daemons of the given identities on <paramref name="endpoints"/> (comma-separated), started together.</summary>
    private async Task<List<DaemonProcess>> StartAsync(string endpoints, string[] identities, string[]? extra = null) =>
        [.. await Task.WhenAll(identities.Select(id => StartOneAsync(endpoints, id, extra ?? [])))];

    /// <summary>One daemon on <paramref name="endpoints"/> (comma-separated), with <paramref name="extra"/> arguments.</summary>
    private Task<DaemonProcess> StartOneAsync(string endpoints, string identity, string[] extra, IReadOnlyDictionary<string, string>? environment = null) =>
        _group.StartOneAsync(identity, ["--etcd-endpoints", endpoints, .. extra], environment);

    private static async Task<JsonElement> RecordAsync(EtcdServer etcd) =>
        JsonDocument.Parse(await etcd.EtcdctlAsync("get", Key, "--print-value-only")).RootElement.Clone();

    /// <summary>The key's revisions as etcd reports them (<c>etcdctl get -w json</c>); null when it does not exist.</summary>
    private static async Task<(long CreateRevision, long ModRevision)?> KeyAsync(EtcdServer etcd)
    {
        using var answer = JsonDocument.Parse(await etcd.EtcdctlAsync("get", Key, "-w", "json"));
        return answer.RootElement.TryGetProperty("kvs", out var kvs) && kvs.GetArrayLength() > 0
            ? (kvs[0].GetProperty("create_revision").GetInt64(), kvs[0].GetProperty("mod_revision").GetInt64())
            : null;
    }
}
