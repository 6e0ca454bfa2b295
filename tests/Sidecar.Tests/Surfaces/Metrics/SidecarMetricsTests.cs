using System.Globalization;
using System.Text.RegularExpressions;
using LeaderSidecar.Election;
using LeaderSidecar.Surfaces;

namespace LeaderSidecar.Tests.Surfaces.Metrics;

/// <summary>A scrape of <c>/metrics</c>, parsed as the Prometheus text exposition format.</summary>
public sealed partial class SidecarMetricsTests : IAsyncLifetime
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(30) };
    private SurfaceHost _host = null!;

    public async Task InitializeAsync() => _host = await SurfaceHost.StartAsync();

    public async Task DisposeAsync() => await _host.DisposeAsync();

    [Fact]
    public async Task A_scrape_parses_and_reports_the_published_status()
    {
        _host.Publish(Role.Follower, "other", term: 2);
        _host.Publish(Role.Leader, "me", term: 3);

        var scrape = await ScrapeAsync();

        Assert.Equal(1, scrape.Value("leader_election_master_status", ("name", "app")));
        Assert.Equal(0, scrape.Value("leader_election_slowpath_total", ("name", "app")));
        Assert.Equal(1, scrape.Value("leader_sidecar_role", ("name", "app"), ("role", "leader")));
        Assert.Equal(0, scrape.Value("leader_sidecar_role", ("name", "app"), ("role", "follower")));
        Assert.Equal(1, scrape.Value("leader_sidecar_role_changes_total", ("name", "app"), ("role", "leader")));
        Assert.Equal(1, scrape.Value("leader_sidecar_role_changes_total", ("name", "app"), ("role", "follower")));
        Assert.Equal(3, scrape.Value("leader_sidecar_term", ("name", "app")));
        Assert.Equal(1, scrape.Value("leader_sidecar_holder_info", ("name", "app"), ("identity", "me"), ("holder", "me")));
        Assert.InRange(scrape.Value("leader_sidecar_claim_remaining_seconds", ("name", "app")), 1, 60);
        Assert.InRange(scrape.Value("leader_sidecar_lease_observed_age_seconds", ("name", "app")), 0, 30);
        Assert.Equal(0, scrape.Value("leader_sidecar_grpc_watch_streams", ("name", "app")));
        Assert.Equal("gauge", scrape.Types["leader_election_master_status"]);
        Assert.Equal("counter", scrape.Types["leader_election_slowpath_total"]);
        Assert.Equal("histogram", scrape.Types["leader_sidecar_renew_duration_seconds"]);

        _host.Publish(Role.Follower, "other", term: 4);
        scrape = await ScrapeAsync();

        Assert.Equal(0, scrape.Value("leader_election_master_status", ("name", "app")));
        Assert.Equal(0, scrape.Value("leader_sidecar_claim_remaining_seconds", ("name", "app")));
        Assert.Equal(1, scrape.Value("leader_sidecar_holder_info", ("name", "app"), ("identity", "me"), ("holder", "other")));
        Assert.False(scrape.Has("leader_sidecar_holder_info", ("holder", "me")), "the old holder's info series is gone");
    }

    [Fact]
    public async Task Lease_store_requests_are_counted_by_verb_and_result_and_renews_timed()
    {
        var metrics = _host.Metrics;
        metrics.RequestCompleted("update", "renew", null, TimeSpan.FromMilliseconds(30));
        metrics.RequestCompleted("update", "renew", LeaseStoreFailure.Conflict, TimeSpan.FromMilliseconds(3));
        metrics.SlowPath();
        metrics.RequestCompleted("get", "renew", LeaseStoreFailure.ServerError, TimeSpan.FromMilliseconds(7));
        metrics.RequestCompleted("get", "observe", LeaseStoreFailure.Forbidden, TimeSpan.FromMilliseconds(1));
        metrics.RequestCompleted("create", "acquire", null, TimeSpan.FromMilliseconds(1));

        var scrape = await ScrapeAsync();

        Assert.Equal(1, scrape.Value("leader_sidecar_lease_requests_total", ("name", "app"), ("verb", "update"), ("result", "ok")));
        Assert.Equal(1, scrape.Value("leader_sidecar_lease_requests_total", ("name", "app"), ("verb", "update"), ("result", "conflict")));
        Assert.Equal(1, scrape.Value("leader_sidecar_lease_requests_total", ("name", "app"), ("verb", "get"), ("result", "forbidden")));
        Assert.Equal(1, scrape.Value("leader_sidecar_lease_requests_total", ("name", "app"), ("verb", "create"), ("result", "ok")));
        Assert.Equal(1, scrape.Value("leader_sidecar_renew_failures_total", ("name", "app"), ("reason", "conflict")));
        Assert.Equal(1, scrape.Value("leader_sidecar_renew_failures_total", ("name", "app"), ("reason", "server_error")));
        Assert.False(scrape.Has("leader_sidecar_renew_failures_total", ("reason", "forbidden")), "an observe failure is not a renew failure");
        Assert.Equal(1, scrape.Value("leader_election_slowpath_total", ("name", "app")));
        Assert.Equal(2, scrape.Value("leader_sidecar_renew_duration_seconds_count", ("name", "app")));
        Assert.Equal(0.033, scrape.Value("leader_sidecar_renew_duration_seconds_sum", ("name", "app")), 6);
        Assert.Equal(1, scrape.Value("leader_sidecar_renew_duration_seconds_bucket", ("name", "app"), ("le", "0.005")));
        Assert.Equal(2, scrape.Value("leader_sidecar_renew_duration_seconds_bucket", ("name", "app"), ("le", "+Inf")));
    }

    [Fact]
    public async Task A_huge_holder_from_the_lease_gives_a_bounded_metric_label()
    {
        _host.Publish(Role.Follower, new string('h', 1024 * 1024));

        using var response = await Http.GetAsync(new Uri(_host.HttpAddress, "/metrics"));
        var text = await response.Content.ReadAsStringAsync();
        var scrape = Scrape.Parse(text);

        Assert.InRange(text.Length, 1, 64 * 1024);
        var info = Assert.Single(scrape.Samples, s => s.Name == "leader_sidecar_holder_info");
        Assert.Equal(SurfaceText.MaxLength, info.Labels["holder"].Length);
        Assert.EndsWith("...", info.Labels["holder"], StringComparison.Ordinal);

        // The next holder replaces the cut one's series.
        _host.Publish(Role.Follower, "other");
        Assert.Equal(1, Assert.Single((await ScrapeAsync()).Samples, s => s.Name == "leader_sidecar_holder_info").Value);
    }

    private async Task<Scrape> ScrapeAsync()
    {
        using var response = await Http.GetAsync(new Uri(_host.HttpAddress, "/metrics"));
        Assert.Equal("text/plain; version=0.0.4; charset=utf-8", response.Content.Headers.ContentType?.ToString());
        return Scrape.Parse(await response.Content.ReadAsStringAsync());
    }

    /// <summary>
    /// The text exposition format (version 0.0.4): <c># HELP</c> and <c># TYPE</c> lines, then
    /// samples <c>name{label="value",...} number</c>. Anything else fails the test.
    /// </summary>
    private sealed partial record Scrape(List<(string Name, Dictionary<string, string> Labels, double Value)> Samples, Dictionary<string, string> Types)
    {
        private static readonly string[] MetricTypes = ["counter", "gauge", "histogram", "summary", "untyped"];

        public static Scrape Parse(string text)
        {
            var samples = new List<(string, Dictionary<string, string>, double)>();
            var types = new Dictionary<string, string>();
            foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
            {
                if (line.StartsWith("# HELP ", StringComparison.Ordinal))
                {
                    continue;
                }

                if (line.StartsWith("# TYPE ", StringComparison.Ordinal))
                {
                    var parts = line.Split(' ');
                    Assert.Equal(4, parts.Length);
                    Assert.Contains(parts[3], MetricTypes);
                    types[parts[2]] = parts[3];
                    continue;
                }

                var match = SampleLine().Match(line);
                Assert.True(match.Success, $"not a sample line: {line}");
                var labels = new Dictionary<string, string>();
                foreach (Match label in LabelPair().Matches(match.Groups["labels"].Value))
                {
                    labels.Add(label.Groups["name"].Value, label.Groups["value"].Value);
                }

                var value = match.Groups["value"].Value switch
                {
                    "+Inf" => double.PositiveInfinity,
                    "-Inf" => double.NegativeInfinity,
                    var number => double.Parse(number, NumberStyles.Float, CultureInfo.InvariantCulture),
                };
                samples.Add((match.Groups["name"].Value, labels, value));
            }

            var scrape = new Scrape(samples, types);
            foreach (var (name, _, _) in samples)
            {
                var family = types.Keys.Where(t => name == t || name.StartsWith(t + "_", StringComparison.Ordinal)).ToList();
                Assert.True(family.Count > 0, $"sample {name} has no # TYPE line");
            }

            return scrape;
        }

        public double Value(string name, params (string Name, string Value)[] labels)
        {
            var matching = Samples.Where(s => s.Name == name && labels.All(l => s.Labels.GetValueOrDefault(l.Name) == l.Value)).ToList();
            Assert.True(matching.Count == 1, $"expected one sample of {name} with {string.Join(",", labels)}; found {matching.Count}");
            return matching[0].Value;
        }

        public bool Has(string name, params (string Name, string Value)[] labels) =>
            Samples.Any(s => s.Name == name && labels.All(l => s.Labels.GetValueOrDefault(l.Name) == l.Value));

        [GeneratedRegex(@"^(?<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?<labels>[^}]*)\})? (?<value>\S+)$")]
        private static partial Regex SampleLine();

        [GeneratedRegex(@"(?<name>[a-zA-Z_][a-zA-Z0-9_]*)=""(?<value>(?:[^""\\]|\\.)*)"",?")]
        private static partial Regex LabelPair();
    }
}
