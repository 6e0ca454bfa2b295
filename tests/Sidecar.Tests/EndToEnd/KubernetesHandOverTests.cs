using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using LeaderSidecar.Testing.LeaseApi;
using LeaderSidecar.Testing.LeaseApi.Auth;

namespace LeaderSidecar.Tests.EndToEnd;

/// <summary>
/// The targeted hand-over on real daemons: an operator annotates the Lease
/// <c>leader-sidecar.io/hand-over-to=IDENTITY@TERM</c> through the API, as <c>kubectl annotate</c> does.
/// </summary>
public sealed class KubernetesHandOverTests : IAsyncLifetime
{
    private const string Namespace = "demo";
    private const string Name = "app";
    private const string Annotation = "leader-sidecar.io/hand-over-to";
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);
    private readonly TempDirectory _dir = new();
    private LeaseApiServer _server = null!;
    private KubernetesDaemons _daemons = null!;

    public async Task InitializeAsync()
    {
        _server = await LeaseApiServer.StartAsync(new LeaseApiServerOptions { UseTls = true });
        _server.Tokens.Set("token-operator", new ApiUser("kubernetes-admin", [LeaseRule.All]));
        _daemons = new KubernetesDaemons(_server, _dir, Namespace, Name);
    }

    [Fact]
    public async Task The_named_replica_leads_next_and_the_annotation_is_gone()
    {
        // The default 15 s lease: without a hand-over nobody would lead anew within the test's deadline.
        var all = await StartAsync([], "a", "b", "c");
        var leader = await DaemonProcess.SingleLeaderAsync(all);
        var (_, term) = await leader.RoleAndTermAsync();
        var named = all.First(d => d != leader);
        var identity = (await named.GetAsync("/status")).Body.GetProperty("identity").GetString()!;

        await AnnotateAsync($"{identity}@{term}");

        await Poll.UntilAsync(
            async () => _server.Store.Get(Namespace, Name)!.Spec.HolderIdentity == identity && await named.RoleAsync() == "LEADER",
            Deadline,
            $"{identity} leads");
        Assert.Same(named, await DaemonProcess.SingleLeaderAsync(all));
        var lease = _server.Store.Get(Namespace, Name)!;
        Assert.Equal(term + 1, lease.Spec.LeaseTransitions);
        Assert.False(lease.Metadata.Annotations?.ContainsKey(Annotation) ?? false);
    }

    [Fact]
    public async Task A_lease_handed_to_a_replica_that_does_not_exist_is_taken_by_another_after_the_grace()
    {
        var all = await StartAsync(["--lease-duration", "3s", "--renew-deadline", "2s", "--retry-period", "500ms"], "a", "b", "c");
        var leader = await DaemonProcess.SingleLeaderAsync(all);
        var (_, term) = await leader.RoleAndTermAsync();

        await AnnotateAsync($"ghost@{term}");

        // Released with the request kept: for a lease duration, it is ghost's to take.
        await Poll.UntilAsync(
            () => Task.FromResult(_server.Store.Get(Namespace, Name) is { Spec.HolderIdentity: "" } released
                && released.Metadata.Annotations?.GetValueOrDefault(Annotation) == $"ghost@{term}"),
            Deadline,
            "the leader released the lease handed to ghost");
        await Poll.UntilAsync(
            () => Task.FromResult(_server.Store.Get(Namespace, Name)!.Spec.LeaseTransitions == term + 1),
            Deadline,
            "someone took the lease handed to ghost");
        await DaemonProcess.SingleLeaderAsync(all);
        var lease = _server.Store.Get(Namespace, Name)!;
        Assert.NotEqual("ghost", lease.Spec.HolderIdentity);
        Assert.False(lease.Metadata.Annotations?.ContainsKey(Annotation) ?? false);
        Assert.Contains(leader.OutputLines, l => l.Contains("hand the lease of term", StringComparison.Ordinal) && l.Contains("ghost", StringComparison.Ordinal));
    }

    /// <summary>What <c>kubectl annotate lease app leader-sidecar.io/hand-over-to=VALUE</c> does: read, add the annotation, write back.</summary>
    private async Task AnnotateAsync(string value)
    {
        using var kubectl = _server.CreateClient("token-operator");
        var path = $"apis/coordination.k8s.io/v1/namespaces/{Namespace}/leases/{Name}";
        var lease = JsonNode.Parse(await kubectl.GetStringAsync(path))!;
        var metadata = lease["metadata"]!.AsObject();
        if (metadata["annotations"] is not JsonObject annotations)
        {
            metadata["annotations"] = annotations = [];
        }

        annotations[Annotation] = value;
        using var answer = await kubectl.PutAsync(path, new StringContent(lease.ToJsonString(), Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
    }

    private Task<List<DaemonProcess>> StartAsync(string[] extra, params string[] identities) =>
        _daemons.StartAsync(extra, [], identities);

    public async Task DisposeAsync()
    {
        await _daemons.DisposeAsync();
        await _server.DisposeAsync();
        _dir.Dispose();
    }
}
