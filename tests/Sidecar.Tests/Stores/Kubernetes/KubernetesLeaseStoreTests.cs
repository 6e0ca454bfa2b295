using LeaderSidecar.Election;
using LeaderSidecar.Stores.Kubernetes;
using LeaderSidecar.Testing.LeaseApi;
using LeaderSidecar.Testing.LeaseApi.Auth;
using LeaderSidecar.Testing.LeaseApi.Faults;
using LeaderSidecar.Testing.LeaseApi.Storage;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace LeaderSidecar.Tests.Stores.Kubernetes;

/// <summary>The Kubernetes lease store against the Lease API test server, over real HTTP.</summary>
public sealed class KubernetesLeaseStoreTests : IAsyncLifetime
{
    private const string Namespace = "demo";
    private const string Name = "app";
    private static readonly DateTimeOffset Now = new(2026, 11, 25, 2, 4, 12, TimeSpan.Zero);
    private static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(10);
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
    public async Task A_watch_that_is_too_old_ends_and_the_next_watch_lists_before_it_yields()
    {
        var logs = new ListLogger<KubernetesLeaseStore>();
        var store = Store("token-a", logger: logs);
        var created = await store.CreateAsync(Record("a"), _ct);
        await using (var first = store.WatchAsync(_ct).GetAsyncEnumerator(_ct))
        {
            Assert.True(await first.MoveNextAsync());
            var next = first.MoveNextAsync().AsTask();
            await Poll.UntilAsync(() => Task.FromResult(_server.OpenWatches == 1), TimeSpan.FromSeconds(10), "the watch is open");
            var lists = _server.Requests[ApiVerb.List];

            // The elector sees the stream end, so it marks the watch down and polls meanwhile.
            _server.ExpireWatches();
            Assert.False(await next);
            Assert.Equal(lists, _server.Requests[ApiVerb.List]);
        }

        var renewed = await store.UpdateAsync(created, Record("a") with { RenewTime = Now.AddSeconds(2) }, _ct);
        var listsBefore = _server.Requests[ApiVerb.List];
        await using var second = store.WatchAsync(_ct).GetAsyncEnumerator(_ct);
        Assert.True(await second.MoveNextAsync());
        Assert.Equal(renewed, second.Current);
        Assert.Equal(listsBefore + 1, _server.Requests[ApiVerb.List]);
        Assert.DoesNotContain(logs.Entries, e => e.Level >= LogLevel.Warning);
    }

    [Fact]
    public async Task After_a_410_a_list_that_hangs_fails_the_next_watch_within_the_request_timeout()
    {
        var store = Store("token-a", TimeSpan.FromMilliseconds(300));
        await store.CreateAsync(Record("a"), _ct);
        await using (var first = store.WatchAsync(_ct).GetAsyncEnumerator(_ct))
        {
            Assert.True(await first.MoveNextAsync());
            var next = first.MoveNextAsync().AsTask();
            await Poll.UntilAsync(() => Task.FromResult(_server.OpenWatches == 1), TimeSpan.FromSeconds(10), "the watch is open");
            _server.ExpireWatches();
            Assert.False(await next);
        }

        using var hang = _server.Faults.Hang(new RequestFilter(ApiVerb.List));
        await using var second = store.WatchAsync(_ct).GetAsyncEnumerator(_ct);

        var e = await Assert.ThrowsAsync<LeaseStoreException>(async () => await second.MoveNextAsync());

        Assert.Equal(LeaseStoreFailure.Timeout, e.Reason);
        Assert.Contains("lease list", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_watch_open_that_hangs_fails_within_the_request_timeout()
    {
        var store = Store("token-a", TimeSpan.FromMilliseconds(300));
        using var hang = _server.Faults.Hang(new RequestFilter(ApiVerb.Watch));
        await using var watch = store.WatchAsync(_ct).GetAsyncEnumerator(_ct);

        var e = await Assert.ThrowsAsync<LeaseStoreException>(async () => await watch.MoveNextAsync());

        Assert.Equal(LeaseStoreFailure.Timeout, e.Reason);
        Assert.Contains("lease watch", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_watch_whose_version_is_gone_at_open_lists_and_opens_again_before_it_yields()
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

        _server.Faults.FailNext(1, FaultResponse.FromStatus(new LeaderSidecar.Testing.LeaseApi.Http.ApiStatus(410, "Expired", "too old resource version")), new RequestFilter(ApiVerb.Watch));
        var lists = _server.Requests[ApiVerb.List];
        await using var second = store.WatchAsync(_ct).GetAsyncEnumerator(_ct);

        Assert.True(await second.MoveNextAsync());
        Assert.Equal(created, second.Current);
        Assert.Equal(lists + 1, _server.Requests[ApiVerb.List]);
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
    public async Task A_watch_silent_past_the_servers_own_timeout_is_abandoned_so_a_dead_connection_cannot_hide_changes()
    {
        await using var quiet = await LeaseApiServer.StartAsync(new LeaseApiServerOptions { RequireAuthentication = false, BookmarkInterval = TimeSpan.FromHours(1) });
        var time = new FakeTimeProvider();
        using var store = QuietStore(quiet, time, NullLogger<KubernetesLeaseStore>.Instance);
        await using var watch = store.WatchAsync(_ct).GetAsyncEnumerator(_ct);
        Assert.True(await watch.MoveNextAsync());
        var next = watch.MoveNextAsync().AsTask();

        // The server sends nothing and does not end the watch at the 300 s it promised. Whenever the
        // client is waiting for a line, a minute of its clock passes, until the wait ends.
        await Poll.UntilAsync(
            () =>
            {
                if (quiet.OpenWatches == 1 && !next.IsCompleted)
                {
                    time.Advance(TimeSpan.FromSeconds(60));
                }

                return Task.FromResult(next.IsCompleted);
            },
            TimeSpan.FromSeconds(20),
            "the silent watch is abandoned");

        var e = await Assert.ThrowsAsync<LeaseStoreException>(() => next);
        Assert.Equal(LeaseStoreFailure.Timeout, e.Reason);
    }

    [Fact]
    public async Task A_quiet_watch_the_server_ends_after_its_timeout_is_a_normal_end_without_warnings()
    {
        await using var quiet = await LeaseApiServer.StartAsync(new LeaseApiServerOptions { RequireAuthentication = false, BookmarkInterval = TimeSpan.FromHours(1) });
        var time = new FakeTimeProvider();
        var logs = new ListLogger<KubernetesLeaseStore>();
        using var store = QuietStore(quiet, time, logs);
        await using var watch = store.WatchAsync(_ct).GetAsyncEnumerator(_ct);
        Assert.True(await watch.MoveNextAsync());
        var next = watch.MoveNextAsync().AsTask();
        await Poll.UntilAsync(() => Task.FromResult(quiet.OpenWatches == 1), TimeSpan.FromSeconds(10), "the watch is open");

        // Nothing changes and no bookmarks come for the 300 s the watch asked the server for.
        for (var i = 0; i < 5; i++)
        {
            time.Advance(TimeSpan.FromSeconds(60));
            await Task.Yield();
            Assert.False(next.IsCompleted, $"the watch ended after {(i + 1) * 60} s of quiet");
        }

        // Then the server ends the watch, as it does at timeoutSeconds.
        quiet.DropWatches();

        Assert.False(await next);
        Assert.DoesNotContain(logs.Entries, e => e.Level >= LogLevel.Warning);
    }

    [Fact]
    public async Task A_watch_line_that_never_ends_fails_the_watch_as_invalid_instead_of_being_buffered()
    {
        var store = Store("token-a");
        using var endless = _server.Faults.StreamEndlessLine(64L * 1024 * 1024);
        await using var watch = store.WatchAsync(_ct).GetAsyncEnumerator(_ct);
        Assert.True(await watch.MoveNextAsync());

        var e = await Assert.ThrowsAsync<LeaseStoreException>(async () => await watch.MoveNextAsync());

        Assert.Equal(LeaseStoreFailure.Invalid, e.Reason);
        Assert.Contains($"{KubernetesLeaseStore.MaxObjectBytes}-byte limit", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("xxxx", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_lease_larger_than_the_limit_is_invalid_to_read_and_to_watch()
    {
        var store = Store("token-a");
        var created = await store.CreateAsync(Record("a"), _ct);
        await using var watch = store.WatchAsync(_ct).GetAsyncEnumerator(_ct);
        Assert.True(await watch.MoveNextAsync());
        var next = watch.MoveNextAsync().AsTask();
        await Poll.UntilAsync(() => Task.FromResult(_server.OpenWatches == 1), TimeSpan.FromSeconds(10), "the watch is open");

        _server.Store.Update(Namespace, Name, spec => spec with { HolderIdentity = new string('x', KubernetesLeaseStore.MaxObjectBytes) });

        var read = await Assert.ThrowsAsync<LeaseStoreException>(() => store.GetAsync(_ct));
        var watched = await Assert.ThrowsAsync<LeaseStoreException>(() => next);
        Assert.Equal(LeaseStoreFailure.Invalid, read.Reason);
        Assert.Equal(LeaseStoreFailure.Invalid, watched.Reason);
        Assert.DoesNotContain("xxxx", read.Message + watched.Message, StringComparison.Ordinal);
        Assert.NotNull(created);
    }

    [Fact]
    public async Task Server_text_in_errors_is_cut_short_and_kept_on_one_line()
    {
        var store = Store("token-a");
        var problem = string.Concat(Enumerable.Repeat("etcd said no\nforged log line ", 5_000));
        _server.Faults.FailNext(1, FaultResponse.InternalError(problem));

        var e = await Assert.ThrowsAsync<LeaseStoreException>(() => store.GetAsync(_ct));

        Assert.Equal(LeaseStoreFailure.ServerError, e.Reason);
        Assert.DoesNotContain('\n', e.Message);
        Assert.True(e.Message.Length <= "HTTP 500: ".Length + KubernetesLeaseStore.MaxMessageChars, $"message of {e.Message.Length} chars");
    }

    [Fact]
    public async Task Credentials_in_the_server_address_never_reach_the_description_or_errors()
    {
        var kubeconfig = _dir.File("userinfo.kubeconfig");
        _server.WriteKubeconfig(kubeconfig, "token-a", Namespace);
        var host = _server.BaseAddress.Authority;
        File.WriteAllText(kubeconfig, File.ReadAllText(kubeconfig).Replace($"server: http://{host}", $"server: http://alice:s3cret@{host}", StringComparison.Ordinal));
        using var store = new KubernetesLeaseStore(KubernetesConnection.FromKubeconfig(kubeconfig), Namespace, Name, RequestTimeout, TimeProvider.System, NullLogger<KubernetesLeaseStore>.Instance);

        Assert.Null(await store.GetAsync(_ct));
        _server.Faults.FailNext(1, FaultResponse.PlainText(200, "not json"));
        var e = await Assert.ThrowsAsync<LeaseStoreException>(() => store.GetAsync(_ct));

        Assert.Equal($"kubernetes lease {Namespace}/{Name} at http://redacted@{host}/", store.Description);
        Assert.DoesNotContain("s3cret", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("alice", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_forbidden_watch_fails_with_the_reason()
    {
        await using var watch = Store("nobody").WatchAsync(_ct).GetAsyncEnumerator(_ct);

        var e = await Assert.ThrowsAsync<LeaseStoreException>(async () => await watch.MoveNextAsync());

        Assert.Equal(LeaseStoreFailure.Forbidden, e.Reason);
    }

    private KubernetesLeaseStore Store(string token, TimeSpan? requestTimeout = null, ILogger<KubernetesLeaseStore>? logger = null)
    {
        var kubeconfig = _dir.File($"kubeconfig-{token}");
        _server.WriteKubeconfig(kubeconfig, token, Namespace);
        var store = new KubernetesLeaseStore(KubernetesConnection.FromKubeconfig(kubeconfig), Namespace, Name, requestTimeout ?? RequestTimeout, TimeProvider.System, logger ?? NullLogger<KubernetesLeaseStore>.Instance);
        _stores.Add(store);
        return store;
    }

    /// <summary>A store on a server that sends no bookmarks, with its clock in the test's hand.</summary>
    private KubernetesLeaseStore QuietStore(LeaseApiServer quiet, TimeProvider time, ILogger<KubernetesLeaseStore> logger)
    {
        var kubeconfig = _dir.File($"quiet-{Guid.NewGuid():N}.kubeconfig");
        quiet.WriteKubeconfig(kubeconfig, "any", Namespace);
        return new KubernetesLeaseStore(KubernetesConnection.FromKubeconfig(kubeconfig), Namespace, Name, RequestTimeout, time, logger);
    }

    public async Task DisposeAsync()
    {
        _stores.ForEach(s => s.Dispose());
        await _server.DisposeAsync();
        _dir.Dispose();
    }
}
