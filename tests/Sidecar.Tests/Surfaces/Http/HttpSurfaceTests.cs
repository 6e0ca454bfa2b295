using System.Diagnostics;
using System.Net;
using System.Text.Json;
using LeaderSidecar.Election;

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

    private async Task<(HttpStatusCode Code, JsonElement Body)> GetAsync(string path)
    {
        using var response = await Http.GetAsync(new Uri(_host.HttpAddress, path));
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return (response.StatusCode, json.RootElement.Clone());
    }
}
