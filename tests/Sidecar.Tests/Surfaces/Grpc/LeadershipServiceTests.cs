using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Grpc.Core;
using Grpc.Health.V1;
using Leadership.V1;
using LeaderSidecar.Tests.EndToEnd;
using ElectionRole = LeaderSidecar.Election.Role;
using HealthClient = Grpc.Health.V1.Health.HealthClient;
using ServingStatus = Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus;
using Status = Leadership.V1.Status;

namespace LeaderSidecar.Tests.Surfaces.Grpc;

/// <summary>The gRPC surface in this process, through a generated client, as an app uses it.</summary>
public sealed class LeadershipServiceTests : IAsyncLifetime
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);
    private static readonly HttpClient Http = new() { Timeout = Deadline };
    private static readonly Marshaller<byte[]> Raw = Marshallers.Create(bytes => bytes, bytes => bytes);
    private SurfaceHost _host = null!;

    public async Task InitializeAsync() => _host = await SurfaceHost.StartAsync();

    public async Task DisposeAsync() => await _host.DisposeAsync();

    [Fact]
    public async Task Watch_sends_the_current_status_first_then_every_change_in_order()
    {
        using var channel = _host.Channel();
        var client = new Leadership.V1.Leadership.LeadershipClient(channel);
        using var cts = new CancellationTokenSource(Deadline);
        using var watch = client.Watch(new WatchRequest(), cancellationToken: cts.Token);

        Assert.True(await watch.ResponseStream.MoveNext(cts.Token));
        var first = watch.ResponseStream.Current;
        Assert.Equal(Role.Unknown, first.Role);
        Assert.Equal(_host.State.Current.Revision, first.Revision);
        Assert.False(first.HasTerm);

        // One change at a time: a reader that lags may skip intermediate statuses (tested below).
        var seen = new List<Status>();
        _host.Publish(ElectionRole.Follower, "other", term: 4);
        Assert.True(await watch.ResponseStream.MoveNext(cts.Token));
        seen.Add(watch.ResponseStream.Current);
        _host.Publish(ElectionRole.Leader, "me", term: 5);
        Assert.True(await watch.ResponseStream.MoveNext(cts.Token));
        seen.Add(watch.ResponseStream.Current);

        Assert.Equal([Role.Follower, Role.Leader], seen.Select(s => s.Role));
        Assert.Equal("other", seen[0].Holder);
        Assert.Equal(4, seen[0].Term);
        Assert.Null(seen[0].ValidUntil);
        var leader = seen[1];
        Assert.True(leader.Leader);
        Assert.Equal("me", leader.Holder);
        Assert.Equal(5, leader.Term);
        Assert.Equal("uid-1", leader.LeaseUid);
        Assert.Equal("app", leader.LeaseName);
        Assert.Equal("default", leader.LeaseNamespace);
        Assert.True(leader.ValidUntil.ToDateTimeOffset() > DateTimeOffset.UtcNow);
        Assert.NotNull(leader.ObservedAge);
        Assert.False(leader.Draining);
        Assert.True(seen[0].Revision > first.Revision && seen[1].Revision > seen[0].Revision);
    }

    [Fact]
    public async Task GetStatus_the_newest_Watch_message_and_http_agree()
    {
        using var channel = _host.Channel();
        var client = new Leadership.V1.Leadership.LeadershipClient(channel);
        using var cts = new CancellationTokenSource(Deadline);
        using var watch = client.Watch(new WatchRequest(), cancellationToken: cts.Token);
        var published = _host.Publish(ElectionRole.Leader, "me", term: 7);

        Status newest;
        do
        {
            Assert.True(await watch.ResponseStream.MoveNext(cts.Token));
            newest = watch.ResponseStream.Current;
        }
        while (newest.Revision < published.Revision);

        var status = await client.GetStatusAsync(new GetStatusRequest(), cancellationToken: cts.Token);
        using var response = await Http.GetAsync(new Uri(_host.HttpAddress, "/leader"), cts.Token);
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync(cts.Token));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        foreach (var message in new[] { status, newest })
        {
            Assert.Equal(Role.Leader, message.Role);
            Assert.Equal(7, message.Term);
            Assert.Equal(published.Revision, message.Revision);
        }

        Assert.Equal("LEADER", json.RootElement.GetProperty("role").GetString());
        Assert.Equal(7, json.RootElement.GetProperty("term").GetInt64());
        Assert.Equal(published.Revision, json.RootElement.GetProperty("revision").GetInt64());
    }

    [Fact]
    public async Task A_stuck_stream_blocks_neither_the_publisher_nor_other_streams_and_ends_at_the_newest_status()
    {
        // The smallest HTTP/2 window: a client that stops reading soon blocks the server's writes.
        using var slowChannel = _host.Channel(new SocketsHttpHandler { InitialHttp2StreamWindowSize = 65535 });
        using var fastChannel = _host.Channel();
        using var cts = new CancellationTokenSource(Deadline);
        using var slow = new Leadership.V1.Leadership.LeadershipClient(slowChannel).Watch(new WatchRequest(), cancellationToken: cts.Token);
        using var fast = new Leadership.V1.Leadership.LeadershipClient(fastChannel).Watch(new WatchRequest(), cancellationToken: cts.Token);
        Assert.True(await slow.ResponseStream.MoveNext(cts.Token));
        Assert.True(await fast.ResponseStream.MoveNext(cts.Token));

        // Big holder names make 2,000 statuses (~4 MB) far more than the window and the server's
        // buffers hold, so the slow stream's writer really is stuck while they are published.
        var padding = new string('x', 2000);
        var publishing = Stopwatch.StartNew();
        var newest = _host.State.Current;
        for (var i = 0; i < 2000; i++)
        {
            newest = _host.Publish(i % 2 == 0 ? ElectionRole.Follower : ElectionRole.Leader, i % 2 == 0 ? $"{padding}{i}" : "me", term: i);
        }

        publishing.Stop();
        Assert.True(publishing.Elapsed < TimeSpan.FromSeconds(5), $"publishing took {publishing.Elapsed}");

        // The fast stream reaches the newest status while the slow one still has not read anything.
        var fastRevisions = await ReadUntilAsync(fast.ResponseStream, newest.Revision, cts.Token);
        Assert.Equal(newest.Revision, fastRevisions[^1]);

        var slowRevisions = await ReadUntilAsync(slow.ResponseStream, newest.Revision, cts.Token);
        Assert.Equal(newest.Revision, slowRevisions[^1]);
        Assert.True(slowRevisions.Zip(slowRevisions.Skip(1)).All(p => p.First < p.Second), "revisions must strictly increase");
        Assert.Equal(newest.Revision, (await new Leadership.V1.Leadership.LeadershipClient(fastChannel).GetStatusAsync(new GetStatusRequest(), cancellationToken: cts.Token)).Revision);
    }

    [Fact]
    public async Task Open_watch_streams_are_counted()
    {
        using var channel = _host.Channel();
        var client = new Leadership.V1.Leadership.LeadershipClient(channel);
        using var cts = new CancellationTokenSource(Deadline);
        using (var watch = client.Watch(new WatchRequest(), cancellationToken: cts.Token))
        {
            Assert.True(await watch.ResponseStream.MoveNext(cts.Token));
            await Poll.UntilAsync(async () => (await ScrapeAsync()).Contains("leader_sidecar_grpc_watch_streams{name=\"app\"} 1\n", StringComparison.Ordinal), Deadline, "one stream counted");
        }

        await Poll.UntilAsync(async () => (await ScrapeAsync()).Contains("leader_sidecar_grpc_watch_streams{name=\"app\"} 0\n", StringComparison.Ordinal), Deadline, "the closed stream uncounted");
    }

    [Fact]
    public async Task ConfirmStopped_outside_a_drain_does_nothing()
    {
        // ConfirmStopped changes leadership during a drain: over TCP only where it is allowed (ControlAccessTests).
        await using var host = await SurfaceHost.StartAsync(allowTcpControl: true);
        using var channel = host.Channel();
        var client = new Leadership.V1.Leadership.LeadershipClient(channel);

        var response = await client.ConfirmStoppedAsync(new ConfirmStoppedRequest());

        Assert.False(response.DrainEnded);
    }

    [Fact]
    public async Task A_request_message_over_the_limit_is_refused()
    {
        using var channel = _host.Channel();
        // GetStatus with one unknown field of 5 KiB: the generated client cannot send that, so raw bytes.
        var method = new Method<byte[], byte[]>(MethodType.Unary, "leadership.v1.Leadership", "GetStatus", Raw, Raw);
        var padding = new byte[5 * 1024];
        byte[] message = [0x7A, 0x80, 0x28, .. padding]; // field 15, length-delimited, length 5120 (varint)

        var error = await Assert.ThrowsAsync<RpcException>(async () => await channel.CreateCallInvoker().AsyncUnaryCall(method, null, new CallOptions(), message));
        var small = await channel.CreateCallInvoker().AsyncUnaryCall(method, null, new CallOptions(), [0x7A, 0x02, 0x00, 0x00]);

        Assert.Equal(StatusCode.ResourceExhausted, error.StatusCode);
        Assert.Equal(Role.Unknown, Status.Parser.ParseFrom(small).Role);
    }

    [Fact]
    public async Task Health_reports_liveness_and_readiness()
    {
        using var channel = _host.Channel();
        var health = new HealthClient(channel);
        using var cts = new CancellationTokenSource(Deadline);

        Assert.Equal(ServingStatus.Serving, (await health.CheckAsync(new HealthCheckRequest { Service = "" })).Status);
        Assert.Equal(ServingStatus.NotServing, (await health.CheckAsync(new HealthCheckRequest { Service = "leadership.v1.Leadership" })).Status);
        var unknown = await Assert.ThrowsAsync<RpcException>(async () => await health.CheckAsync(new HealthCheckRequest { Service = "nope" }));
        Assert.Equal(StatusCode.NotFound, unknown.StatusCode);

        using var watch = health.Watch(new HealthCheckRequest { Service = "leadership.v1.Leadership" }, cancellationToken: cts.Token);
        Assert.True(await watch.ResponseStream.MoveNext(cts.Token));
        Assert.Equal(ServingStatus.NotServing, watch.ResponseStream.Current.Status);
        _host.Publish(ElectionRole.Follower, "other");
        Assert.True(await watch.ResponseStream.MoveNext(cts.Token));
        Assert.Equal(ServingStatus.Serving, watch.ResponseStream.Current.Status);
    }

    [Fact]
    public async Task Each_listener_serves_only_its_own_surface()
    {
        // The HTTP endpoints over h2c on the gRPC listener are not found.
        using var h2c = new HttpClient();
        using var request = new HttpRequestMessage(HttpMethod.Get, $"{_host.GrpcAddress}/leader")
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        using var response = await h2c.SendAsync(request);

        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
    }

    private static async Task<List<long>> ReadUntilAsync(IAsyncStreamReader<Status> stream, long revision, CancellationToken cancellationToken)
    {
        var revisions = new List<long>();
        while (revisions.Count == 0 || revisions[^1] < revision)
        {
            Assert.True(await stream.MoveNext(cancellationToken));
            revisions.Add(stream.Current.Revision);
        }

        return revisions;
    }

    private async Task<string> ScrapeAsync() => await Http.GetStringAsync(new Uri(_host.HttpAddress, "/metrics"));
}
