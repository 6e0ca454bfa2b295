using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using LeaderSidecar.Testing.LeaseApi;
using LeaderSidecar.Testing.LeaseApi.Auth;
using LeaderSidecar.Testing.LeaseApi.Faults;
using static LeaderSidecar.Tests.EndToEnd.Timing;

namespace LeaderSidecar.Tests.EndToEnd;

/// <summary>
/// Real daemon processes on the Kubernetes backend against the Lease API test server, each with
/// its own least-privilege token, as in a cluster.
/// </summary>
public sealed class KubernetesBackendTests : IAsyncLifetime
{
    private const string Namespace = "demo";
    private const string Name = "app";
    private readonly TempDirectory _dir = new();
    private readonly List<DaemonProcess> _daemons = [];
    private LeaseApiServer _server = null!;

    public async Task InitializeAsync()
    {
        _server = await LeaseApiServer.StartAsync(new LeaseApiServerOptions { UseTls = true });
    }

    [Fact]
    public async Task Daemons_elect_one_leader_and_hand_over_through_the_watch_on_sigterm()
    {
        var all = await StartAsync([], "a", "b", "c");
        var leader = await DaemonProcess.SingleLeaderAsync(all);
        var holder = _server.Store.Get(Namespace, Name)!.Spec.HolderIdentity;
        Assert.Equal(holder, (await leader.GetAsync("/status")).Body.GetProperty("identity").GetString());

        var stopped = Stopwatch.StartNew();
        leader.Terminate();
        Assert.Equal(0, await leader.WaitForExitAsync(TimeSpan.FromSeconds(15)));
        var next = await DaemonProcess.SingleLeaderAsync(all.Where(d => d != leader).ToList());

        var lease = _server.Store.Get(Namespace, Name)!;
        Assert.Equal(1, lease.Spec.LeaseTransitions);
        Assert.Equal((await next.GetAsync("/status")).Body.GetProperty("identity").GetString(), lease.Spec.HolderIdentity);
        Assert.True(stopped.Elapsed < TimeSpan.FromSeconds(15), "the handover waited for expiry instead of the release");
    }

    [Fact]
    public async Task A_client_go_candidate_and_the_daemon_hand_over_to_each_other_both_ways()
    {
        // The Go side is played by hand with the exact requests client-go's LeaseLock sends.
        _server.Tokens.Set("token-go", new ApiUser("system:serviceaccount:demo:go", LeaseRule.ForElection(Namespace, Name)));
        using var go = _server.CreateClient("token-go");
        var leases = $"apis/coordination.k8s.io/v1/namespaces/{Namespace}/leases";
        var now = MicroTime();
        using (var created = await go.PostAsync(leases, Json($$$"""{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"{{{Name}}}","namespace":"{{{Namespace}}}"},"spec":{"holderIdentity":"go-candidate","leaseDurationSeconds":15,"acquireTime":"{{{now}}}","renewTime":"{{{now}}}","leaseTransitions":0}}""")))
        {
            Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        }

        var sidecar = (await StartAsync([], "sidecar"))[0];
        await Poll.UntilAsync(
            async () => (await sidecar.GetAsync("/status")).Body.GetProperty("holder").GetString() == "go-candidate",
            Deadline,
            "the sidecar follows the Go candidate");
        Assert.Equal("FOLLOWER", await sidecar.RoleAsync());

        // client-go's release: the object it read, holder "", leaseDurationSeconds 1, transitions kept.
        var lease = JsonNode.Parse(await go.GetStringAsync($"{leases}/{Name}"))!;
        now = MicroTime();
        lease["spec"]!["holderIdentity"] = "";
        lease["spec"]!["leaseDurationSeconds"] = 1;
        lease["spec"]!["acquireTime"] = now;
        lease["spec"]!["renewTime"] = now;
        using (var released = await go.PutAsync($"{leases}/{Name}", Json(lease.ToJsonString())))
        {
            Assert.Equal(HttpStatusCode.OK, released.StatusCode);
        }

        await DaemonProcess.SingleLeaderAsync([sidecar]);
        Assert.Equal(1, _server.Store.Get(Namespace, Name)!.Spec.LeaseTransitions);

        // The sidecar's release on SIGTERM is what client-go reads as "free, take it now".
        sidecar.Terminate();
        Assert.Equal(0, await sidecar.WaitForExitAsync(TimeSpan.FromSeconds(15)));
        lease = JsonNode.Parse(await go.GetStringAsync($"{leases}/{Name}"))!;
        var spec = lease["spec"]!;
        Assert.True(string.IsNullOrEmpty((string?)spec["holderIdentity"]));
        Assert.Equal(1, (int)spec["leaseDurationSeconds"]!);
        Assert.Equal(1, (int)spec["leaseTransitions"]!);
        Assert.NotNull((string?)spec["renewTime"]);

        now = MicroTime();
        spec["holderIdentity"] = "go-candidate";
        spec["leaseDurationSeconds"] = 15;
        spec["acquireTime"] = now;
        spec["renewTime"] = now;
        spec["leaseTransitions"] = 2;
        using var taken = await go.PutAsync($"{leases}/{Name}", Json(lease.ToJsonString()));
        Assert.Equal(HttpStatusCode.OK, taken.StatusCode);
    }

    [Fact]
    public async Task A_killed_leader_is_replaced_after_the_lease_duration()
    {
        var all = await StartAsync(FastTiming, "a", "b");
        var leader = await DaemonProcess.SingleLeaderAsync(all);

        await leader.KillAsync();

        await DaemonProcess.SingleLeaderAsync(all.Where(d => d != leader).ToList());
        Assert.Equal(1, _server.Store.Get(Namespace, Name)!.Spec.LeaseTransitions);
    }

    [Fact]
    public async Task During_an_api_outage_nobody_claims_and_a_leader_returns_after_it_heals()
    {
        var all = await StartAsync(FastTiming, "a", "b");
        await DaemonProcess.SingleLeaderAsync(all);

        using (_server.Faults.FailAll(FaultResponse.ServiceUnavailable()))
        {
            _server.DropWatches(abortConnections: true);
            await Poll.UntilAsync(
                async () => (await Task.WhenAll(all.Select(d => d.RoleAsync()))).All(r => r == "UNKNOWN"),
                Deadline,
                "every daemon reports UNKNOWN");
        }

        await DaemonProcess.SingleLeaderAsync(all);
    }

    [Fact]
    public async Task An_account_that_may_not_read_the_lease_stops_with_one_line_and_exit_code_2()
    {
        _server.Tokens.Set("nobody", new ApiUser("system:serviceaccount:demo:nobody", []));
        var kubeconfig = _dir.File("nobody.kubeconfig");
        _server.WriteKubeconfig(kubeconfig, "nobody", Namespace);

        var (code, _, stderr) = await DaemonProcess.RunToExitAsync(
            "--lease-name", Name, "--namespace", Namespace, "--kubeconfig", kubeconfig, "--identity", "x", "--http-address", "127.0.0.1:0", "--log-level", "error");

        Assert.Equal(2, code);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("access denied", line, StringComparison.Ordinal);
        Assert.Contains("cannot get resource \"leases\"", line, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("missing", "does not exist")]
    [InlineData("garbage", "is not usable")]
    public async Task An_unusable_kubeconfig_stops_with_one_line_and_exit_code_2(string kind, string expected)
    {
        var kubeconfig = _dir.File("bad.kubeconfig");
        if (kind == "garbage")
        {
            await File.WriteAllTextAsync(kubeconfig, "clusters: [this is not: a kubeconfig");
        }

        var (code, _, stderr) = await DaemonProcess.RunToExitAsync("--lease-name", Name, "--kubeconfig", kubeconfig, "--http-address", "127.0.0.1:0");

        Assert.Equal(2, code);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains(expected, line, StringComparison.Ordinal);
        Assert.Contains("(--kubeconfig)", line, StringComparison.Ordinal);
    }

    private static string MicroTime() => DateTime.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss.ffffff'Z'", CultureInfo.InvariantCulture);

    private static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

    private async Task<List<DaemonProcess>> StartAsync(string[] extra, params string[] identities)
    {
        var started = await Task.WhenAll(identities.Select(async id =>
        {
            var token = $"token-{id}";
            _server.Tokens.Set(token, new ApiUser($"system:serviceaccount:demo:{id}", LeaseRule.ForElection(Namespace, Name)));
            var kubeconfig = _dir.File($"{id}.kubeconfig");
            _server.WriteKubeconfig(kubeconfig, token, Namespace);
            return await DaemonProcess.StartAsync(["--lease-name", Name, "--namespace", Namespace, "--kubeconfig", kubeconfig, "--identity", id, .. extra]);
        }));
        lock (_daemons)
        {
            _daemons.AddRange(started);
        }

        return [.. started];
    }

    public async Task DisposeAsync()
    {
        foreach (var daemon in _daemons)
        {
            await daemon.DisposeAsync();
        }

        await _server.DisposeAsync();
        _dir.Dispose();
    }
}
