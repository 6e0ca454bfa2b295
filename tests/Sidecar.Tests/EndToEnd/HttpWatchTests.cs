using System.Diagnostics;
using System.Text.Json;
using LeaderSidecar.Tests.Surfaces.Http;

namespace LeaderSidecar.Tests.EndToEnd;

/// <summary><c>GET /watch</c> (server-sent events) on two real daemons through a hand-over, followed from a shell with <c>curl -N</c>.</summary>
public sealed class HttpWatchTests : IAsyncLifetime
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);
    private static readonly HttpClient Http = new() { Timeout = Timeout.InfiniteTimeSpan };
    private readonly TempDirectory _dir = new();
    private readonly List<DaemonProcess> _daemons = [];
    private readonly List<string> _curlLines = [];
    private Process? _curl;

    [Fact]
    public async Task Curl_follows_a_handover_and_the_old_leaders_stream_ends_with_its_step_down()
    {
        using var cts = new CancellationTokenSource(Deadline);
        var a = await StartAsync("a");
        await Poll.UntilAsync(async () => await a.RoleAsync() == "LEADER", Deadline, "a leads");
        var b = await StartAsync("b");
        await Poll.UntilAsync(async () => await b.RoleAsync() == "FOLLOWER", Deadline, "b follows");

        using var watchA = await EventStream.OpenAsync(Http, a.BaseAddress, cancellationToken: cts.Token);
        Assert.Equal("LEADER", (await watchA.ReadEventAsync(cts.Token))!.Value.Status.GetProperty("role").GetString());
        StartCurl(new Uri(b.BaseAddress, "/watch"));
        await Poll.UntilAsync(() => Task.FromResult(CurlStatuses().Any(s => s.GetProperty("role").GetString() == "FOLLOWER")), Deadline, "curl's first event");

        a.Terminate();

        var fromA = new List<JsonElement>();
        while (await watchA.ReadEventAsync(cts.Token) is { } e)
        {
            fromA.Add(e.Status);
        }

        // Renews before the step-down may still arrive; after it, a says LEADER no more.
        var roles = fromA.Select(s => s.GetProperty("role").GetString()).ToList();
        Assert.NotEmpty(roles);
        Assert.DoesNotContain("LEADER", roles.SkipWhile(r => r == "LEADER"));
        Assert.NotEqual("LEADER", roles[^1]);
        Assert.Equal(0, await a.WaitForExitAsync(Deadline));
        await Poll.UntilAsync(() => Task.FromResult(CurlStatuses().Any(s => s.GetProperty("role").GetString() == "LEADER")), Deadline, "curl sees b lead");
        var leading = CurlStatuses().First(s => s.GetProperty("role").GetString() == "LEADER");
        Assert.Equal(1, leading.GetProperty("term").GetInt64());
        Assert.Equal("b", leading.GetProperty("holder").GetString());
        var ids = CurlLines().Where(l => l.StartsWith("id: ", StringComparison.Ordinal)).Select(l => long.Parse(l[4..], System.Globalization.CultureInfo.InvariantCulture)).ToList();
        Assert.True(ids.Zip(ids.Skip(1)).All(p => p.First < p.Second), "ids must strictly increase");
        Assert.Contains("leader_sidecar_http_watch_streams{name=\"e2e\"} 1\n", await Http.GetStringAsync(new Uri(b.BaseAddress, "/metrics"), cts.Token), StringComparison.Ordinal);
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        if (_curl is { HasExited: false })
        {
            _curl.Kill();
            await _curl.WaitForExitAsync();
        }

        _curl?.Dispose();
        foreach (var daemon in _daemons)
        {
            await daemon.DisposeAsync();
        }

        _dir.Dispose();
    }

    /// <summary><c>curl -N URL</c>, as a user follows leadership from a shell; its stdout is collected line by line.</summary>
    private void StartCurl(Uri url)
    {
        var info = new ProcessStartInfo("curl") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in new[] { "-N", "-sS", url.ToString() })
        {
            info.ArgumentList.Add(argument);
        }

        _curl = Process.Start(info)!;
        _curl.OutputDataReceived += (_, e) =>
        {
            if (e.Data is { } line)
            {
                lock (_curlLines)
                {
                    _curlLines.Add(line);
                }
            }
        };
        _curl.BeginOutputReadLine();
    }

    private List<string> CurlLines()
    {
        lock (_curlLines)
        {
            return [.. _curlLines];
        }
    }

    private List<JsonElement> CurlStatuses() =>
        [.. CurlLines().Where(l => l.StartsWith("data: ", StringComparison.Ordinal)).Select(l => Parse(l["data: ".Length..]))];

    private static JsonElement Parse(string json)
    {
        using var document = JsonDocument.Parse(json);
        return document.RootElement.Clone();
    }

    private async Task<DaemonProcess> StartAsync(string identity)
    {
        var daemon = await DaemonProcess.StartAsync(["--lease-name", "e2e", "--lease-dir", _dir.Path, "--identity", identity]);
        _daemons.Add(daemon);
        return daemon;
    }
}
