using LeaderSidecar.Election;

namespace LeaderSidecar.Tests.Stores;

/// <summary>
/// The contract of <see cref="ILeaseStore"/>, written once. Every store's test class derives from
/// this one and only says how to reach its real server (or file system) and how to break it; a
/// store is done when its subclass is green. The election core relies on exactly these properties.
/// </summary>
/// <remarks>
/// Failures are reported with the same reasons on every store, because the election, its logs and
/// its metrics treat them alike. The reasons every store can meet are tested here (unavailable,
/// forbidden, invalid); the ones only a store behind a server can meet (unauthorized: it has
/// credentials; timeout: it bounds its own requests) are tested in
/// <see cref="RemoteLeaseStoreConformanceTests"/>, which such a store derives from instead, so no
/// store carries a test that cannot apply to it.
/// </remarks>
public abstract class LeaseStoreConformanceTests : IAsyncLifetime
{
    private static readonly DateTimeOffset Now = new DateTimeOffset(2026, 11, 25, 2, 4, 12, TimeSpan.Zero).AddTicks(1_234_560);
    private readonly CancellationTokenSource _timeout = new(TimeSpan.FromSeconds(60));

    /// <summary>A deadline for a whole test; every wait below is on a condition, bounded by it.</summary>
    protected CancellationToken Ct => _timeout.Token;

    /// <summary>A new client of the one lease under test, as another replica would have.</summary>
    protected abstract Task<ILeaseStore> ConnectAsync();

    /// <summary>Deletes the lease behind every client's back, as an operator would.</summary>
    protected abstract Task DeleteLeaseAsync();

    /// <summary>Drops every open watch (the connection or the server went away) without losing data.</summary>
    protected abstract Task DropWatchesAsync();

    /// <summary>A client whose writes hang until cancelled (the server stopped answering, a lock is held).</summary>
    protected abstract Task<ILeaseStore> ConnectHangingAsync();

    /// <summary>A client of a server that cannot be reached.</summary>
    protected abstract Task<ILeaseStore> ConnectUnreachableAsync();

    /// <summary>
    /// A client whose read of the lease finds something that is not a lease record where the lease
    /// should be: a value written by hand, or an answer garbled on the way.
    /// </summary>
    protected abstract Task<ILeaseStore> ConnectToInvalidLeaseAsync();

    /// <summary>
    /// A client that may not write the lease: a user without a role on the key, an account without
    /// an RBAC rule for it, a directory this process may not write. Its reads may be refused too.
    /// </summary>
    protected abstract Task<ILeaseStore> ConnectWithoutPermissionAsync();

    public virtual Task InitializeAsync() => Task.CompletedTask;

    public virtual Task DisposeAsync()
    {
        _timeout.Dispose();
        return Task.CompletedTask;
    }

    protected static LeaseRecord Record(string holder, int transitions = 0, int renewedAfterSeconds = 0) =>
        new(holder, 15, Now, Now.AddSeconds(renewedAfterSeconds), transitions);

    [Fact]
    public async Task A_missing_lease_reads_as_null()
    {
        var store = await ConnectAsync();

        Assert.Null(await store.GetAsync(Ct));
    }

    [Fact]
    public async Task Create_on_empty_round_trips_the_record_to_the_microsecond()
    {
        var store = await ConnectAsync();

        var created = await store.CreateAsync(Record("a"), Ct);

        Assert.Equal(Record("a"), created.Record);
        Assert.Equal(created, await (await ConnectAsync()).GetAsync(Ct));
        Assert.NotEmpty(created.Version);
        Assert.NotEmpty(created.Uid);
    }

    [Fact]
    public async Task Create_of_an_existing_lease_is_a_conflict()
    {
        var a = await ConnectAsync();
        var b = await ConnectAsync();
        var created = await a.CreateAsync(Record("a"), Ct);

        var conflict = await Assert.ThrowsAsync<LeaseStoreException>(() => b.CreateAsync(Record("b"), Ct));

        Assert.Equal(LeaseStoreFailure.Conflict, conflict.Reason);
        Assert.Equal(created, await b.GetAsync(Ct));
    }

    [Fact]
    public async Task Update_is_compare_and_swap_on_the_version_and_a_stale_version_always_loses()
    {
        var a = await ConnectAsync();
        var b = await ConnectAsync();
        var created = await a.CreateAsync(Record("a"), Ct);

        var renewed = await a.UpdateAsync(created, Record("a", renewedAfterSeconds: 2), Ct);
        Assert.Equal(Record("a", renewedAfterSeconds: 2), renewed.Record);
        Assert.NotEqual(created.Version, renewed.Version);

        // Every writer over the old version loses, however many try, and nothing changes.
        for (var i = 0; i < 3; i++)
        {
            var stale = await Assert.ThrowsAsync<LeaseStoreException>(() => b.UpdateAsync(created, Record("b", 1), Ct));
            Assert.Equal(LeaseStoreFailure.Conflict, stale.Reason);
        }

        Assert.Equal(renewed, await b.GetAsync(Ct));
    }

    [Fact]
    public async Task Concurrent_writers_over_one_version_have_exactly_one_winner()
    {
        var created = await (await ConnectAsync()).CreateAsync(Record(""), Ct);
        var writers = new List<ILeaseStore>();
        for (var i = 0; i < 4; i++)
        {
            writers.Add(await ConnectAsync());
        }

        var attempts = writers.Select((store, i) => Attempt(store, $"w{i}")).ToList();
        var results = await Task.WhenAll(attempts);

        Assert.Single(results, won => won);
        var winner = results.ToList().IndexOf(true);
        Assert.Equal($"w{winner}", (await writers[0].GetAsync(Ct))!.Record.HolderIdentity);

        async Task<bool> Attempt(ILeaseStore store, string holder)
        {
            try
            {
                await store.UpdateAsync(created, Record(holder, 1), Ct);
                return true;
            }
            catch (LeaseStoreException e) when (e.Reason == LeaseStoreFailure.Conflict)
            {
                return false;
            }
        }
    }

    [Fact]
    public async Task The_uid_is_stable_across_updates_and_new_after_delete_and_create()
    {
        var store = await ConnectAsync();
        var created = await store.CreateAsync(Record("a"), Ct);
        var renewed = await store.UpdateAsync(created, Record("a", renewedAfterSeconds: 2), Ct);
        Assert.Equal(created.Uid, renewed.Uid);

        await DeleteLeaseAsync();
        Assert.Null(await store.GetAsync(Ct));
        var again = await store.CreateAsync(Record("a"), Ct);

        Assert.NotEqual(created.Uid, again.Uid);
    }

    [Fact]
    public async Task An_update_of_a_deleted_lease_fails_as_not_found_or_conflict()
    {
        var store = await ConnectAsync();
        var created = await store.CreateAsync(Record("a"), Ct);
        await DeleteLeaseAsync();

        var gone = await Assert.ThrowsAsync<LeaseStoreException>(() => store.UpdateAsync(created, Record("a", renewedAfterSeconds: 2), Ct));

        Assert.Contains(gone.Reason, new[] { LeaseStoreFailure.NotFound, LeaseStoreFailure.Conflict });
        Assert.Null(await store.GetAsync(Ct));
    }

    [Fact]
    public async Task The_watch_starts_with_the_current_state_then_sees_every_write_in_order_and_a_deletion_as_null()
    {
        var writer = await ConnectAsync();
        var created = await writer.CreateAsync(Record("a"), Ct);
        await using var watch = (await ConnectAsync()).WatchAsync(Ct).GetAsyncEnumerator(Ct);

        Assert.Equal(created, await NextAsync(watch));

        // Each renew is one a follower must see to restart its wait. (Writes that land faster
        // than a store delivers them may arrive coalesced into the newest; here each is awaited.)
        var current = created;
        for (var i = 1; i <= 5; i++)
        {
            current = await writer.UpdateAsync(current, Record("a", renewedAfterSeconds: i), Ct);
            Assert.Equal(current, await NextAsync(watch));
        }

        await DeleteLeaseAsync();
        Assert.Null(await NextAsync(watch));
    }

    [Fact]
    public async Task A_watch_of_a_missing_lease_starts_with_null_and_sees_its_creation()
    {
        await using var watch = (await ConnectAsync()).WatchAsync(Ct).GetAsyncEnumerator(Ct);
        Assert.Null(await NextAsync(watch));

        var created = await (await ConnectAsync()).CreateAsync(Record("a"), Ct);

        Assert.Equal(created, await NextAsync(watch));
    }

    [Fact]
    public async Task A_watch_resumed_after_it_dropped_ends_at_the_newest_state()
    {
        var writer = await ConnectAsync();
        var reader = await ConnectAsync();
        var current = await writer.CreateAsync(Record("a"), Ct);
        var watch = reader.WatchAsync(Ct).GetAsyncEnumerator(Ct);
        Assert.Equal(current, await NextAsync(watch));

        await DropWatchesAsync();
        for (var i = 1; i <= 3; i++)
        {
            current = await writer.UpdateAsync(current, Record("a", renewedAfterSeconds: i), Ct);
        }

        // The dropped stream either resumes by itself up to the newest state, or ends or fails
        // (the elector then polls and opens a new one, which must start at the newest state).
        try
        {
            while (await NextAsync(watch) != current)
            {
            }

            return;
        }
        catch (Exception e) when (e is LeaseStoreException or TimeoutException or OperationCanceledException && !Ct.IsCancellationRequested)
        {
        }
        finally
        {
            await watch.DisposeAsync();
        }

        // A store may resume from the version it saw last, replaying what it missed; either way
        // the stream arrives at the newest state (the test's deadline bounds the wait).
        await using var resumed = reader.WatchAsync(Ct).GetAsyncEnumerator(Ct);
        var seen = new List<LeaseSnapshot?>();
        while (seen.LastOrDefault() != current)
        {
            seen.Add(await NextAsync(resumed));
        }

        Assert.Equal(seen.Where(s => s is not null).Select(s => s!.Record.RenewTime).Order(), seen.Select(s => s!.Record.RenewTime));
    }

    [Fact]
    public async Task Cancellation_abandons_a_hung_request_promptly()
    {
        var store = await ConnectHangingAsync();
        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));

        var read = store.CreateAsync(Record("a"), cancel.Token);

        // Not a timing assertion: a store that ignored the token would hang until the test's deadline.
        var finished = await Task.WhenAny(read, Task.Delay(Timeout.Infinite, Ct));
        Assert.Same(read, finished);
        var failure = await Xunit.Record.ExceptionAsync(() => read);
        Assert.True(failure is OperationCanceledException or LeaseStoreException { Reason: LeaseStoreFailure.Timeout }, $"got {failure}");
    }

    [Fact]
    public async Task An_unreachable_server_is_unavailable()
    {
        var store = await ConnectUnreachableAsync();

        var failure = await Assert.ThrowsAsync<LeaseStoreException>(() => store.GetAsync(Ct));

        Assert.Equal(LeaseStoreFailure.Unavailable, failure.Reason);
    }

    [Fact]
    public async Task A_client_without_permission_on_the_lease_is_forbidden()
    {
        var store = await ConnectWithoutPermissionAsync();

        var failure = await Assert.ThrowsAsync<LeaseStoreException>(() => store.CreateAsync(Record("a"), Ct));

        Assert.Equal(LeaseStoreFailure.Forbidden, failure.Reason);
    }

    [Fact]
    public async Task A_stored_lease_that_is_not_a_record_is_invalid()
    {
        var store = await ConnectToInvalidLeaseAsync();

        var failure = await Assert.ThrowsAsync<LeaseStoreException>(() => store.GetAsync(Ct));

        Assert.Equal(LeaseStoreFailure.Invalid, failure.Reason);
    }

    /// <summary>The next watch item, or a <see cref="TimeoutException"/> when the stream ended.</summary>
    protected static async Task<LeaseSnapshot?> NextAsync(IAsyncEnumerator<LeaseSnapshot?> watch) =>
        await watch.MoveNextAsync() ? watch.Current : throw new TimeoutException("the watch ended");
}
