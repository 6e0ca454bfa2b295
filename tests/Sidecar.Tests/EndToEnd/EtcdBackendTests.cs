using System.Diagnostics;
using System.Text.Json;
using LeaderSidecar.Tests.Stores.Etcd;

namespace LeaderSidecar.Tests.EndToEnd;

/// <summary>Real daemon processes on the etcd backend, against a real etcd started by the test.</summary>
public sealed class EtcdBackendTests : IAsyncLifetime
{
    private const string Key = "/leader-sidecar/demo/app";
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);
    private static readonly string[] FastTiming = ["--lease-duration", "3s", "--renew-deadline", "2s", "--retry-period", "500ms"];
    private readonly List<DaemonProcess> _daemons = [];
    private EtcdServer _server = null!;

    public async Task InitializeAsync() => _server = await EtcdServer.StartAsync();

    public async Task DisposeAsync()
    {
        foreach (var daemon in _daemons)
        {
            await daemon.DisposeAsync();
        }

        await _server.DisposeAsync();
    }

    [Fact]
    public async Task Two_daemons_elect_one_leader_and_hand_over_through_the_watch_on_sigterm()
    {
        var all = new[] { await StartAsync("a"), await StartAsync("b") };
        var leader = await DaemonProcess.SingleLeaderAsync(all);
        var identity = (await leader.GetAsync("/status")).Body.GetProperty("identity").GetString();
        Assert.Equal(identity, (await RecordAsync()).GetProperty("holderIdentity").GetString());
        Assert.Contains(all[0].OutputLines, l => l.Contains($"etcd key {Key} at {_server.Endpoint.GetLeftPart(UriPartial.Authority)}", StringComparison.Ordinal));

        var stopped = Stopwatch.StartNew();
        leader.Terminate();
        Assert.Equal(0, await leader.WaitForExitAsync(TimeSpan.FromSeconds(15)));
        var next = await DaemonProcess.SingleLeaderAsync(all.Where(d => d != leader).ToList());

        var record = await RecordAsync();
        Assert.Equal((await next.GetAsync("/status")).Body.GetProperty("identity").GetString(), record.GetProperty("holderIdentity").GetString());
        Assert.Equal(1, record.GetProperty("leaseTransitions").GetInt32());
        Assert.True(stopped.Elapsed < TimeSpan.FromSeconds(3), "the handover waited for expiry instead of the release");
    }

    [Fact]
    public async Task An_etcd_that_is_down_at_start_up_is_waited_for()
    {
        await _server.StopAsync();
        var daemon = await StartAsync("a");
        await Poll.UntilAsync(() => Task.FromResult(daemon.Output.Contains("First read of the lease failed", StringComparison.Ordinal)), Deadline, "the failed first read to be logged");
        Assert.False(daemon.HasExited);

        await _server.RestartAsync();

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

    [Fact]
    public async Task Rejected_credentials_are_one_line_and_exit_2_and_the_password_is_never_printed()
    {
        await _server.EnableAuthAsync();

        var (code, stdout, stderr) = await DaemonProcess.RunToExitAsync(
            new Dictionary<string, string> { ["LEADER_SIDECAR_ETCD_PASSWORD"] = "wrong-secret" },
            "--lease-name", "app", "--namespace", "demo", "--etcd-endpoints", _server.Endpoint.ToString(), "--etcd-user", "root", "--http-address", "127.0.0.1:0", "--grpc-address", "127.0.0.1:0");

        Assert.Equal(2, code);
        Assert.Contains("credentials rejected", stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("wrong-secret", stdout + stderr, StringComparison.Ordinal);
    }

    private async Task<DaemonProcess> StartAsync(string identity)
    {
        var daemon = await DaemonProcess.StartAsync(["--lease-name", "app", "--namespace", "demo", "--identity", identity, "--etcd-endpoints", _server.Endpoint.ToString(), .. FastTiming]);
        _daemons.Add(daemon);
        return daemon;
    }

    private async Task<JsonElement> RecordAsync() =>
        JsonDocument.Parse(await _server.EtcdctlAsync("get", Key, "--print-value-only")).RootElement.Clone();
}
