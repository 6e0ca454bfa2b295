using LeaderSidecar.Election;
using LeaderSidecar.Stores.Kubernetes;
using LeaderSidecar.Testing.LeaseApi;
using LeaderSidecar.Testing.LeaseApi.Auth;
using Microsoft.Extensions.Logging;

namespace LeaderSidecar.Tests.Stores.Kubernetes;

/// <summary>
/// The <c>leader-sidecar.io/hand-over-to</c> annotation: read as the snapshot's hand-over request,
/// kept by updates in the same term, cleared by the update that starts a new term.
/// </summary>
public sealed class KubernetesHandOverTests : IAsyncLifetime
{
    private const string Namespace = "demo";
    private const string Name = "app";
    private static readonly DateTimeOffset Now = new(2026, 12, 1, 12, 0, 0, TimeSpan.Zero);
    private readonly TempDirectory _dir = new();
    private readonly CancellationToken _ct = new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token;
    private readonly ListLogger<KubernetesLeaseStore> _log = new();
    private LeaseApiServer _server = null!;
    private KubernetesLeaseStore _store = null!;

    public async Task InitializeAsync()
    {
        _server = await LeaseApiServer.StartAsync();
        _server.Tokens.Set("token-a", new ApiUser("system:serviceaccount:demo:a", LeaseRule.ForElection(Namespace, Name)));
        var kubeconfig = _dir.File("kubeconfig");
        _server.WriteKubeconfig(kubeconfig, "token-a", Namespace);
        _store = new KubernetesLeaseStore(KubernetesConnection.FromKubeconfig(kubeconfig), Namespace, Name, TimeSpan.FromSeconds(10), TimeProvider.System, _log);
    }

    private static LeaseRecord Record(string holder, int transitions) => new(holder, 15, Now, Now, transitions);

    [Theory]
    [InlineData("b@3", "b", 3)]
    [InlineData("pod-7f9c@0", "pod-7f9c", 0)]
    [InlineData("user@example.org@12", "user@example.org", 12)]
    public void A_well_formed_value_names_an_identity_and_a_term(string value, string identity, int term)
    {
        Assert.Equal(new HandOverRequest(identity, term), HandOverAnnotation.Parse(value, out var problem));
        Assert.Null(problem);
    }

    [Theory]
    [InlineData("")]
    [InlineData("b")]
    [InlineData("@3")]
    [InlineData("b@")]
    [InlineData("b@-1")]
    [InlineData("b@+1")]
    [InlineData("b@ 3")]
    [InlineData("b@3x")]
    [InlineData("b@99999999999")]
    [InlineData("b\n@3")]
    public void A_malformed_value_is_no_request(string value)
    {
        Assert.Null(HandOverAnnotation.Parse(value, out var problem));
        Assert.NotNull(problem);
    }

    [Fact]
    public async Task The_annotation_is_read_as_the_hand_over_request_and_a_malformed_one_is_ignored_and_logged_once()
    {
        await _store.CreateAsync(Record("a", 4), _ct);
        Assert.Null((await _store.GetAsync(_ct))!.HandOver);

        Annotate(new() { [HandOverAnnotation.Key] = "b@4" });
        Assert.Equal(new HandOverRequest("b", 4), (await _store.GetAsync(_ct))!.HandOver);

        Annotate(new() { [HandOverAnnotation.Key] = "b-at-4" });
        Assert.Null((await _store.GetAsync(_ct))!.HandOver);
        Assert.Null((await _store.GetAsync(_ct))!.HandOver);
        var warning = Assert.Single(_log.Entries, e => e.Event.Name == "MalformedHandOver");
        Assert.Equal(LogLevel.Warning, warning.Level);
        Assert.Contains("b-at-4", warning.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_renew_and_a_release_keep_the_request_and_an_acquisition_clears_it_but_no_other_annotation()
    {
        await _store.CreateAsync(Record("a", 4), _ct);
        Annotate(new() { [HandOverAnnotation.Key] = "b@4", ["team"] = "payments" });

        var renewed = await _store.UpdateAsync((await _store.GetAsync(_ct))!, Record("a", 4) with { RenewTime = Now.AddSeconds(2) }, _ct);
        Assert.Equal(new HandOverRequest("b", 4), renewed.HandOver);
        var released = await _store.UpdateAsync(renewed, new LeaseRecord("", 1, Now, Now.AddSeconds(3), 4), _ct);
        Assert.Equal(new HandOverRequest("b", 4), released.HandOver);
        Assert.Equal("b@4", _server.Store.Get(Namespace, Name)!.Metadata.Annotations![HandOverAnnotation.Key]);

        var acquired = await _store.UpdateAsync(released, Record("b", 5), _ct);
        Assert.Null(acquired.HandOver);
        var annotations = _server.Store.Get(Namespace, Name)!.Metadata.Annotations!;
        Assert.False(annotations.ContainsKey(HandOverAnnotation.Key));
        Assert.Equal("payments", annotations["team"]);
    }

    [Fact]
    public async Task An_acquisition_that_removes_the_only_annotation_leaves_none()
    {
        await _store.CreateAsync(Record("a", 0), _ct);
        Annotate(new() { [HandOverAnnotation.Key] = "ghost@0" });

        var acquired = await _store.UpdateAsync((await _store.GetAsync(_ct))!, Record("b", 1), _ct);

        Assert.Null(acquired.HandOver);
        Assert.Null(_server.Store.Get(Namespace, Name)!.Metadata.Annotations);
    }

    [Fact]
    public async Task An_annotation_edit_reaches_a_watcher_as_a_change_with_the_record_unchanged()
    {
        var created = await _store.CreateAsync(Record("a", 2), _ct);
        await using var watch = _store.WatchAsync(_ct).GetAsyncEnumerator(_ct);
        Assert.True(await watch.MoveNextAsync());

        Annotate(new() { [HandOverAnnotation.Key] = "b@2" });

        Assert.True(await watch.MoveNextAsync());
        var edited = watch.Current!;
        Assert.Equal(new HandOverRequest("b", 2), edited.HandOver);
        Assert.Equal(created.Record, edited.Record);
        Assert.NotEqual(created.Version, edited.Version);
    }

    [Fact]
    public async Task A_release_over_a_watched_annotated_version_keeps_the_request()
    {
        var created = await _store.CreateAsync(Record("a", 0), _ct);
        await using var watch = _store.WatchAsync(_ct).GetAsyncEnumerator(_ct);
        Assert.True(await watch.MoveNextAsync());
        var renewed = await _store.UpdateAsync(created, Record("a", 0) with { RenewTime = Now.AddSeconds(1) }, _ct);
        Annotate(new() { [HandOverAnnotation.Key] = "b@0" });
        LeaseSnapshot? edited = null;
        while (edited?.HandOver is null)
        {
            Assert.True(await watch.MoveNextAsync());
            edited = watch.Current;
        }

        var released = await _store.UpdateAsync(edited, new LeaseRecord("", 1, Now, Now.AddSeconds(3), 0), _ct);
        Assert.Equal(new HandOverRequest("b", 0), released.HandOver);
        Assert.NotEqual(renewed.Version, released.Version);
    }

    /// <summary>Replaces the Lease's annotations behind the API, as <c>kubectl annotate</c> would.</summary>
    private void Annotate(Dictionary<string, string> annotations)
    {
        var lease = _server.Store.Get(Namespace, Name)!;
        _server.Store.Put(lease with { Metadata = lease.Metadata with { Annotations = annotations } });
    }

    public async Task DisposeAsync()
    {
        _store.Dispose();
        await _server.DisposeAsync();
        _dir.Dispose();
    }
}
