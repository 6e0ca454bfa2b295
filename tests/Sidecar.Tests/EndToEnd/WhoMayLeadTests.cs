using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Leadership.V1;
using LeaderSidecar.Tests.Surfaces;

namespace LeaderSidecar.Tests.EndToEnd;

/// <summary>
/// Who may lead, on real daemons sharing a lease directory: the app's own health check
/// (<c>--app-health-url</c>, served here by the test), an observer (<c>--campaign=false</c>) and a
/// delayed candidate (<c>--campaign-delay</c>).
/// </summary>
public sealed class WhoMayLeadTests : IAsyncLifetime
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan LeaseDuration = TimeSpan.FromSeconds(2);
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(5) };
    private readonly TempDirectory _dir = new();
    private readonly List<AppHealthEndpoint> _apps = [];
    private DaemonGroup _group = null!;

    public Task InitializeAsync()
    {
        _group = new DaemonGroup(
            "--lease-name", "who", "--lease-dir", _dir.Path,
            "--lease-duration", "2s", "--renew-deadline", "1500ms", "--retry-period", "500ms", "--log-level", "debug");
        return Task.CompletedTask;
    }

    [Fact]
    public async Task An_unhealthy_leader_hands_over_to_a_healthy_one()
    {
        var (a, appA) = await StartWithAppAsync("a");
        var (b, appB) = await StartWithAppAsync("b");
        var leader = await DaemonProcess.SingleLeaderAsync([a, b]);
        var (follower, leaderApp) = leader == a ? (b, appA) : (a, appB);

        leaderApp.Healthy = false;

        await Poll.UntilAsync(async () => await follower.RoleAsync() == "LEADER", Deadline, "the healthy follower leads");
        Assert.Same(follower, await DaemonProcess.SingleLeaderAsync([a, b]));
        Assert.Equal(1, (await leader.RoleAndTermAsync()).Term);
        var metrics = await MetricsAsync(leader);
        Assert.Contains("leader_sidecar_app_healthy{name=\"who\"} 0\n", metrics, StringComparison.Ordinal);
        Assert.Contains("leader_sidecar_stand_asides_total{name=\"who\"} 1\n", metrics, StringComparison.Ordinal);
        Assert.Contains("leader_sidecar_app_healthy{name=\"who\"} 1\n", await MetricsAsync(follower), StringComparison.Ordinal);

        // Readiness describes the sidecar, not the app: the unhealthy app's sidecar stays ready.
        using var ready = await Http.GetAsync(new Uri(leader.BaseAddress, "/readyz"));
        Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
        await _group.AssertOneLeaderAtATimeAsync();
    }

    [Fact]
    public async Task With_every_app_unhealthy_a_leader_still_exists()
    {
        var (a, appA) = await StartWithAppAsync("a");
        var (b, appB) = await StartWithAppAsync("b");
        var first = await DaemonProcess.SingleLeaderAsync([a, b]);

        appA.Healthy = false;
        appB.Healthy = false;

        // The leader stands aside; nobody healthy takes the lease, so after a lease duration one of
        // the unhealthy replicas leads anyway, and keeps leading.
        await Poll.UntilAsync(() => Task.FromResult(Logged(first, StandingAside)), Deadline, "the leader stands aside");
        await Poll.UntilAsync(() => Task.FromResult(Logged(a, AcquiredUnfit) || Logged(b, AcquiredUnfit)), Deadline, "an unhealthy replica leads anyway");
        var again = await DaemonProcess.SingleLeaderAsync([a, b]);
        Assert.True(Logged(again, AcquiredUnfit));

        // Term 1, or 2 when the follower's own check failed only after it had taken the release:
        // then it stood aside too (each replica at most once), and an unhealthy one took it last.
        Assert.InRange((await again.RoleAndTermAsync()).Term ?? -1, 1, 2);
        await _group.AssertOneLeaderAtATimeAsync();
    }

    [Fact]
    public async Task An_observer_never_leads_but_reports_the_holder()
    {
        var observer = await _group.StartOneAsync("o", ["--campaign=false"]);
        await Poll.UntilAsync(async () => await observer.RoleAsync() == "FOLLOWER", Deadline, "the observer has seen the lease");
        await StaysFollowerAsync(observer, LeaseDuration * 2);
        Assert.False(File.Exists(Path.Combine(_dir.Path, "default_who.json")), "the observer wrote the lease");

        var b = await _group.StartOneAsync("b");
        await Poll.UntilAsync(async () => (await observer.GetAsync("/status")).Body.GetProperty("name").GetString() == "b", Deadline, "the observer reports b");

        var (code, body) = await observer.GetAsync("/leader");
        Assert.Equal((HttpStatusCode.ServiceUnavailable, "FOLLOWER", "b"), (code, body.GetProperty("role").GetString(), body.GetProperty("holder").GetString()));
        using (var channel = GrpcChannels.For(observer.GrpcAddress))
        {
            var status = await new Leadership.V1.Leadership.LeadershipClient(channel).GetStatusAsync(new GetStatusRequest());
            Assert.Equal((Role.Follower, "b", 0L), (status.Role, status.Holder, status.Term));
        }

        Assert.Contains("leader_sidecar_holder_info{name=\"who\",identity=\"o\",holder=\"b\"} 1\n", await MetricsAsync(observer), StringComparison.Ordinal);

        // The only candidate leaves: the lease stays free.
        await _group.TerminateAsync(b);
        await Poll.UntilAsync(async () => (await observer.GetAsync("/status")).Body.GetProperty("holder").GetString() == "", Deadline, "the observer sees the release");
        await StaysFollowerAsync(observer, LeaseDuration * 2);
        Assert.True(Logged(observer, NotCampaigning));
    }

    [Fact]
    public async Task The_undelayed_replica_wins_and_the_delayed_one_takes_what_nobody_else_takes()
    {
        // The delayed one starts first and sees the lease free; it still lets the other win.
        var delayed = await _group.StartOneAsync("delayed", ["--campaign-delay", "10s"]);
        await Poll.UntilAsync(async () => await delayed.RoleAsync() == "FOLLOWER", Deadline, "the delayed replica has seen the lease");
        var prompt = await _group.StartOneAsync("prompt");

        Assert.Same(prompt, await DaemonProcess.SingleLeaderAsync([delayed, prompt]));
        Assert.False(DaemonGroup.HasLed(delayed));

        await _group.TerminateAsync(prompt);
        await DaemonProcess.SingleLeaderAsync([delayed]);
        Assert.Equal(1, (await delayed.RoleAndTermAsync()).Term);
        await _group.AssertOneLeaderAtATimeAsync();
    }

    private async Task<(DaemonProcess Daemon, AppHealthEndpoint App)> StartWithAppAsync(string identity)
    {
        var app = new AppHealthEndpoint();
        _apps.Add(app);
        var daemon = await _group.StartOneAsync(identity, ["--app-health-url", app.Url.ToString(), "--app-health-threshold", "2"]);
        return (daemon, app);
    }

    /// <summary>Watches <paramref name="daemon"/> for <paramref name="window"/>: it must never say LEADER.</summary>
    private static async Task StaysFollowerAsync(DaemonProcess daemon, TimeSpan window)
    {
        var watched = Stopwatch.StartNew();
        while (watched.Elapsed < window)
        {
            Assert.Equal("FOLLOWER", await daemon.RoleAsync());
            await Task.Delay(TimeSpan.FromMilliseconds(100));
        }

        Assert.False(DaemonGroup.HasLed(daemon));
    }

    // The log events' ids (docs/CONFIGURATION.md); JSON log lines carry the id, not the name.
    private const int StandingAside = 15;
    private const int AcquiredUnfit = 16;
    private const int NotCampaigning = 303;

    private static bool Logged(DaemonProcess daemon, int eventId) =>
        daemon.Output.Contains($"\"EventId\":{eventId},", StringComparison.Ordinal);

    private static Task<string> MetricsAsync(DaemonProcess daemon) =>
        Http.GetStringAsync(new Uri(daemon.BaseAddress, "/metrics"));

    public async Task DisposeAsync()
    {
        await _group.DisposeAsync();
        foreach (var app in _apps)
        {
            await app.DisposeAsync();
        }

        _dir.Dispose();
    }
}

/// <summary>
/// The smallest app health endpoint: every request on a loopback port gets <c>200</c> while
/// <see cref="Healthy"/>, else <c>503</c>, and the connection is closed.
/// </summary>
internal sealed class AppHealthEndpoint : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _serving;
    private volatile bool _healthy = true;

    public AppHealthEndpoint()
    {
        _listener.Start();
        _serving = ServeAsync(_stop.Token);
    }

    public Uri Url => new($"http://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}/healthz");

    public bool Healthy
    {
        get => _healthy;
        set => _healthy = value;
    }

    private async Task ServeAsync(CancellationToken ct)
    {
        try
        {
            while (true)
            {
                var client = await _listener.AcceptTcpClientAsync(ct);
                _ = AnswerAsync(client, ct);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private async Task AnswerAsync(TcpClient client, CancellationToken ct)
    {
        using (client)
        {
            try
            {
                var stream = client.GetStream();
                var request = new StringBuilder();
                var buffer = new byte[1024];
                while (!request.ToString().Contains("\r\n\r\n", StringComparison.Ordinal) && request.Length < 16384)
                {
                    var read = await stream.ReadAsync(buffer, ct);
                    if (read == 0)
                    {
                        return;
                    }

                    request.Append(Encoding.ASCII.GetString(buffer, 0, read));
                }

                var status = _healthy ? "200 OK" : "503 Service Unavailable";
                await stream.WriteAsync(Encoding.ASCII.GetBytes($"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"), ct);
            }
            catch (Exception e) when (e is IOException or OperationCanceledException or SocketException)
            {
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        await _serving;
        _stop.Dispose();
    }
}
