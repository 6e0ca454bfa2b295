using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using LeaderSidecar.Tests.EndToEnd;

namespace LeaderSidecar.Tests.Deploy;

/// <summary>
/// deploy/monitoring: the alerts fire on made-up series and stay quiet on healthy ones
/// (<c>promtool test rules</c>, Debian's <c>prometheus</c> package), and every metric the alerts
/// and the Grafana dashboard query is one a running daemon serves on <c>/metrics</c>.
/// </summary>
public sealed partial class MonitoringTests
{
    private const string RulePath = "deploy/monitoring/prometheus-rule.yaml";
    private const string RuleTestPath = "deploy/monitoring/rules-test.yaml";
    private const string DashboardPath = "deploy/monitoring/dashboard.json";

    [Fact]
    public async Task Every_alert_fires_on_its_made_up_series_and_stays_quiet_on_a_healthy_one()
    {
        using var dir = new TempDirectory();
        // The PrometheusRule's spec is a plain rule file; JSON is YAML, so promtool reads it as is.
        await File.WriteAllTextAsync(dir.File("rules.yaml"), Spec().ToJsonString());
        File.Copy(Repository.PathOf(RuleTestPath), dir.File("rules-test.yaml"));

        var check = await PromtoolAsync(dir.Path, "check", "rules", "rules.yaml");
        Assert.True(check.ExitCode == 0, check.Output);
        var test = await PromtoolAsync(dir.Path, "test", "rules", "rules-test.yaml");
        Assert.True(test.ExitCode == 0, test.Output);

        // Each alert is shown both ways: firing in some test, and quiet in another.
        var cases = Yaml.LoadSingle(Repository.PathOf(RuleTestPath))["tests"]!.AsArray()
            .SelectMany(t => t!["alert_rule_test"]!.AsArray())
            .Select(c => (Name: (string)c!["alertname"]!, Fires: c["exp_alerts"]!.AsArray().Count > 0))
            .ToList();
        var alerts = Rules().Select(r => (string?)r["alert"]).OfType<string>().ToList();
        Assert.Equal(5, alerts.Count);
        foreach (var alert in alerts)
        {
            Assert.Contains((alert, true), cases);
            Assert.Contains((alert, false), cases);
        }
    }

    [Fact]
    public async Task Every_metric_the_alerts_and_the_dashboard_query_is_one_the_daemon_serves()
    {
        using var dir = new TempDirectory();
        await using var daemon = await DaemonProcess.StartAsync("--lease-name", "monitoring", "--lease-dir", dir.Path, "--identity", "a");
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        var metrics = await http.GetStringAsync(new Uri(daemon.BaseAddress, "/metrics"));

        // "# TYPE name kind": a histogram also serves name_bucket, name_sum and name_count.
        var served = new HashSet<string>(StringComparer.Ordinal);
        foreach (Match type in TypeLine().Matches(metrics))
        {
            var name = type.Groups["name"].Value;
            served.Add(name);
            if (type.Groups["kind"].Value == "histogram")
            {
                served.UnionWith([name + "_bucket", name + "_sum", name + "_count"]);
            }
        }

        var queries = Rules().Select(r => (string)r["expr"]!)
            .Concat(Strings(JsonNode.Parse(await File.ReadAllTextAsync(Repository.PathOf(DashboardPath)))))
            .ToList();
        var used = queries.SelectMany(q => MetricName().Matches(q).Select(m => m.Value)).ToHashSet(StringComparer.Ordinal);

        Assert.True(used.Count >= 8, $"only {used.Count} metrics found in the queries: {string.Join(", ", used)}");
        Assert.Equal([], used.Where(name => !served.Contains(name)).Order());
    }

    [Fact]
    public void The_dashboard_has_a_panel_for_roles_transitions_renew_latency_and_failures_by_reason()
    {
        var dashboard = JsonNode.Parse(File.ReadAllText(Repository.PathOf(DashboardPath)))!;
        var panels = dashboard["panels"]!.AsArray().Select(p => (Title: (string)p!["title"]!, Queries: string.Join('\n', Strings(p["targets"])))).ToList();

        Assert.Contains(panels, p => p.Queries.Contains("leader_sidecar_role{", StringComparison.Ordinal) && p.Queries.Contains("by (pod)", StringComparison.Ordinal));
        Assert.Contains(panels, p => p.Queries.Contains("leader_sidecar_role_changes_total", StringComparison.Ordinal));
        Assert.Contains(panels, p => p.Queries.Contains("histogram_quantile", StringComparison.Ordinal) && p.Queries.Contains("leader_sidecar_renew_duration_seconds_bucket", StringComparison.Ordinal));
        Assert.Contains(panels, p => p.Queries.Contains("leader_sidecar_renew_failures_total", StringComparison.Ordinal) && p.Queries.Contains("by (reason)", StringComparison.Ordinal));
        Assert.Equal(panels.Count, panels.Select(p => p.Title).Distinct().Count());
    }

    private static JsonObject Spec() => (JsonObject)Yaml.LoadSingle(Repository.PathOf(RulePath))["spec"]!.DeepClone();

    private static IEnumerable<JsonNode> Rules() =>
        Spec()["groups"]!.AsArray().SelectMany(g => g!["rules"]!.AsArray()).OfType<JsonNode>();

    /// <summary>Every string in the tree: the dashboard's queries are in <c>expr</c> and in its variables' <c>query</c>.</summary>
    private static IEnumerable<string> Strings(JsonNode? node) => node switch
    {
        JsonObject map => map.SelectMany(pair => Strings(pair.Value)),
        JsonArray list => list.SelectMany(Strings),
        JsonValue value when value.GetValueKind() == JsonValueKind.String => [value.GetValue<string>()],
        _ => [],
    };

    private static async Task<(int ExitCode, string Output)> PromtoolAsync(string directory, params string[] args)
    {
        var info = new ProcessStartInfo("promtool") { WorkingDirectory = directory, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        Process process;
        try
        {
            process = Process.Start(info)!;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException("promtool is not installed (Debian's prometheus package; scripts/install-test-deps installs it)", e);
        }

        using (process)
        {
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
            return (process.ExitCode, await stdout + await stderr);
        }
    }

    [GeneratedRegex(@"^# TYPE (?<name>[a-z_]+) (?<kind>[a-z]+)$", RegexOptions.Multiline)]
    private static partial Regex TypeLine();

    [GeneratedRegex(@"\bleader_(?:sidecar|election)_[a-z_]+")]
    private static partial Regex MetricName();
}
