using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Grpc.Core;
using Leadership.V1;
using LeaderSidecar.Tests.Surfaces;
using Status = Leadership.V1.Status;

namespace LeaderSidecar.Tests.EndToEnd;

/// <summary>
/// The gRPC surface, the metrics and the shutdown drain of real daemon processes, checked against
/// the HTTP surface, the leader file and the lease file.
/// </summary>
public sealed class SurfacesTests : IAsyncLifetime
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);
    private static readonly HttpClient Http = new() { Timeout = Deadline };
    private readonly TempDirectory _dir = new();
    private readonly List<DaemonProcess> _daemons = [];

    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public async Task Watch_streams_of_two_daemons_show_one_leader_at_every_step_of_a_handover()
    {
        // The app on a confirms over gRPC when it has stopped leader work (--drain-timeout), so the
        // lease is released only after a's stream was read: the one order a watcher of two
        // independent connections can rely on. Without a drain the step-down is only sent first.
        var socket = _dir.File("b.sock");
        // a's app confirms over TCP, which only the opt-in (or a token) allows.
        var a = await StartAsync("a", "--leader-file", _dir.File("a.leader"), "--drain-timeout", "30s", "--allow-tcp-control");
        await Poll.UntilAsync(async () => await a.RoleAsync() == "LEADER", Deadline, "a leads");
        var b = await StartAsync("b", "--leader-file", _dir.File("b.leader"), "--grpc-address", $"unix:{socket}");
        await Poll.UntilAsync(async () => await b.RoleAsync() == "FOLLOWER", Deadline, "b follows");
        Assert.Equal($"unix:{socket}", b.GrpcAddress);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(socket));

        using var channelA = GrpcChannels.For(a.GrpcAddress);
        using var channelB = GrpcChannels.For(b.GrpcAddress);
        var clientA = new Leadership.V1.Leadership.LeadershipClient(channelA);
        var clientB = new Leadership.V1.Leadership.LeadershipClient(channelB);
        using var cts = new CancellationTokenSource(Deadline);
        using var watchA = clientA.Watch(new WatchRequest(), cancellationToken: cts.Token);
        using var watchB = clientB.Watch(new WatchRequest(), cancellationToken: cts.Token);
        var timeline = new Timeline();
        var confirmed = false;
        var readers = Task.WhenAll(
            timeline.ReadAsync("a", watchA.ResponseStream, cts.Token, async s =>
            {
                if (s.Draining && s.Role != Role.Leader && !confirmed)
                {
                    confirmed = true;
                    await clientA.ConfirmStoppedAsync(new ConfirmStoppedRequest(), cancellationToken: cts.Token);
                }
            }),
            timeline.ReadAsync("b", watchB.ResponseStream, cts.Token));
        await Poll.UntilAsync(() => Task.FromResult(timeline.Latest("a")?.Role == Role.Leader && timeline.Latest("b")?.Role == Role.Follower), Deadline, "both streams' first status");

        // A rolling update: the leader's pod is terminated.
        a.Terminate();
        await Poll.UntilAsync(() => Task.FromResult(timeline.Latest("b")?.Role == Role.Leader), Deadline, "b leads");
        Assert.Equal(0, await a.WaitForExitAsync(Deadline));

        Assert.Null(timeline.Violation);
        Assert.True(confirmed);
        Assert.NotEqual(Role.Leader, timeline.Latest("a")!.Role);
        Assert.False(File.Exists(_dir.File("a.leader")));

        // Every surface of the new leader agrees with its stream.
        var leader = timeline.Latest("b")!;
        Assert.Equal(1, leader.Term);
        var status = await clientB.GetStatusAsync(new GetStatusRequest(), cancellationToken: cts.Token);
        Assert.Equal((Role.Leader, 1L, leader.Revision), (status.Role, status.Term, status.Revision));
        var (code, body) = await b.GetAsync("/leader");
        Assert.Equal((HttpStatusCode.OK, "LEADER", 1L, leader.Revision), (code, body.GetProperty("role").GetString(), body.GetProperty("term").GetInt64(), body.GetProperty("revision").GetInt64()));
        using (var flag = JsonDocument.Parse(await File.ReadAllTextAsync(_dir.File("b.leader"))))
        {
            Assert.Equal(1, flag.RootElement.GetProperty("term").GetInt64());
        }

        var metrics = await MetricsAsync(b);
        Assert.Contains("leader_election_master_status{name=\"e2e\"} 1\n", metrics, StringComparison.Ordinal);
        Assert.Contains("leader_sidecar_holder_info{name=\"e2e\",identity=\"b\",holder=\"b\"} 1\n", metrics, StringComparison.Ordinal);
        Assert.Contains("leader_sidecar_grpc_watch_streams{name=\"e2e\"} 1\n", metrics, StringComparison.Ordinal);

        await cts.CancelAsync();
        await readers;
    }

    [Fact]
    public async Task Resign_hands_leadership_to_another_replica_and_holds_off()
    {
        var a = await StartAsync("a", "--allow-tcp-control");
        await Poll.UntilAsync(async () => await a.RoleAsync() == "LEADER", Deadline, "a leads");
        var b = await StartAsync("b");
        await Poll.UntilAsync(async () => await b.RoleAsync() == "FOLLOWER", Deadline, "b follows");
        using var channel = GrpcChannels.For(a.GrpcAddress);
        var client = new Leadership.V1.Leadership.LeadershipClient(channel);

        var resigned = await client.ResignAsync(new ResignRequest { HoldOff = Google.Protobuf.WellKnownTypes.Duration.FromTimeSpan(TimeSpan.FromMinutes(1)) });

        Assert.NotEqual(Role.Leader, resigned.Status.Role);
        await Poll.UntilAsync(async () => await b.RoleAsync() == "LEADER", Deadline, "b leads");
        await Poll.UntilAsync(async () => await a.RoleAsync() == "FOLLOWER", Deadline, "a follows b");
        var status = await client.GetStatusAsync(new GetStatusRequest());
        Assert.Equal(("b", 1L), (status.Holder, status.Term));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await a.GetAsync("/leader")).Code);
        Assert.Contains("leader_election_master_status{name=\"e2e\"} 0\n", await MetricsAsync(a), StringComparison.Ordinal);
        Assert.Contains("leader_sidecar_role_changes_total{name=\"e2e\",role=\"leader\"} 1\n", await MetricsAsync(a), StringComparison.Ordinal);
    }

    [Fact]
    public async Task By_default_resign_over_tcp_is_refused_and_the_leader_stays_leader()
    {
        var a = await StartAsync("a");
        await Poll.UntilAsync(async () => await a.RoleAsync() == "LEADER", Deadline, "a leads");
        using var channel = GrpcChannels.For(a.GrpcAddress);
        var client = new Leadership.V1.Leadership.LeadershipClient(channel);

        var error = await Assert.ThrowsAsync<RpcException>(async () => await client.ResignAsync(new ResignRequest { HoldOff = Google.Protobuf.WellKnownTypes.Duration.FromTimeSpan(TimeSpan.FromHours(1)) }));

        Assert.Equal(StatusCode.PermissionDenied, error.StatusCode);
        Assert.Equal("LEADER", await a.RoleAsync());
        Assert.Equal(Role.Leader, (await client.GetStatusAsync(new GetStatusRequest())).Role);
        await Poll.UntilAsync(() => Task.FromResult(a.Output.Contains("\"EventId\":510,", StringComparison.Ordinal)), Deadline, "the refusal logged");
    }

    [Fact]
    public async Task On_sigterm_every_surface_steps_down_then_the_app_confirms_then_the_lease_is_released()
    {
        var leaderFile = _dir.File("a.leader");
        var a = await StartAsync("a", "--leader-file", leaderFile, "--drain-timeout", "1m", "--allow-tcp-control");
        await Poll.UntilAsync(async () => await a.RoleAsync() == "LEADER", Deadline, "a leads");
        using var channel = GrpcChannels.For(a.GrpcAddress);
        var client = new Leadership.V1.Leadership.LeadershipClient(channel);
        using var cts = new CancellationTokenSource(Deadline);
        using var watch = client.Watch(new WatchRequest(), cancellationToken: cts.Token);
        Assert.True(await watch.ResponseStream.MoveNext(cts.Token));
        Assert.Equal(Role.Leader, watch.ResponseStream.Current.Role);
        await Poll.UntilAsync(() => Task.FromResult(File.Exists(leaderFile)), Deadline, "the leader file is written");

        a.Terminate();

        var steppedDown = await NextAsync(watch.ResponseStream, s => s.Role != Role.Leader, cts.Token);
        Assert.True(steppedDown.Draining);
        Assert.Equal("a", steppedDown.Holder);
        // The app has been told and the file is gone (the drain waits for its removal), but the
        // lease is still held: it waits for the app.
        await Poll.UntilAsync(() => Task.FromResult(!File.Exists(leaderFile)), Deadline, "the leader file is removed");
        Assert.Equal("a", LeaseHolder());
        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await a.GetAsync("/leader")).Code);

        var confirmed = await client.ConfirmStoppedAsync(new ConfirmStoppedRequest(), cancellationToken: cts.Token);
        Assert.True(confirmed.DrainEnded);

        // The stream gets the released state, then ends; the process exits cleanly.
        var released = await NextAsync(watch.ResponseStream, s => s.Holder == "", cts.Token);
        Assert.NotEqual(Role.Leader, released.Role);
        Assert.False(await watch.ResponseStream.MoveNext(cts.Token));
        Assert.Equal(0, await a.WaitForExitAsync(Deadline));
        Assert.Equal("", LeaseHolder());
        Assert.Contains("the app confirmed it stopped", a.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_drain_ends_when_no_app_watches_any_more()
    {
        var a = await StartAsync("a", "--drain-timeout", "1m");
        await Poll.UntilAsync(async () => await a.RoleAsync() == "LEADER", Deadline, "a leads");
        using var channel = GrpcChannels.For(a.GrpcAddress);
        using var cts = new CancellationTokenSource(Deadline);
        var watch = new Leadership.V1.Leadership.LeadershipClient(channel).Watch(new WatchRequest(), cancellationToken: cts.Token);
        Assert.True(await watch.ResponseStream.MoveNext(cts.Token));

        a.Terminate();
        await NextAsync(watch.ResponseStream, s => s.Role != Role.Leader, cts.Token);
        Assert.Equal("a", LeaseHolder());
        watch.Dispose();

        // Well before the one-minute drain timeout. (The stream may close before the drain even
        // starts waiting; either way nobody is left to confirm.)
        Assert.Equal(0, await a.WaitForExitAsync(Deadline));
        Assert.Equal("", LeaseHolder());
        Assert.DoesNotContain("the drain timeout passed", a.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_grpc_port_in_use_gives_one_line_and_exit_code_2()
    {
        using var squatter = new TcpListener(IPAddress.Loopback, 0);
        squatter.Start();
        var port = ((IPEndPoint)squatter.LocalEndpoint).Port;

        var (code, _, stderr) = await DaemonProcess.RunToExitAsync("--lease-name", "x", "--lease-dir", _dir.Path, "--http-address", "127.0.0.1:0", "--grpc-address", $"127.0.0.1:{port}", "--log-level", "error");

        Assert.Equal(2, code);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains($"cannot listen on 127.0.0.1:{port} (--grpc-address)", line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_probe_listener_serves_only_probes_and_metrics()
    {
        var a = await StartAsync("a", "--probe-address", "127.0.0.1:0");
        var probe = await a.ProbeAddress.WaitAsync(Deadline);
        Assert.NotEqual(a.BaseAddress.Port, probe.Port);
        await Poll.UntilAsync(async () => (await Http.GetAsync(new Uri(probe, "/readyz"))).StatusCode == HttpStatusCode.OK, Deadline, "ready on the probe listener");

        using var healthz = await Http.GetAsync(new Uri(probe, "/healthz"));
        Assert.Equal(HttpStatusCode.OK, healthz.StatusCode);
        var metrics = await Http.GetStringAsync(new Uri(probe, "/metrics"));
        Assert.Contains("leader_election_master_status", metrics, StringComparison.Ordinal);
        foreach (var path in new[] { "/leader", "/status", "/leader?wait=1s", "/" })
        {
            using var response = await Http.GetAsync(new Uri(probe, path));
            Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        }

        // The app's listener still serves everything.
        using var leader = await Http.GetAsync(new Uri(a.BaseAddress, "/status"));
        Assert.Equal(HttpStatusCode.OK, leader.StatusCode);
    }

    [Fact]
    public async Task A_probe_port_in_use_gives_one_line_and_exit_code_2()
    {
        using var squatter = new TcpListener(IPAddress.Loopback, 0);
        squatter.Start();
        var port = ((IPEndPoint)squatter.LocalEndpoint).Port;

        var (code, _, stderr) = await DaemonProcess.RunToExitAsync("--lease-name", "x", "--lease-dir", _dir.Path, "--http-address", "127.0.0.1:0", "--grpc-address", "127.0.0.1:0", "--probe-address", $"127.0.0.1:{port}", "--log-level", "error");

        Assert.Equal(2, code);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains($"cannot listen on 127.0.0.1:{port} (--probe-address)", line, StringComparison.Ordinal);
    }

    public Task InitializeAsync() => Task.CompletedTask;

    // IAsyncLifetime: xunit 2 never calls IAsyncDisposable on a test class, and the daemons would outlive the run.
    public async Task DisposeAsync()
    {
        foreach (var daemon in _daemons)
        {
            await daemon.DisposeAsync();
        }

        _dir.Dispose();
    }

    private static async Task<Status> NextAsync(IAsyncStreamReader<Status> stream, Func<Status, bool> wanted, CancellationToken cancellationToken)
    {
        while (true)
        {
            Assert.True(await stream.MoveNext(cancellationToken), "the stream ended early");
            if (wanted(stream.Current))
            {
                return stream.Current;
            }
        }
    }

    private static Task<string> MetricsAsync(DaemonProcess daemon) => Http.GetStringAsync(new Uri(daemon.BaseAddress, "/metrics"));

    private string LeaseHolder()
    {
        using var document = JsonDocument.Parse(File.ReadAllText(_dir.File("default_e2e.json")));
        return document.RootElement.GetProperty("spec").GetProperty("holderIdentity").GetString()!;
    }

    private async Task<DaemonProcess> StartAsync(string identity, params string[] extra)
    {
        var daemon = await DaemonProcess.StartAsync(["--lease-name", "e2e", "--lease-dir", _dir.Path, "--identity", identity, .. extra]);
        _daemons.Add(daemon);
        return daemon;
    }

    /// <summary>The statuses of several streams in the order they arrived, and whether two ever led at once.</summary>
    private sealed class Timeline
    {
        private readonly Lock _gate = new();
        private readonly Dictionary<string, Status> _latest = [];

        public string? Violation { get; private set; }

        public Status? Latest(string daemon)
        {
            lock (_gate)
            {
                return _latest.GetValueOrDefault(daemon);
            }
        }

        /// <summary>Records every status of one stream; <paramref name="onStatus"/> plays the app's reaction.</summary>
        public async Task ReadAsync(string daemon, IAsyncStreamReader<Status> stream, CancellationToken cancellationToken, Func<Status, Task>? onStatus = null)
        {
            try
            {
                while (await stream.MoveNext(cancellationToken))
                {
                    lock (_gate)
                    {
                        _latest[daemon] = stream.Current;
                        var leaders = _latest.Where(p => p.Value.Role == Role.Leader).Select(p => p.Key).ToList();
                        if (leaders.Count > 1)
                        {
                            Violation ??= $"both {string.Join(" and ", leaders)} lead";
                        }
                    }

                    if (onStatus is not null)
                    {
                        await onStatus(stream.Current);
                    }
                }
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.Cancelled)
            {
            }
        }
    }
}
