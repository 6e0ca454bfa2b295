using LeaderSidecar.Election;
using LeaderSidecar.Stores.Kubernetes;
using LeaderSidecar.Testing.LeaseApi;
using LeaderSidecar.Testing.LeaseApi.Auth;
using LeaderSidecar.Testing.LeaseApi.Faults;
using LeaderSidecar.Testing.LeaseApi.Storage;
using Microsoft.Extensions.Logging.Abstractions;

namespace LeaderSidecar.Tests.Stores.Kubernetes;

/// <summary>The Kubernetes lease store against the Lease API test server, over real HTTP.</summary>
public sealed class KubernetesLeaseStoreTests : IAsyncLifetime
{
    private const string Namespace = "demo";
    private const string Name = "app";
    private static readonly DateTimeOffset Now = new(2026, 11, 25, 2, 4, 12, TimeSpan.Zero);
    private readonly TempDirectory _dir = new();
    private readonly CancellationToken _ct = new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token;
    private readonly List<KubernetesLeaseStore> _stores = [];
    private LeaseApiServer _server = null!;

    public async Task InitializeAsync()
    {
        _server = await LeaseApiServer.StartAsync();
        _server.Tokens.Set("token-a", new ApiUser("system:serviceaccount:demo:a", LeaseRule.ForElection(Namespace, Name)));
        _server.Tokens.Set("token-b", new ApiUser("system:serviceaccount:demo:b", LeaseRule.ForElection(Namespace, Name)));
        _server.Tokens.Set("nobody", new ApiUser("system:serviceaccount:demo:nobody", []));
    }

    private static LeaseRecord Record(string holder, int transitions = 0) =>
        new(holder, 15, Now.AddTicks(1_302_070), Now.AddTicks(1_302_070), transitions);

    [Fact]
    public async Task Create_read_and_compare_and_swap_with_least_privilege()
    {
        var store = Store("token-a");

        Assert.Null(await store.GetAsync(_ct));
        var created = await store.CreateAsync(Record("a"), _ct);
        Assert.Equal(created, await Store("token-b").GetAsync(_ct));
        Assert.Equal(Record("a"), created.Record);

        var renewed = await store.UpdateAsync(created, Record("a") with { RenewTime = Now.AddSeconds(2) }, _ct);
        var stale = await Assert.ThrowsAsync<LeaseStoreException>(() => Store("token-b").UpdateAsync(created, Record("b", 1), _ct));
        var exists = await Assert.ThrowsAsync<LeaseStoreException>(() => Store("token-b").CreateAsync(Record("b"), _ct));

        Assert.Equal(LeaseStoreFailure.Conflict, stale.Reason);
        Assert.Equal(LeaseStoreFailure.Conflict, exists.Reason);
        Assert.Equal(created.Uid, renewed.Uid);
        Assert.NotEqual(created.Version, renewed.Version);
        Assert.Equal("a", _server.Store.Get(Namespace, Name)!.Spec.HolderIdentity);
    }

    [Fact]
    public async Task A_whole_second_time_is_written_as_a_valid_micro_time()
    {
        // The server's MicroTime parser wants exactly six fractional digits, even for ".000000".
        var store = Store("token-a");
        var wholeSecond = new LeaseRecord("a", 15, Now, Now.AddTicks(1234567), 0);

        var created = await store.CreateAsync(wholeSecond, _ct);

        Assert.Equal(Now, created.Record.AcquireTime);
        Assert.Equal(Now.AddTicks(1234560), created.Record.RenewTime);
    }

    [Fact]
    public async Task An_update_keeps_labels_and_annotations_others_put_on_the_lease()
    {
        var store = Store("token-a");
        var created = await store.CreateAsync(Record("a"), _ct);
        var labelled = _server.Store.Put(_server.Store.Get(Namespace, Name)! with
        {
            Metadata = _server.Store.Get(Namespace, Name)!.Metadata with { Labels = new Dictionary<string, string> { ["team"] = "payments" } },
        });
        var current = (await store.GetAsync(_ct))!;

        await store.UpdateAsync(current, Record("a") with { RenewTime = Now.AddSeconds(2) }, _ct);

        Assert.Equal("payments", _server.Store.Get(Namespace, Name)!.Metadata.Labels!["team"]);
        Assert.NotEqual(created.Version, labelled.Metadata.ResourceVersion);
    }

    [Fact]
    public async Task Rbac_refusals_and_bad_tokens_are_reported_by_reason()
    {
        var forbidden = await Assert.ThrowsAsync<LeaseStoreException>(() => Store("nobody").GetAsync(_ct));
        var unauthorized = await Assert.ThrowsAsync<LeaseStoreException>(() => Store("wrong-token").GetAsync(_ct));

        Assert.Equal(LeaseStoreFailure.Forbidden, forbidden.Reason);
        Assert.Contains("cannot get resource \"leases\"", forbidden.Message, StringComparison.Ordinal);
        Assert.Equal(LeaseStoreFailure.Unauthorized, unauthorized.Reason);
    }

    [Fact]
    public async Task Server_errors_throttling_and_hangs_are_reported_by_reason()
    {
        var store = Store("token-a");
        _server.Faults.FailNext(1, FaultResponse.InternalError());
        var serverError = await Assert.ThrowsAsync<LeaseStoreException>(() => store.GetAsync(_ct));
        _server.Faults.FailNext(1, FaultResponse.TooManyRequests());
        var throttled = await Assert.ThrowsAsync<LeaseStoreException>(() => store.GetAsync(_ct));

        Assert.Equal(LeaseStoreFailure.ServerError, serverError.Reason);
        Assert.Equal(LeaseStoreFailure.Throttled, throttled.Reason);

        using (_server.Faults.Hang())
        {
            using var shortly = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => store.GetAsync(shortly.Token));
        }

        Assert.Null(await store.GetAsync(_ct));
    }

    [Fact]
    public async Task A_hostile_lease_is_read_without_crashing()
    {
        _server.Store.Put(Lease.Create(Namespace, Name, new LeaseSpec
        {
            HolderIdentity = new string('x', 50_000),
            LeaseDurationSeconds = int.MaxValue,
            LeaseTransitions = int.MaxValue,
        }));

        var lease = await Store("token-a").GetAsync(_ct);

        Assert.Equal(int.MaxValue, lease!.Record.LeaseDurationSeconds);
        Assert.Null(lease.Record.RenewTime);
        Assert.Equal(50_000, lease.Record.HolderIdentity.Length);
    }

    [Fact]
    public async Task The_watch_lists_first_then_streams_every_change_of_the_one_lease()
    {
        var store = Store("token-a");
        await using var watch = store.WatchAsync(_ct).GetAsyncEnumerator(_ct);
        Assert.True(await watch.MoveNextAsync());
        Assert.Null(watch.Current);

        _server.Store.Put(Lease.Create(Namespace, "other", new LeaseSpec { HolderIdentity = "z", LeaseDurationSeconds = 5 }));
        var created = await Store("token-b").CreateAsync(Record("b"), _ct);
        Assert.True(await watch.MoveNextAsync());
        Assert.Equal(created, watch.Current);

        var released = await Store("token-b").UpdateAsync(created, new LeaseRecord("", 1, Now, Now.AddTicks(10), 0), _ct);
        Assert.True(await watch.MoveNextAsync());
        Assert.Equal(released, watch.Current);

        _server.Store.Delete(Namespace, Name);
        Assert.True(await watch.MoveNextAsync());
        Assert.Null(watch.Current);
    }

    [Fact]
    public async Task A_watch_that_is_too_old_re_lists_and_carries_on()
    {
        var store = Store("token-a");
        var created = await store.CreateAsync(Record("a"), _ct);
        await using var watch = store.WatchAsync(_ct).GetAsyncEnumerator(_ct);
        Assert.True(await watch.MoveNextAsync());
        var lists = _server.Requests[ApiVerb.List];
        var next = watch.MoveNextAsync().AsTask();
        await Poll.UntilAsync(() => Task.FromResult(_server.OpenWatches == 1), TimeSpan.FromSeconds(10), "the watch is open");

        _server.ExpireWatches();
        Assert.True(await next);
        Assert.Equal(created, watch.Current);
        Assert.Equal(lists + 1, _server.Requests[ApiVerb.List]);

        var renewed = await store.UpdateAsync(created, Record("a") with { RenewTime = Now.AddSeconds(2) }, _ct);
        Assert.True(await watch.MoveNextAsync());
        Assert.Equal(renewed, watch.Current);
    }

    [Fact]
    public async Task A_dropped_watch_resumes_from_its_last_version_without_listing_again()
    {
        var store = Store("token-a");
        var created = await store.CreateAsync(Record("a"), _ct);
        await using (var first = store.WatchAsync(_ct).GetAsyncEnumerator(_ct))
        {
            Assert.True(await first.MoveNextAsync());
            var end = first.MoveNextAsync().AsTask();
            await Poll.UntilAsync(() => Task.FromResult(_server.OpenWatches == 1), TimeSpan.FromSeconds(10), "the watch is open");
            _server.DropWatches();
            Assert.False(await end);
        }

        // Written while nobody watched: the resumed watch must still deliver it.
        var renewed = await Store("token-b").UpdateAsync(created, Record("a") with { RenewTime = Now.AddSeconds(4) }, _ct);
        var lists = _server.Requests[ApiVerb.List];

        await using var second = store.WatchAsync(_ct).GetAsyncEnumerator(_ct);
        Assert.True(await second.MoveNextAsync());
        Assert.Equal(created, second.Current);
        Assert.True(await second.MoveNextAsync());
        Assert.Equal(renewed, second.Current);
        Assert.Equal(lists, _server.Requests[ApiVerb.List]);
    }

    [Fact]
    public async Task A_silent_watch_is_abandoned_so_a_dead_connection_cannot_hide_changes()
    {
        await using var quiet = await LeaseApiServer.StartAsync(new LeaseApiServerOptions { RequireAuthentication = false, BookmarkInterval = TimeSpan.FromHours(1) });
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider();
        var kubeconfig = _dir.File("quiet.kubeconfig");
        quiet.WriteKubeconfig(kubeconfig, "any", Namespace);
        using var store = new KubernetesLeaseStore(KubernetesConnection.FromKubeconfig(kubeconfig), Namespace, Name, time, NullLogger<KubernetesLeaseStore>.Instance);
        await using var watch = store.WatchAsync(_ct).GetAsyncEnumerator(_ct);
        Assert.True(await watch.MoveNextAsync());
        var next = watch.MoveNextAsync().AsTask();

        // The server sends nothing. Whenever the client is waiting for a line, 90 s of its clock
        // passing must end the wait (the clock moves only once the read may have started).
        await Poll.UntilAsync(
            () =>
            {
                if (quiet.OpenWatches == 1 && !next.IsCompleted)
                {
                    time.Advance(TimeSpan.FromSeconds(90));
                }

                return Task.FromResult(next.IsCompleted);
            },
            TimeSpan.FromSeconds(20),
            "the silent watch is abandoned");

        var e = await Assert.ThrowsAsync<LeaseStoreException>(() => next);
        Assert.Equal(LeaseStoreFailure.Timeout, e.Reason);
    }

    [Fact]
    public async Task A_forbidden_watch_fails_with_the_reason()
    {
        await using var watch = Store("nobody").WatchAsync(_ct).GetAsyncEnumerator(_ct);

        var e = await Assert.ThrowsAsync<LeaseStoreException>(async () => await watch.MoveNextAsync());

        Assert.Equal(LeaseStoreFailure.Forbidden, e.Reason);
    }

    private KubernetesLeaseStore Store(string token)
    {
        var kubeconfig = _dir.File($"kubeconfig-{token}");
        _server.WriteKubeconfig(kubeconfig, token, Namespace);
        var store = new KubernetesLeaseStore(KubernetesConnection.FromKubeconfig(kubeconfig), Namespace, Name, TimeProvider.System, NullLogger<KubernetesLeaseStore>.Instance);
        _stores.Add(store);
        return store;
    }

    public async Task DisposeAsync()
    {
        _stores.ForEach(s => s.Dispose());
        await _server.DisposeAsync();
        _dir.Dispose();
    }
}
