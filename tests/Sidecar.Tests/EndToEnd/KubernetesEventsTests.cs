using System.Text.Json.Nodes;
using LeaderSidecar.Testing.LeaseApi;
using LeaderSidecar.Testing.LeaseApi.Auth;

namespace LeaderSidecar.Tests.EndToEnd;

/// <summary><c>--events true</c>: Kubernetes Events on the Lease, as client-go's recorder writes them.</summary>
public sealed class KubernetesEventsTests : IAsyncLifetime
{
    private const string Namespace = "demo";
    private const string Name = "app";
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);
    private static readonly HttpClient Http = new();
    private readonly TempDirectory _dir = new();
    private LeaseApiServer _server = null!;
    private KubernetesDaemons _daemons = null!;

    public async Task InitializeAsync()
    {
        _server = await LeaseApiServer.StartAsync(new LeaseApiServerOptions { UseTls = true });
        _daemons = new KubernetesDaemons(_server, _dir, Namespace, Name);
    }

    [Fact]
    public async Task Acquiring_stepping_down_and_releasing_each_record_an_event_on_the_lease()
    {
        var a = (await _daemons.StartAsync(["--events", "true"], [LeaseRule.EventsCreate(Namespace)], "a"))[0];
        await DaemonProcess.SingleLeaderAsync([a]);

        var became = await EventAsync("a became leader");
        var lease = _server.Store.Get(Namespace, Name)!;
        Assert.StartsWith($"{Name}.", (string?)became["metadata"]!["name"], StringComparison.Ordinal);
        Assert.Equal(Namespace, (string?)became["metadata"]!["namespace"]);
        Assert.Equal("LeaderElection", (string?)became["reason"]);
        Assert.Equal("Normal", (string?)became["type"]);
        Assert.Equal(1, (int?)became["count"]);
        Assert.Equal((string?)became["firstTimestamp"], (string?)became["lastTimestamp"]);
        Assert.Equal("leader-sidecar", (string?)became["source"]!["component"]);
        Assert.Equal("leader-sidecar", (string?)became["reportingComponent"]);
        Assert.Equal("a", (string?)became["reportingInstance"]);
        var involved = became["involvedObject"]!;
        Assert.Equal("Lease", (string?)involved["kind"]);
        Assert.Equal("coordination.k8s.io/v1", (string?)involved["apiVersion"]);
        Assert.Equal(Name, (string?)involved["name"]);
        Assert.Equal(Namespace, (string?)involved["namespace"]);
        Assert.Equal(lease.Metadata.Uid, (string?)involved["uid"]);

        a.Terminate();
        Assert.Equal(0, await a.WaitForExitAsync(TimeSpan.FromSeconds(15)));
        var messages = _server.Events.In(Namespace).Select(e => (string?)e["message"]).ToList();
        Assert.Contains(messages, m => m!.StartsWith("a stopped leading: ", StringComparison.Ordinal));
        Assert.Equal("a released the lease", messages[^1]);
        Assert.Equal(3, messages.Count);
    }

    [Fact]
    public async Task Forbidden_events_are_logged_and_counted_and_the_election_goes_on()
    {
        var all = await _daemons.StartAsync(["--events", "true"], [], "a", "b");
        var leader = await DaemonProcess.SingleLeaderAsync(all);

        await Poll.UntilAsync(
            async () => (await Http.GetStringAsync(new Uri(leader.BaseAddress, "/metrics"))).Contains("leader_sidecar_events_total{name=\"app\",result=\"failed\"} 1\n", StringComparison.Ordinal),
            Deadline,
            "the refused event is counted");

        // Counted first, then logged (and the log is written asynchronously): wait for the line.
        await Poll.UntilAsync(
            () => Task.FromResult(leader.OutputLines.Any(l => l.Contains("Could not record the Kubernetes Event", StringComparison.Ordinal) && l.Contains("403", StringComparison.Ordinal))),
            Deadline,
            "the refused event is logged");
        Assert.Empty(_server.Events.All);

        leader.Terminate();
        Assert.Equal(0, await leader.WaitForExitAsync(TimeSpan.FromSeconds(15)));
        await DaemonProcess.SingleLeaderAsync(all.Where(d => d != leader).ToList());
    }

    [Fact]
    public async Task Without_the_flag_no_event_is_sent()
    {
        var a = (await _daemons.StartAsync([], [LeaseRule.EventsCreate(Namespace)], "a"))[0];
        await DaemonProcess.SingleLeaderAsync([a]);
        a.Terminate();
        Assert.Equal(0, await a.WaitForExitAsync(TimeSpan.FromSeconds(15)));

        Assert.Empty(_server.Events.All);
    }

    private async Task<JsonObject> EventAsync(string message)
    {
        JsonObject? found = null;
        await Poll.UntilAsync(
            () => Task.FromResult((found = _server.Events.In(Namespace).FirstOrDefault(e => (string?)e["message"] == message)) is not null),
            Deadline,
            $"the event \"{message}\"");
        return found!;
    }

    public async Task DisposeAsync()
    {
        await _daemons.DisposeAsync();
        await _server.DisposeAsync();
        _dir.Dispose();
    }
}
