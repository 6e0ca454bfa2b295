using System.Diagnostics;
using System.Net;
using LeaderSidecar.Testing.LeaseApi.Auth;
using LeaderSidecar.Testing.LeaseApi.Faults;

namespace LeaderSidecar.Testing.LeaseApi.Tests.Faults;

public sealed class FaultInjectionTests : IAsyncLifetime
{
    private const string Leases = "apis/coordination.k8s.io/v1/namespaces/demo/leases";
    private LeaseApiServer _server = null!;
    private HttpClient _a = null!;
    private HttpClient _b = null!;

    public async Task InitializeAsync()
    {
        _server = await LeaseApiServer.StartAsync();
        _server.Tokens.Set("a", ApiUser.Admin("replica-a"));
        _server.Tokens.Set("b", ApiUser.Admin("replica-b"));
        _a = _server.CreateClient("a");
        _b = _server.CreateClient("b");
        _server.Store.Put(LeaseApi.Storage.Lease.Create("demo", "golden", new LeaseApi.Storage.LeaseSpec { HolderIdentity = "pod-a" }));
    }

    public async Task DisposeAsync()
    {
        _a.Dispose();
        _b.Dispose();
        await _server.DisposeAsync();
    }

    [Fact]
    public async Task Latency_delays_only_matching_requests_until_removed()
    {
        var latency = _server.Faults.AddLatency(TimeSpan.FromSeconds(1), new RequestFilter(ApiVerb.Get, Token: "a"));

        var slow = Stopwatch.StartNew();
        await Api.SendAsync(_a, HttpMethod.Get, $"{Leases}/golden");
        slow.Stop();
        var other = Stopwatch.StartNew();
        await Api.SendAsync(_b, HttpMethod.Get, $"{Leases}/golden");
        other.Stop();
        latency.Dispose();
        var after = Stopwatch.StartNew();
        await Api.SendAsync(_a, HttpMethod.Get, $"{Leases}/golden");
        after.Stop();

        Assert.True(slow.Elapsed >= TimeSpan.FromSeconds(1), $"delayed request took {slow.Elapsed}");
        Assert.True(other.Elapsed < TimeSpan.FromSeconds(1), $"other token took {other.Elapsed}");
        Assert.True(after.Elapsed < TimeSpan.FromSeconds(1), $"after removal took {after.Elapsed}");
    }

    [Fact]
    public async Task Forced_errors_answer_the_next_requests_with_real_status_bodies()
    {
        _server.Faults.FailNext(2, FaultResponse.InternalError("etcd is sad"), new RequestFilter(ApiVerb.Get));
        _server.Faults.FailNext(1, FaultResponse.TooManyRequests(retryAfterSeconds: 3));

        var first = await Api.SendAsync(_a, HttpMethod.Get, $"{Leases}/golden");
        var second = await Api.SendAsync(_a, HttpMethod.Get, $"{Leases}/golden");
        using var throttled = await _a.GetAsync($"{Leases}/golden");
        var recovered = await Api.SendAsync(_a, HttpMethod.Get, $"{Leases}/golden");

        Assert.Equal(500, first.Code);
        Assert.Equal("InternalError", Json.Text(first.Json, "reason"));
        Assert.Equal("Internal error occurred: etcd is sad", Json.Text(first.Json, "message"));
        Assert.Equal(500, second.Code);
        Assert.Equal(HttpStatusCode.TooManyRequests, throttled.StatusCode);
        Assert.Equal(TimeSpan.FromSeconds(3), throttled.Headers.RetryAfter?.Delta);
        var body = System.Text.Json.Nodes.JsonNode.Parse(await throttled.Content.ReadAsStringAsync());
        Assert.Equal("3", Json.Text(body, "details.retryAfterSeconds"));
        Assert.Equal(200, recovered.Code);
    }

    [Fact]
    public async Task Fail_all_lasts_until_disposed_and_can_be_plain_text()
    {
        using (_server.Faults.FailAll(FaultResponse.TooManyRequestsPlainText(), new RequestFilter(Token: "b")))
        {
            using var response = await _b.GetAsync($"{Leases}/golden");
            Assert.Equal(HttpStatusCode.TooManyRequests, response.StatusCode);
            Assert.Equal("text/plain", response.Content.Headers.ContentType?.MediaType);
            Assert.Equal(200, (await Api.SendAsync(_a, HttpMethod.Get, $"{Leases}/golden")).Code);
        }

        Assert.Equal(200, (await Api.SendAsync(_b, HttpMethod.Get, $"{Leases}/golden")).Code);
    }

    [Fact]
    public async Task A_hang_holds_one_replica_until_released_while_the_other_is_served()
    {
        var partition = _server.Faults.Hang(new RequestFilter(Token: "a"));

        var hung = Api.SendAsync(_a, HttpMethod.Get, $"{Leases}/golden");
        await Eventually.WaitUntilAsync(() => _server.Faults.HungRequests == 1, "the request hangs");
        Assert.Equal(200, (await Api.SendAsync(_b, HttpMethod.Get, $"{Leases}/golden")).Code);
        Assert.False(hung.IsCompleted);

        partition.Dispose();

        Assert.Equal(200, (await hung).Code);
    }

    [Fact]
    public async Task A_hung_request_ends_when_the_client_gives_up()
    {
        using var _ = _server.Faults.Hang();
        using var impatient = _server.CreateClient("a");
        impatient.Timeout = TimeSpan.FromMilliseconds(200);

        await Assert.ThrowsAnyAsync<TaskCanceledException>(() => impatient.GetAsync($"{Leases}/golden"));
        await Eventually.WaitUntilAsync(() => _server.Faults.HungRequests == 0, "the server lets the request go");
    }

    [Fact]
    public async Task A_partition_also_stalls_an_open_watch_of_that_replica()
    {
        await using var watchA = await WatchReader.OpenAsync(_a, $"{Leases}?watch=true&resourceVersion={_server.Store.Revision}");
        await using var watchB = await WatchReader.OpenAsync(_b, $"{Leases}?watch=true&resourceVersion={_server.Store.Revision}");
        await Eventually.WaitUntilAsync(() => _server.OpenWatches == 2, "both watches are open");
        var partition = _server.Faults.Hang(new RequestFilter(Token: "a"));

        _server.Store.Update("demo", "golden", spec => spec with { HolderIdentity = "pod-b" });
        Assert.Equal("pod-b", Json.Text(await watchB.NextAsync(), "object.spec.holderIdentity"));
        var stalled = watchA.NextAsync();
        await Eventually.WaitUntilAsync(() => _server.Faults.HungRequests == 1, "the watch of a is held");
        Assert.False(stalled.IsCompleted);

        partition.Dispose();

        Assert.Equal("pod-b", Json.Text(await stalled, "object.spec.holderIdentity"));
    }

    [Fact]
    public async Task Counters_count_requests_by_verb_and_token()
    {
        _server.Requests.Reset();

        await Api.SendAsync(_a, HttpMethod.Get, $"{Leases}/golden");
        await Api.SendAsync(_a, HttpMethod.Get, $"{Leases}/golden");
        await Api.SendAsync(_b, HttpMethod.Get, $"{Leases}?fieldSelector=metadata.name%3Dgolden");
        await Api.SendAsync(_b, HttpMethod.Post, Leases, Api.LeaseBody("second", "pod-b"));
        var current = _server.Store.Get("demo", "second")!;
        await Api.SendAsync(_b, HttpMethod.Put, $"{Leases}/second", Api.LeaseBody("second", "pod-b", current.Metadata.ResourceVersion));
        await Api.SendAsync(_b, HttpMethod.Delete, $"{Leases}/second");
        using var anonymous = _server.CreateClient();
        await Api.SendAsync(anonymous, HttpMethod.Get, $"{Leases}/golden");
        await using (var watch = await WatchReader.OpenAsync(_a, $"{Leases}?watch=1"))
        {
            await watch.NextAsync();
        }

        Assert.Equal(3, _server.Requests[ApiVerb.Get]);
        Assert.Equal(2, _server.Requests[ApiVerb.Get, "a"]);
        Assert.Equal(1, _server.Requests[ApiVerb.Get, ""]);
        Assert.Equal(1, _server.Requests[ApiVerb.List]);
        Assert.Equal(1, _server.Requests[ApiVerb.Watch, "a"]);
        Assert.Equal(1, _server.Requests[ApiVerb.Create]);
        Assert.Equal(1, _server.Requests[ApiVerb.Update]);
        Assert.Equal(1, _server.Requests[ApiVerb.Delete]);
        Assert.Equal(4, _server.Requests.ForToken("b"));
        Assert.Equal(8, _server.Requests.Total);
    }

    [Fact]
    public async Task Restart_cuts_connections_and_history_but_keeps_the_leases()
    {
        var before = _server.Store.Get("demo", "golden")!;
        await using var watch = await WatchReader.OpenAsync(_a, $"{Leases}?watch=true&resourceVersion={before.Metadata.ResourceVersion}");
        await Eventually.WaitUntilAsync(() => _server.OpenWatches == 1, "the watch is open");
        _server.Store.Update("demo", "golden", spec => spec with { HolderIdentity = "pod-b" });
        Assert.Equal("MODIFIED", Json.Text(await watch.NextAsync(), "type"));

        _server.Restart();

        await Assert.ThrowsAnyAsync<IOException>(watch.NextAsync);
        Assert.Equal("pod-b", Json.Text((await Api.SendAsync(_a, HttpMethod.Get, $"{Leases}/golden")).Json, "spec.holderIdentity"));
        await using var resumed = await WatchReader.OpenAsync(_a, $"{Leases}?watch=true&resourceVersion={before.Metadata.ResourceVersion}");
        Assert.Equal("410", Json.Text(await resumed.NextAsync(), "object.code"));

        _server.Restart(wipeData: true);
        Assert.Equal(404, (await Api.SendAsync(_a, HttpMethod.Get, $"{Leases}/golden")).Code);
    }

    [Fact]
    public async Task Restart_aborts_hung_requests()
    {
        using var _ = _server.Faults.Hang(new RequestFilter(ApiVerb.Update));
        var current = _server.Store.Get("demo", "golden")!;
        var hung = Api.SendAsync(_a, HttpMethod.Put, $"{Leases}/golden", Api.LeaseBody("golden", "pod-a", current.Metadata.ResourceVersion));
        await Eventually.WaitUntilAsync(() => _server.Faults.HungRequests == 1, "the update hangs");

        _server.Restart();

        await Assert.ThrowsAnyAsync<HttpRequestException>(() => hung);
        Assert.Equal(current.Metadata.ResourceVersion, _server.Store.Get("demo", "golden")!.Metadata.ResourceVersion);
    }

    [Fact]
    public async Task Refused_connections_fail_until_allowed_again()
    {
        _server.Faults.RefuseConnections = true;
        using var fresh = _server.CreateClient("a");

        await Assert.ThrowsAnyAsync<HttpRequestException>(() => fresh.GetAsync($"{Leases}/golden"));

        _server.Faults.RefuseConnections = false;
        Assert.Equal(200, (await Api.SendAsync(fresh, HttpMethod.Get, $"{Leases}/golden")).Code);
    }

    [Fact]
    public async Task An_endless_line_sends_an_event_start_and_no_newline_to_matching_watches_only()
    {
        using var rule = _server.Faults.StreamEndlessLine(200_000, new RequestFilter(Token: "a"));
        using var response = await _a.GetAsync($"{Leases}?watch=true", HttpCompletionOption.ResponseHeadersRead);
        await using var body = await response.Content.ReadAsStreamAsync();

        var received = new byte[200_000];
        await body.ReadExactlyAsync(received);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.StartsWith("{\"type\":\"ADDED\",\"object\":{", System.Text.Encoding.ASCII.GetString(received, 0, 40), StringComparison.Ordinal);
        Assert.DoesNotContain((byte)'\n', received);
        await Eventually.WaitUntilAsync(() => _server.Faults.EndlessLineBytesSent == 200_000, "the server counts what it sent");
        await using var other = await WatchReader.OpenAsync(_b, $"{Leases}?watch=true");
        Assert.Equal("ADDED", Json.Text(await other.NextAsync(), "type"));
    }
}
