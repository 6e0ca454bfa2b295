using System.Collections.Concurrent;
using LeaderSidecar.Election;
using LeaderSidecar.Hosting;
using LeaderSidecar.Stores.Kubernetes;
using LeaderSidecar.Testing.LeaseApi;
using LeaderSidecar.Testing.LeaseApi.Auth;
using Microsoft.Extensions.Logging.Abstractions;

namespace LeaderSidecar.Tests.Stores.Kubernetes;

/// <summary>The Event recorder of <c>--events true</c> against the Lease API test server.</summary>
public sealed class LeaseEventsTests : IAsyncLifetime
{
    private const string Namespace = "demo";
    private readonly TempDirectory _dir = new();
    private readonly ConcurrentQueue<string> _results = [];
    private LeaseApiServer _server = null!;
    private LeadershipState _state = null!;

    public async Task InitializeAsync()
    {
        _server = await LeaseApiServer.StartAsync();
        _server.Tokens.Set("token-a", new ApiUser("system:serviceaccount:demo:a", [LeaseRule.EventsCreate(Namespace)]));
        _state = new LeadershipState(new ElectionOptions { Identity = "me", LeaseName = "app", LeaseNamespace = Namespace }, TimeProvider.System, NullLogger<LeadershipState>.Instance);
    }

    [Fact]
    public async Task A_flood_of_changes_fills_the_queue_drops_and_counts_the_rest_and_never_blocks_the_publisher()
    {
        var kubeconfig = _dir.File("a.kubeconfig");
        _server.WriteKubeconfig(kubeconfig, "token-a", Namespace);
        using var events = new LeaseEvents(KubernetesConnection.FromKubeconfig(kubeconfig), _state, TimeSpan.FromSeconds(5), TimeProvider.System, NullLogger<LeaseEvents>.Instance, _results.Enqueue);

        // Not started yet, so nothing is sent: 14 lead-and-release cycles make 42 events (became
        // leader, stopped leading, released) for a queue of 32. Each call returns at once.
        for (var cycle = 0; cycle < 14; cycle++)
        {
            events.OnStatus(Status(Role.Leader, "me"));
            events.OnStatus(Status(Role.Follower, ""));
        }

        Assert.Equal(Enumerable.Repeat("dropped", (14 * 3) - LeaseEvents.QueueCapacity), _results);

        // Once started, what was queued is sent, each under its own name.
        await events.StartAsync(CancellationToken.None);
        await Poll.UntilAsync(() => Task.FromResult(_results.Count(r => r == "sent") == LeaseEvents.QueueCapacity), TimeSpan.FromSeconds(30), "the queued events sent");
        await events.StopAsync(CancellationToken.None);
        var recorded = _server.Events.In(Namespace);
        Assert.Equal(LeaseEvents.QueueCapacity, recorded.Count);
        Assert.Equal(LeaseEvents.QueueCapacity, recorded.Select(e => (string?)e["metadata"]!["name"]).Distinct().Count());
        Assert.Equal("me became leader", (string?)recorded[0]["message"]);
    }

    private static LeadershipStatus Status(Role role, string holder) => new()
    {
        Identity = "me",
        Role = role,
        Holder = holder,
        Term = 1,
        LeaseName = "app",
        LeaseNamespace = Namespace,
    };

    public async Task DisposeAsync()
    {
        _state.Dispose();
        await _server.DisposeAsync();
        _dir.Dispose();
    }
}
