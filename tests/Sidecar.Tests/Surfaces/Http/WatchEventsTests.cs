using System.Diagnostics;
using System.Net;
using LeaderSidecar.Election;
using LeaderSidecar.Surfaces.Grpc;
using LeaderSidecar.Surfaces.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace LeaderSidecar.Tests.Surfaces.Http;

/// <summary><c>GET /watch</c> (server-sent events) on the HTTP surface, in this process.</summary>
public sealed class WatchEventsTests : IAsyncLifetime
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);
    private static readonly HttpClient Http = new() { Timeout = Timeout.InfiniteTimeSpan };
    private readonly FakeTimeProvider _time = new();
    private readonly CancellationTokenSource _cts = new(Deadline);
    private SurfaceHost _host = null!;

    public async Task InitializeAsync() => _host = await SurfaceHost.StartAsync(time: _time);

    public async Task DisposeAsync()
    {
        await _host.DisposeAsync();
        _cts.Dispose();
    }

    [Fact]
    public async Task The_current_status_comes_first_then_one_event_per_change_as_an_event_source_expects()
    {
        _host.Publish(Role.Follower, "other", term: 4);
        using var watch = await EventStream.OpenAsync(Http, _host.HttpAddress, cancellationToken: _cts.Token);

        Assert.Equal(HttpStatusCode.OK, watch.Response.StatusCode);
        Assert.Equal("text/event-stream", watch.Response.Content.Headers.ContentType?.MediaType);
        Assert.True(watch.Response.Headers.CacheControl?.NoCache, "Cache-Control: no-cache");
        Assert.Empty(watch.Response.Content.Headers.ContentEncoding);
        Assert.Null(watch.Response.Content.Headers.ContentLength);

        var (id, first) = (await watch.ReadEventAsync(_cts.Token))!.Value;
        Assert.Equal(_host.State.Current.Revision, id);
        Assert.Equal(id, first.GetProperty("revision").GetInt64());
        Assert.Equal("FOLLOWER", first.GetProperty("role").GetString());
        Assert.Equal("other", first.GetProperty("holder").GetString());

        var leader = _host.Publish(Role.Leader, "me", term: 5);
        var (nextId, next) = (await watch.ReadEventAsync(_cts.Token))!.Value;
        Assert.Equal(leader.Revision, nextId);
        Assert.Equal("LEADER", next.GetProperty("role").GetString());
        Assert.True(next.GetProperty("leader").GetBoolean());
        Assert.Equal(5, next.GetProperty("term").GetInt64());
        Assert.Equal("uid-1", next.GetProperty("leaseUid").GetString());
    }

    [Fact]
    public async Task A_client_resuming_at_the_current_revision_is_not_sent_it_again()
    {
        var current = _host.Publish(Role.Follower, "other");
        using var resumed = await EventStream.OpenAsync(Http, _host.HttpAddress, lastEventId: current.Revision.ToString(System.Globalization.CultureInfo.InvariantCulture), _cts.Token);
        var next = resumed.ReadEventAsync(_cts.Token);

        var leader = _host.Publish(Role.Leader, "me");

        Assert.Equal(leader.Revision, (await next)!.Value.Id);

        // An older id (or one from before a restart of the sidecar) gets the current status.
        using var behind = await EventStream.OpenAsync(Http, _host.HttpAddress, lastEventId: current.Revision.ToString(System.Globalization.CultureInfo.InvariantCulture), _cts.Token);
        Assert.Equal(leader.Revision, (await behind.ReadEventAsync(_cts.Token))!.Value.Id);
        using var garbage = await EventStream.OpenAsync(Http, _host.HttpAddress, lastEventId: "not-a-revision", _cts.Token);
        Assert.Equal(leader.Revision, (await garbage.ReadEventAsync(_cts.Token))!.Value.Id);
    }

    [Fact]
    public async Task A_quiet_stream_gets_a_comment_heartbeat_so_proxies_keep_it_open()
    {
        using var watch = await EventStream.OpenAsync(Http, _host.HttpAddress, cancellationToken: _cts.Token);
        Assert.NotNull(await watch.ReadEventAsync(_cts.Token));

        var block = watch.ReadBlockAsync(_cts.Token);
        Assert.False(block.IsCompleted);
        // The stream arms its timer after it wrote; move the clock until it fires.
        await Poll.UntilAsync(
            () =>
            {
                _time.Advance(WatchEvents.HeartbeatInterval);
                return Task.FromResult(block.IsCompleted);
            },
            Deadline,
            "a heartbeat");

        Assert.Equal([": ping"], await block);
        var leader = _host.Publish(Role.Leader, "me");
        Assert.Equal(leader.Revision, (await watch.ReadEventAsync(_cts.Token))!.Value.Id);
    }

    [Fact]
    public async Task At_shutdown_the_stream_ends_with_the_final_status()
    {
        _host.Publish(Role.Leader, "me");
        using var watch = await EventStream.OpenAsync(Http, _host.HttpAddress, cancellationToken: _cts.Token);
        Assert.Equal("LEADER", (await watch.ReadEventAsync(_cts.Token))!.Value.Status.GetProperty("role").GetString());

        var final = _host.Publish(Role.Follower, "");
        _host.Drain.Close();

        var events = new List<long>();
        while (await watch.ReadEventAsync(_cts.Token) is { } e)
        {
            events.Add(e.Id);
        }

        Assert.Equal(final.Revision, events[^1]);
    }

    [Fact]
    public async Task Streams_count_against_the_watch_stream_limit_shared_with_grpc()
    {
        var streams = _host.Services.GetRequiredService<WatchStreams>();
        var held = Enumerable.Range(0, WatchStreams.MaxOpen).Select(_ => streams.TryOpen(WatchSurface.Grpc)).ToList();
        try
        {
            using var refused = await Http.GetAsync(new Uri(_host.HttpAddress, "/watch"), _cts.Token);
            Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
            Assert.Contains("watch streams are open already", await refused.Content.ReadAsStringAsync(_cts.Token), StringComparison.Ordinal);
        }
        finally
        {
            held.ForEach(s => s!.Dispose());
        }

        using var watch = await EventStream.OpenAsync(Http, _host.HttpAddress, cancellationToken: _cts.Token);
        Assert.NotNull(await watch.ReadEventAsync(_cts.Token));
        Assert.Equal(1, streams.CountOn(WatchSurface.Http));
        Assert.Equal(0, streams.CountOn(WatchSurface.Grpc));
        using var metrics = new MemoryStream();
        await _host.Metrics.WriteAsync(metrics, _cts.Token);
        Assert.Contains("leader_sidecar_http_watch_streams{name=\"app\"} 1\n", System.Text.Encoding.UTF8.GetString(metrics.ToArray()), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_release_waits_until_the_stream_carried_the_step_down()
    {
        _host.Publish(Role.Leader, "me");
        using var watch = await EventStream.OpenAsync(Http, _host.HttpAddress, cancellationToken: _cts.Token);
        Assert.NotNull(await watch.ReadEventAsync(_cts.Token));

        var stepDown = _host.Publish(Role.Follower, "");

        // What Drain.DeliverStepDownAsync awaits before a release.
        await _host.Services.GetRequiredService<WatchStreams>().WhenDeliveredAsync(stepDown.Revision, _cts.Token);
        Assert.Equal(stepDown.Revision, (await watch.ReadEventAsync(_cts.Token))!.Value.Id);
    }

    [Fact]
    public async Task A_client_that_does_not_read_blocks_nobody_and_ends_at_the_newest_status()
    {
        using var slow = await EventStream.OpenAsync(Http, _host.HttpAddress, cancellationToken: _cts.Token);
        using var fast = await EventStream.OpenAsync(Http, _host.HttpAddress, cancellationToken: _cts.Token);
        Assert.NotNull(await slow.ReadEventAsync(_cts.Token));
        Assert.NotNull(await fast.ReadEventAsync(_cts.Token));

        // ~4 MB of statuses: far more than the socket buffers hold, so the slow stream's writes stall.
        var padding = new string('x', 2000);
        var publishing = Stopwatch.StartNew();
        var newest = _host.State.Current;
        for (var i = 0; i < 2000; i++)
        {
            newest = _host.Publish(i % 2 == 0 ? Role.Follower : Role.Leader, i % 2 == 0 ? $"{padding}{i}" : "me", term: i);
        }

        publishing.Stop();
        Assert.True(publishing.Elapsed < TimeSpan.FromSeconds(5), $"publishing took {publishing.Elapsed}");

        Assert.Equal(newest.Revision, (await ReadUntilAsync(fast, newest.Revision))[^1]);
        var slowIds = await ReadUntilAsync(slow, newest.Revision);
        Assert.Equal(newest.Revision, slowIds[^1]);
        Assert.True(slowIds.Zip(slowIds.Skip(1)).All(p => p.First < p.Second), "ids must strictly increase");
    }

    private async Task<List<long>> ReadUntilAsync(EventStream stream, long revision)
    {
        var ids = new List<long>();
        while (ids.Count == 0 || ids[^1] < revision)
        {
            ids.Add((await stream.ReadEventAsync(_cts.Token))!.Value.Id);
        }

        return ids;
    }
}
