using System.Diagnostics;
using System.Net;
using System.Text.Json;
using LeaderSidecar.Election;
using LeaderSidecar.Surfaces;
using LeaderSidecar.Surfaces.Http;

namespace LeaderSidecar.Tests.Surfaces.Http;

/// <summary>Long-poll, health and readiness on the HTTP surface, in this process.</summary>
public sealed class HttpSurfaceTests : IAsyncLifetime
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(30) };
    private SurfaceHost _host = null!;

    public async Task InitializeAsync() => _host = await SurfaceHost.StartAsync();

    public async Task DisposeAsync() => await _host.DisposeAsync();

    [Fact]
    public async Task A_long_poll_answers_as_soon_as_this_replica_leads()
    {
        _host.Publish(Role.Follower, "other");
        var poll = GetAsync("/leader?wait=30s");
        Assert.False(poll.IsCompleted);

        var leader = _host.Publish(Role.Leader, "me", term: 3);

        var (code, body) = await poll;
        Assert.Equal(HttpStatusCode.OK, code);
        Assert.Equal("LEADER", body.GetProperty("role").GetString());
        Assert.Equal(leader.Revision, body.GetProperty("revision").GetInt64());
    }

    [Fact]
    public async Task A_long_poll_answers_503_with_the_status_when_the_wait_ends()
    {
        _host.Publish(Role.Follower, "other");
        var waited = Stopwatch.StartNew();

        var (code, body) = await GetAsync("/leader?wait=300ms");

        Assert.True(waited.Elapsed >= TimeSpan.FromMilliseconds(290), $"answered after {waited.Elapsed}");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, code);
        Assert.Equal("FOLLOWER", body.GetProperty("role").GetString());
        Assert.Equal("other", body.GetProperty("holder").GetString());
    }

    [Fact]
    public async Task A_long_poll_on_the_leader_answers_at_once()
    {
        _host.Publish(Role.Leader, "me");

        var (code, _) = await GetAsync("/leader?wait=5m");

        Assert.Equal(HttpStatusCode.OK, code);
    }

    [Theory]
    [InlineData("/leader?wait=soon", "invalid duration")]
    [InlineData("/leader?wait=-1s", "must not be negative")]
    [InlineData("/leader?wait=", "empty duration")]
    [InlineData("/leader?wait=1s&wait=2s", "more than once")]
    [InlineData("/leader?wait=100000000000000000000h", "duration \"100000000000000000000h\" is too large")]
    [InlineData("/leader?wait=-", "a sign alone is not a duration")]
    [InlineData("/leader?wait=1s%0A2s", "unknown unit \"s\\n\" in duration \"1s\\n2s\"")]
    public async Task A_bad_wait_is_a_400_with_a_one_line_json_error(string path, string expected)
    {
        using var response = await Http.GetAsync(new Uri(_host.HttpAddress, path));
        var text = await response.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.DoesNotContain('\n', text);
        using var json = JsonDocument.Parse(text);
        Assert.Contains(expected, json.RootElement.GetProperty("error").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Readyz_passes_once_the_lease_was_observed_and_healthz_while_the_process_works()
    {
        var (notReady, reason) = await GetAsync("/readyz");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, notReady);
        Assert.Equal("failing", reason.GetProperty("status").GetString());
        Assert.Contains("not been observed", reason.GetProperty("reason").GetString(), StringComparison.Ordinal);

        // Not being able to see the lease is not a liveness failure.
        var (healthy, _) = await GetAsync("/healthz");
        Assert.Equal(HttpStatusCode.OK, healthy);

        _host.Publish(Role.Follower, "other");
        var (ready, body) = await GetAsync("/readyz");
        Assert.Equal(HttpStatusCode.OK, ready);
        Assert.Equal("ok", body.GetProperty("status").GetString());
        Assert.False(body.TryGetProperty("reason", out _));
    }

    [Fact]
    public async Task A_wait_longer_than_the_longest_long_poll_is_shortened()
    {
        _host.Publish(Role.Follower, "other");
        var poll = GetAsync("/leader?wait=1000000h");
        Assert.False(poll.IsCompleted);

        _host.Publish(Role.Leader, "me");

        Assert.Equal(HttpStatusCode.OK, (await poll).Code);
        Assert.Equal(TimeSpan.FromMinutes(5), HttpSurface.MaxWait);
    }

    [Fact]
    public async Task A_huge_holder_from_the_lease_gives_a_bounded_status_body()
    {
        var holder = new string('h', 1024 * 1024);
        _host.Publish(Role.Follower, holder);

        using var response = await Http.GetAsync(new Uri(_host.HttpAddress, "/status"));
        var text = await response.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.InRange(text.Length, 1, 4 * 1024);
        using var json = JsonDocument.Parse(text);
        var shown = json.RootElement.GetProperty("holder").GetString()!;
        Assert.Equal(SurfaceText.MaxLength, shown.Length);
        Assert.StartsWith(new string('h', 1000), shown, StringComparison.Ordinal);
        Assert.EndsWith("...", shown, StringComparison.Ordinal);
        Assert.Equal(shown, json.RootElement.GetProperty("name").GetString());
    }

    [Fact]
    public void Text_is_cut_to_the_bound_without_splitting_a_surrogate_pair()
    {
        var exact = new string('x', SurfaceText.MaxLength);
        Assert.Same(exact, SurfaceText.Bound(exact));

        // A pair (an emoji) straddling the cut is dropped whole.
        var straddling = new string('x', SurfaceText.MaxLength - 4) + "\U0001F600" + new string('x', 10);
        var cut = SurfaceText.Bound(straddling);
        Assert.Equal(new string('x', SurfaceText.MaxLength - 4) + "...", cut);
    }

    [Fact]
    public async Task Request_headers_over_the_limit_are_refused()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(_host.HttpAddress, "/status"));
        request.Headers.Add("X-Padding", new string('p', RequestLimits.MaxRequestHeadersBytes + 1));

        using var response = await Http.SendAsync(request);

        Assert.Equal(HttpStatusCode.RequestHeaderFieldsTooLarge, response.StatusCode);
    }

    [Fact]
    public async Task A_request_line_over_the_limit_is_refused()
    {
        using var response = await Http.GetAsync(new Uri(_host.HttpAddress, "/status?pad=" + new string('p', RequestLimits.MaxRequestLineBytes)));

        Assert.Equal(HttpStatusCode.RequestUriTooLong, response.StatusCode);
    }

    private async Task<(HttpStatusCode Code, JsonElement Body)> GetAsync(string path)
    {
        using var response = await Http.GetAsync(new Uri(_host.HttpAddress, path));
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return (response.StatusCode, json.RootElement.Clone());
    }
}
