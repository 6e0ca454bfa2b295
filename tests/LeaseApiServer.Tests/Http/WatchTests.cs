using System.Text.Json.Nodes;
using LeaderSidecar.Testing.LeaseApi.Auth;

namespace LeaderSidecar.Testing.LeaseApi.Tests.Http;

public sealed class WatchTests : IAsyncLifetime
{
    private const string Token = "watcher";
    private const string Leases = "apis/coordination.k8s.io/v1/namespaces/demo/leases";
    private LeaseApiServer _server = null!;
    private HttpClient _client = null!;

    public async Task InitializeAsync()
    {
        _server = await LeaseApiServer.StartAsync(new LeaseApiServerOptions
        {
            InitialResourceVersion = 316,
            HistoryLimit = 50,
            BookmarkInterval = TimeSpan.FromHours(1), // bookmarks only on demand unless a test asks
        });
        _server.Tokens.Set(Token, ApiUser.Admin());
        _client = _server.CreateClient(Token);
        _client.DefaultRequestHeaders.UserAgent.ParseAdd("curl/8.5.0");
    }

    public async Task DisposeAsync()
    {
        _client.Dispose();
        await _server.DisposeAsync();
    }

    [Fact]
    public async Task Watch_without_resource_version_starts_with_the_current_object_as_added()
    {
        var created = await CreateAsync("golden", "pod-c", "2026-11-25T02:04:24.738765Z");

        await using var watch = await WatchAsync("fieldSelector=metadata.name%3Dgolden");

        Assert.Equal(200, watch.StatusCode);
        Assert.Equal("application/json", watch.Response.Content.Headers.ContentType?.ToString());
        var first = await watch.NextAsync();
        Json.AssertSameShape(GoldenExchange.LoadStream("16-watch-no-rv-initial-state.jsonl")[0], first);
        Assert.Equal(Json.Text(created, "metadata.resourceVersion"), Json.Text(first, "object.metadata.resourceVersion"));
    }

    [Fact]
    public async Task Watch_with_resource_version_zero_also_starts_with_added()
    {
        await CreateAsync("golden", "pod-c");

        await using var watch = await WatchAsync("fieldSelector=metadata.name%3Dgolden&resourceVersion=0");

        Assert.Equal("ADDED", Json.Text(await watch.NextAsync(), "type"));
    }

    [Fact]
    public async Task Release_delete_recreate_and_bookmark_stream_like_the_capture()
    {
        var created = await CreateAsync("golden", "pod-a");
        await using var watch = await WatchAsync(
            $"fieldSelector=metadata.name%3Dgolden&resourceVersion={Json.Text(created, "metadata.resourceVersion")}&allowWatchBookmarks=true");
        var golden = GoldenExchange.LoadStream("14-watch-stream.jsonl");

        // What client-go writes on release, then a delete and a new holder, as in the capture.
        const string ReleaseTime = "2026-11-25T02:04:24.738765Z";
        var release = Api.LeaseBody("golden", "", Json.Text(created, "metadata.resourceVersion"), duration: 1, time: ReleaseTime);
        Assert.Equal(200, (await Api.SendAsync(_client, HttpMethod.Put, $"{Leases}/golden", release)).Code);
        Assert.Equal(200, (await Api.SendAsync(_client, HttpMethod.Delete, $"{Leases}/golden")).Code);
        var recreated = await CreateAsync("golden", "pod-c", ReleaseTime);
        await Eventually.WaitUntilAsync(() => _server.Store.Revision == long.Parse(Json.Text(recreated, "metadata.resourceVersion"), System.Globalization.CultureInfo.InvariantCulture), "the create is stored");
        _server.SendBookmarks();

        var events = new List<JsonNode?>();
        for (var i = 0; i < golden.Count; i++)
        {
            events.Add(await watch.NextAsync());
        }

        for (var i = 0; i < golden.Count; i++)
        {
            Json.AssertSameShape(golden[i], events[i]);
        }

        var versions = events.Select(e => long.Parse(Json.Text(e, "object.metadata.resourceVersion"), System.Globalization.CultureInfo.InvariantCulture)).ToList();
        Assert.True(versions[0] < versions[1] && versions[1] < versions[2], "DELETED carries a newer version than the last change");
        Assert.Equal(versions[2], versions[3]);
        Assert.Equal(Json.Text(events[0], "object.metadata.uid"), Json.Text(events[1], "object.metadata.uid"));
        Assert.NotEqual(Json.Text(events[1], "object.metadata.uid"), Json.Text(events[2], "object.metadata.uid"));
    }

    [Fact]
    public async Task Watch_resumes_from_a_resource_version_with_only_newer_changes()
    {
        var created = await CreateAsync("golden", "pod-a");
        var version = Json.Text(created, "metadata.resourceVersion");
        var renewed = await Api.SendAsync(_client, HttpMethod.Put, $"{Leases}/golden", Api.LeaseBody("golden", "pod-b", version));
        await CreateAsync("other", "pod-x");

        await using var watch = await WatchAsync($"fieldSelector=metadata.name%3Dgolden&resourceVersion={version}");

        var first = await watch.NextAsync();
        Assert.Equal("MODIFIED", Json.Text(first, "type"));
        Assert.Equal("pod-b", Json.Text(first, "object.spec.holderIdentity"));
        Assert.Equal(Json.Text(renewed.Json, "metadata.resourceVersion"), Json.Text(first, "object.metadata.resourceVersion"));

        _server.Store.Update("demo", "golden", spec => spec with { HolderIdentity = "by-hand" });
        var second = await watch.NextAsync();
        Assert.Equal("by-hand", Json.Text(second, "object.spec.holderIdentity"));
    }

    [Fact]
    public async Task Watch_from_a_compacted_resource_version_answers_200_then_one_expired_error()
    {
        await CreateAsync("golden", "pod-a");

        await using var watch = await WatchAsync("fieldSelector=metadata.name%3Dgolden&resourceVersion=2");

        var golden = GoldenExchange.Load("15-watch-too-old.headers");
        Assert.Equal(golden.StatusCode, watch.StatusCode);
        Assert.Equal(golden.Headers["content-type"], watch.Response.Content.Headers.ContentType?.ToString());
        Assert.Equal(golden.Headers["cache-control"], watch.Response.Headers.CacheControl?.ToString());
        Json.AssertSameShape(GoldenExchange.LoadStream("15-watch-too-old.jsonl")[0], await watch.NextAsync());
        Assert.Null(await watch.NextAsync());
    }

    [Fact]
    public async Task Compaction_on_demand_expires_older_versions_but_not_the_current_one()
    {
        var created = await CreateAsync("golden", "pod-a");
        var old = Json.Text(created, "metadata.resourceVersion");
        var renewed = await Api.SendAsync(_client, HttpMethod.Put, $"{Leases}/golden", Api.LeaseBody("golden", "pod-a", old));
        _server.Store.CompactHistory();

        await using (var expired = await WatchAsync($"resourceVersion={old}"))
        {
            var error = await expired.NextAsync();
            Assert.Equal("ERROR", Json.Text(error, "type"));
            Assert.Equal("410", Json.Text(error, "object.code"));
            Assert.Equal("Expired", Json.Text(error, "object.reason"));
        }

        await using var current = await WatchAsync($"resourceVersion={Json.Text(renewed.Json, "metadata.resourceVersion")}");
        _server.Store.Update("demo", "golden", spec => spec with { HolderIdentity = "pod-b" });
        Assert.Equal("MODIFIED", Json.Text(await current.NextAsync(), "type"));
    }

    [Fact]
    public async Task A_small_history_window_expires_on_its_own()
    {
        var created = await CreateAsync("golden", "pod-a");
        for (var i = 0; i < 60; i++)
        {
            _server.Store.Update("demo", "golden", spec => spec with { LeaseTransitions = i });
        }

        await using var watch = await WatchAsync($"resourceVersion={Json.Text(created, "metadata.resourceVersion")}");

        Assert.Equal("410", Json.Text(await watch.NextAsync(), "object.code"));
    }

    [Fact]
    public async Task Periodic_bookmarks_carry_only_the_resource_version()
    {
        await using var server = await LeaseApiServer.StartAsync(new LeaseApiServerOptions
        {
            RequireAuthentication = false,
            BookmarkInterval = TimeSpan.FromMilliseconds(50),
        });
        using var client = server.CreateClient();
        var put = server.Store.Put(LeaseApi.Storage.Lease.Create("demo", "golden", new LeaseApi.Storage.LeaseSpec { HolderIdentity = "pod-a" }));

        await using var watch = await WatchAsync(client, $"resourceVersion={put.Metadata.ResourceVersion}&allowWatchBookmarks=true");
        var bookmark = await watch.NextAsync();

        Assert.Equal("BOOKMARK", Json.Text(bookmark, "type"));
        Assert.Equal(put.Metadata.ResourceVersion, Json.Text(bookmark, "object.metadata.resourceVersion"));
        Json.AssertSameShape(GoldenExchange.LoadStream("14-watch-stream.jsonl")[^1], bookmark);
    }

    [Fact]
    public async Task Without_allow_watch_bookmarks_no_bookmark_is_sent()
    {
        await CreateAsync("golden", "pod-a");
        await using var watch = await WatchAsync($"resourceVersion={_server.Store.Revision}");
        _server.SendBookmarks();
        _server.Store.Update("demo", "golden", spec => spec with { HolderIdentity = "pod-b" });

        Assert.Equal("MODIFIED", Json.Text(await watch.NextAsync(), "type"));
    }

    [Fact]
    public async Task Dropped_watches_end_cleanly_or_with_a_reset()
    {
        await using var clean = await WatchAsync("resourceVersion=0");
        await using var reset = await WatchAsync("resourceVersion=0");
        await Eventually.WaitUntilAsync(() => _server.OpenWatches == 2, "both watches are open");

        _server.DropWatches();

        Assert.Null(await clean.NextAsync());
        Assert.Null(await reset.NextAsync());
        await Eventually.WaitUntilAsync(() => _server.OpenWatches == 0, "the watches are closed");

        await using var aborted = await WatchAsync("resourceVersion=0");
        await Eventually.WaitUntilAsync(() => _server.OpenWatches == 1, "the watch is open");
        _server.DropWatches(abortConnections: true);
        await Assert.ThrowsAnyAsync<IOException>(aborted.NextAsync);
    }

    [Fact]
    public async Task Expired_watches_get_an_error_event_and_must_relist()
    {
        var created = await CreateAsync("golden", "pod-a");
        await using var watch = await WatchAsync("resourceVersion=0");
        Assert.Equal("ADDED", Json.Text(await watch.NextAsync(), "type"));
        _server.Store.Update("demo", "golden", spec => spec with { HolderIdentity = "pod-b" });
        Assert.Equal("MODIFIED", Json.Text(await watch.NextAsync(), "type"));

        _server.ExpireWatches();

        var error = await watch.NextAsync();
        Assert.Equal("ERROR", Json.Text(error, "type"));
        Assert.Equal("Expired", Json.Text(error, "object.reason"));
        Assert.Null(await watch.NextAsync());
        await using var retry = await WatchAsync($"resourceVersion={Json.Text(created, "metadata.resourceVersion")}");
        Assert.Equal("ERROR", Json.Text(await retry.NextAsync(), "type"));
    }

    [Fact]
    public async Task Timeout_seconds_ends_the_stream()
    {
        await using var watch = await WatchAsync("resourceVersion=0&timeoutSeconds=1");

        Assert.Null(await watch.NextAsync());
    }

    [Theory]
    [InlineData("watch=1")]
    [InlineData("watch=true")]
    [InlineData("watch=yes")]
    public async Task Any_watch_value_but_false_or_zero_is_a_watch(string query)
    {
        await CreateAsync("golden", "pod-a");
        await using var watch = await WatchAsync(_client, query, addWatch: false);

        Assert.Equal("ADDED", Json.Text(await watch.NextAsync(), "type"));
    }

    [Fact]
    public async Task Field_selector_filters_other_leases_out()
    {
        await using var watch = await WatchAsync("fieldSelector=metadata.name%3Dgolden&resourceVersion=0");
        await CreateAsync("other", "pod-x");
        await CreateAsync("golden", "pod-a");

        Assert.Equal("golden", Json.Text(await watch.NextAsync(), "object.metadata.name"));
    }

    private Task<WatchReader> WatchAsync(string query) => WatchAsync(_client, query);

    private static Task<WatchReader> WatchAsync(HttpClient client, string query, bool addWatch = true) =>
        WatchReader.OpenAsync(client, $"{Leases}?{(addWatch ? "watch=true&" : "")}{query}");

    private async Task<JsonNode?> CreateAsync(string name, string holder, string time = "2026-11-25T02:04:12.130207Z")
    {
        var (code, json) = await Api.SendAsync(_client, HttpMethod.Post, Leases, Api.LeaseBody(name, holder, time: time));
        Assert.Equal(201, code);
        return json;
    }
}
