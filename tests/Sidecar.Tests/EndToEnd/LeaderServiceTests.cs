using System.Globalization;
using System.Text.Json;
using LeaderSidecar.Testing.LeaseApi;
using LeaderSidecar.Testing.LeaseApi.Auth;
using LeaderSidecar.Testing.LeaseApi.Faults;
using Xunit.Abstractions;
using static LeaderSidecar.Tests.EndToEnd.Timing;

namespace LeaderSidecar.Tests.EndToEnd;

/// <summary>
/// <c>--leader-service</c> on real daemons against the Lease API test server: the EndpointSlice
/// <c>web-leader</c> lists the leader's pod IP (distinct loopback addresses stand for pod IPs) through
/// every kind of hand-over, and failing slice writes never touch the election.
/// </summary>
public sealed class LeaderServiceTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const string Namespace = "demo";
    private const string Name = "app";
    private const string Service = "web";
    private const string Slice = "web-leader";
    private const string Listed = "\"EventId\":660,";
    private const string Failed = "\"EventId\":662,";
    private const string Retrying = "\"EventId\":663,";
    private const string LeftToOthers = "\"EventId\":664,";
    private readonly TempDirectory _dir = new();
    private readonly List<DaemonProcess> _daemons = [];
    private readonly Dictionary<DaemonProcess, string> _ips = [];
    private LeaseApiServer _server = null!;

    public async Task InitializeAsync()
    {
        _server = await LeaseApiServer.StartAsync(new LeaseApiServerOptions { UseTls = true });
        _server.EndpointSlices.CreateForService(Namespace, Slice, Service);
    }

    [Fact]
    public async Task The_endpoint_follows_the_leader_through_sigterm_resign_and_sigkill()
    {
        var a = await StartAsync("a", "127.0.0.11");
        var b = await StartAsync("b", "127.0.0.12");
        var c = await StartAsync("c", "127.0.0.13");
        List<DaemonProcess> all = [a, b, c];

        var first = await DaemonProcess.SingleLeaderAsync(all);
        await UntilListedAsync(first, "the first leader");
        await ReportWriteTimeAsync(first);

        // SIGTERM: the leader releases; the successor overwrites at once.
        first.Terminate();
        Assert.Equal(0, await first.WaitForExitAsync(TimeSpan.FromSeconds(15)));
        var rest = all.Where(d => d != first).ToList();
        var second = await DaemonProcess.SingleLeaderAsync(rest);
        await UntilListedAsync(second, "the leader after SIGTERM");
        await ReportWriteTimeAsync(second);

        // Resign: the leader steps down and stays out for a second; the other one takes over.
        var resign = await DaemonProcess.RunToExitAsync("resign", "--address", new Uri(second.GrpcAddress).Authority, "--hold-off", "1s");
        Assert.True(resign.ExitCode == 0, resign.StdErr);
        var third = rest.Single(d => d != second);
        await Poll.UntilAsync(async () => await third.RoleAsync() == "LEADER", Deadline, "the other replica leads after the resign");
        await UntilListedAsync(third, "the leader after the resign");
        await ReportWriteTimeAsync(third);

        // SIGKILL: nothing is removed; the successor overwrites when it takes the expired lease.
        await third.KillAsync();
        await Poll.UntilAsync(async () => await second.RoleAsync() == "LEADER", Deadline, "the remaining replica leads after SIGKILL");
        await UntilListedAsync(second, "the leader after SIGKILL");
        await ReportWriteTimeAsync(second);
        Assert.Equal("LEADER", await second.RoleAsync());
    }

    [Fact]
    public async Task A_leader_stopped_with_sigterm_removes_its_own_address()
    {
        var a = await StartAsync("a", "127.0.0.11");
        await DaemonProcess.SingleLeaderAsync([a]);
        await UntilListedAsync(a, "a's address");

        a.Terminate();

        Assert.Equal(0, await a.WaitForExitAsync(TimeSpan.FromSeconds(15)));
        Assert.Empty(_server.EndpointSlices.Addresses(Namespace, Slice));
    }

    [Fact]
    public async Task A_forbidden_update_is_logged_and_counted_and_the_election_goes_on()
    {
        var a = await StartAsync("a", "127.0.0.11", canUpdate: false);

        await DaemonProcess.SingleLeaderAsync([a]);
        await Poll.UntilAsync(async () => await UpdatesAsync(a, "forbidden") >= 2, Deadline, "forbidden writes counted, and retried");
        Assert.Contains(
            a.OutputLines.Where(l => l.Contains(Failed, StringComparison.Ordinal)),
            l => JsonDocument.Parse(l).RootElement.GetProperty("Message").GetString()!.Contains("cannot update resource \"endpointslices\"", StringComparison.Ordinal));
        Assert.Empty(_server.EndpointSlices.Addresses(Namespace, Slice));
        Assert.Equal("LEADER", await a.RoleAsync());

        // Once the Role is fixed, the next retry lands.
        _server.Tokens.Set("token-a", new ApiUser("system:serviceaccount:demo:a", Rules(canUpdate: true)));
        await UntilListedAsync(a, "the address once the update is allowed");
        await Poll.UntilAsync(async () => await UpdatesAsync(a, "success") >= 1, Deadline, "the write counted (after the server stored it)");
        Assert.Equal(1, await UpdatesAsync(a, "success"));
    }

    [Fact]
    public async Task An_unreachable_slice_is_retried_with_backoff_while_the_election_goes_on()
    {
        DaemonProcess a;
        using (_server.Faults.FailAll(FaultResponse.ServiceUnavailable(), new RequestFilter(LeaseName: Slice)))
        {
            a = await StartAsync("a", "127.0.0.11");
            await DaemonProcess.SingleLeaderAsync([a]);
            await Poll.UntilAsync(() => Task.FromResult(a.OutputLines.Count(l => l.Contains(Retrying, StringComparison.Ordinal)) >= 3), Deadline, "three retries");
            Assert.True(await UpdatesAsync(a, "unavailable") >= 3);
            Assert.Empty(_server.EndpointSlices.Addresses(Namespace, Slice));
            Assert.Equal("LEADER", await a.RoleAsync());
        }

        // The delays grow: the third is longer than the first.
        var delays = a.OutputLines.Where(l => l.Contains(Retrying, StringComparison.Ordinal))
            .Select(l => JsonDocument.Parse(l).RootElement.GetProperty("State").GetProperty("DelaySeconds").GetDouble()).ToList();
        Assert.True(delays[2] > delays[0], $"delays {string.Join(", ", delays)}");

        await UntilListedAsync(a, "the address after the outage");
    }

    [Fact]
    public async Task A_stale_leader_does_not_remove_its_successors_address()
    {
        var a = await StartAsync("a", "127.0.0.11", extra: ["--log-level", "debug"]);
        await DaemonProcess.SingleLeaderAsync([a]);
        await UntilListedAsync(a, "a's address");
        var b = await StartAsync("b", "127.0.0.12");

        // a is frozen past its lease; b takes over and overwrites the slice.
        a.Pause();
        await Poll.UntilAsync(async () => await b.RoleAsync() == "LEADER", Deadline, "b leads while a is frozen");
        await UntilListedAsync(b, "b's address");

        // a wakes up believing nothing: its claim has run out, and the slice is b's.
        a.Resume();
        await Poll.UntilAsync(() => Task.FromResult(a.OutputLines.Any(l => l.Contains(LeftToOthers, StringComparison.Ordinal))), Deadline, "a looked at the slice and left it");
        Assert.Equal(["127.0.0.12"], _server.EndpointSlices.Addresses(Namespace, Slice));
        Assert.Equal(1, await UpdatesAsync(a, "success"));
        Assert.Equal("LEADER", await b.RoleAsync());
    }

    [Theory]
    [InlineData(null, new[] { "--leader-service", "web" }, "needs this pod's IP in $POD_IP")]
    [InlineData("10.0.0", new[] { "--leader-service", "web" }, "is not an IP address")]
    [InlineData("10.0.0.1", new[] { "--leader-service", "Web" }, "is not a valid Service name")]
    [InlineData("10.0.0.1", new[] { "--leader-service", "web", "--backend", "file" }, "--leader-service works only with the kubernetes backend")]
    public async Task Bad_input_stops_with_one_line_and_exit_code_2(string? podIp, string[] flags, string expected)
    {
        _server.Tokens.Set("token-x", new ApiUser("system:serviceaccount:demo:x", Rules(canUpdate: true)));
        var kubeconfig = _dir.File("x.kubeconfig");
        _server.WriteKubeconfig(kubeconfig, "token-x", Namespace);
        var environment = new Dictionary<string, string>();
        if (podIp is not null)
        {
            environment["POD_IP"] = podIp;
        }

        var (code, _, stderr) = await DaemonProcess.RunToExitAsync(
            environment,
            ["--lease-name", Name, "--namespace", Namespace, "--kubeconfig", kubeconfig, "--identity", "x", "--http-address", "127.0.0.1:0", .. flags]);

        Assert.Equal(2, code);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains(expected, line, StringComparison.Ordinal);
    }

    private static LeaseRule[] Rules(bool canUpdate) =>
    [
        .. LeaseRule.ForElection(Namespace, Name),
        new(canUpdate ? [LeaseRule.Get, LeaseRule.Update] : [LeaseRule.Get], [Slice], Namespace, "endpointslices"),
    ];

    private static async Task<double> UpdatesAsync(DaemonProcess daemon, string result)
    {
        using var http = new HttpClient();
        var metrics = await http.GetStringAsync(new Uri(daemon.BaseAddress, "/metrics"));
        var prefix = $"leader_sidecar_endpoint_updates_total{{name=\"{Name}\",result=\"{result}\"}} ";
        return metrics.Split('\n').Where(l => l.StartsWith(prefix, StringComparison.Ordinal)).Select(l => double.Parse(l[prefix.Length..], CultureInfo.InvariantCulture)).Sum();
    }

    private Task UntilListedAsync(DaemonProcess leader, string what) =>
        Poll.UntilAsync(() => Task.FromResult(_server.EndpointSlices.Addresses(Namespace, Slice).SequenceEqual([_ips[leader]])), Deadline, what);

    /// <summary>
    /// Reports how long the write took after this daemon last became leader (its own log's timestamps).
    /// The server stores the slice before the daemon logs the write, so this waits for that line.
    /// </summary>
    private async Task ReportWriteTimeAsync(DaemonProcess leader)
    {
        (JsonElement Led, JsonElement Listed)? found = null;
        await Poll.UntilAsync(
            () =>
            {
                var lines = leader.OutputLines.Where(l => l.StartsWith('{')).Select(l => JsonDocument.Parse(l).RootElement).ToList();
                var led = lines.FindLastIndex(e => e.GetProperty("EventId").GetInt32() == 100 && e.GetProperty("State").GetProperty("To").GetString() == "Leader");
                var listed = lines.FindLastIndex(e => e.GetProperty("EventId").GetInt32() == 660);
                found = led >= 0 && listed > led ? (lines[led], lines[listed]) : null;
                return Task.FromResult(found is not null);
            },
            Deadline,
            "the daemon logged its slice write");
        var (ledAt, listedAt) = found!.Value;
        var took = Timestamp(listedAt) - Timestamp(ledAt);
        output.WriteLine($"{_ips[leader]}: slice written {took.TotalMilliseconds:0} ms after becoming leader");
    }

    private static DateTimeOffset Timestamp(JsonElement line) => DateTimeOffset.Parse(line.GetProperty("Timestamp").GetString()!, CultureInfo.InvariantCulture);

    private async Task<DaemonProcess> StartAsync(string id, string podIp, bool canUpdate = true, string[]? extra = null)
    {
        var token = $"token-{id}";
        _server.Tokens.Set(token, new ApiUser($"system:serviceaccount:demo:{id}", Rules(canUpdate)));
        var kubeconfig = _dir.File($"{id}.kubeconfig");
        _server.WriteKubeconfig(kubeconfig, token, Namespace);
        var daemon = await DaemonProcess.StartAsync(
            new Dictionary<string, string> { ["POD_IP"] = podIp },
            ["--lease-name", Name, "--namespace", Namespace, "--kubeconfig", kubeconfig, "--identity", id, "--leader-service", Service, "--allow-tcp-control", .. FastTiming, .. extra ?? []]);
        _daemons.Add(daemon);
        _ips[daemon] = podIp;
        return daemon;
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
