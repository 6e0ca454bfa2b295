using LeaderSidecar.Election;
using LeaderSidecar.Stores.LocalFile;

namespace LeaderSidecar.Tests.Stores.LocalFile;

public sealed class FileLeaseStoreTests : IDisposable
{
    private static readonly DateTimeOffset Now = new(2026, 11, 25, 2, 4, 12, 130207 / 1000, TimeSpan.Zero);
    private readonly TempDirectory _dir = new();
    private readonly CancellationToken _ct = new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token;

    private FileLeaseStore NewStore() => new(_dir.Path, "default", "app", TimeProvider.System);

    private static LeaseRecord Record(string holder, int transitions = 0) =>
        new(holder, 15, Now.AddTicks(1230), Now.AddTicks(4560), transitions);

    [Fact]
    public async Task A_missing_lease_reads_as_null()
    {
        Assert.Null(await NewStore().GetAsync(_ct));
    }

    [Fact]
    public async Task Create_then_get_round_trips_the_record_to_the_microsecond()
    {
        var store = NewStore();

        var created = await store.CreateAsync(Record("a"), _ct);
        var read = await NewStore().GetAsync(_ct);

        Assert.Equal(created, read);
        Assert.Equal("1", created.Version);
        Assert.Equal(Record("a"), read!.Record);
        Assert.Contains("\"renewTime\": \"2026-11-25T02:04:12.130456Z\"", await File.ReadAllTextAsync(_dir.File("default_app.json"), _ct), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Create_of_an_existing_lease_is_a_conflict()
    {
        await NewStore().CreateAsync(Record("a"), _ct);

        var e = await Assert.ThrowsAsync<LeaseStoreException>(() => NewStore().CreateAsync(Record("b"), _ct));

        Assert.Equal(LeaseStoreFailure.Conflict, e.Reason);
        Assert.Equal("a", (await NewStore().GetAsync(_ct))!.Record.HolderIdentity);
    }

    [Fact]
    public async Task Update_is_compare_and_swap_on_the_version()
    {
        var store = NewStore();
        var v1 = await store.CreateAsync(Record("a"), _ct);
        var v2 = await store.UpdateAsync(v1, Record("a") with { RenewTime = Now.AddSeconds(2) }, _ct);

        var e = await Assert.ThrowsAsync<LeaseStoreException>(() => NewStore().UpdateAsync(v1, Record("b", 1), _ct));

        Assert.Equal(LeaseStoreFailure.Conflict, e.Reason);
        Assert.Equal("2", v2.Version);
        Assert.Equal(v1.Uid, v2.Uid);
        Assert.Equal(v2, await store.GetAsync(_ct));
    }

    [Fact]
    public async Task A_recreated_file_with_the_same_version_is_still_a_conflict()
    {
        var store = NewStore();
        var old = await store.CreateAsync(Record("a"), _ct);
        File.Delete(_dir.File("default_app.json"));
        await store.CreateAsync(Record("b"), _ct);

        var e = await Assert.ThrowsAsync<LeaseStoreException>(() => store.UpdateAsync(old, Record("a"), _ct));

        Assert.Equal(LeaseStoreFailure.Conflict, e.Reason);
    }

    [Fact]
    public async Task Update_of_a_missing_lease_is_not_found()
    {
        var ghost = new LeaseSnapshot(Record("a"), "1", "uid");

        var e = await Assert.ThrowsAsync<LeaseStoreException>(() => NewStore().UpdateAsync(ghost, Record("a"), _ct));

        Assert.Equal(LeaseStoreFailure.NotFound, e.Reason);
    }

    [Fact]
    public async Task Concurrent_writers_over_the_same_version_have_exactly_one_winner()
    {
        var base0 = await NewStore().CreateAsync(Record(""), _ct);
        for (var round = 0; round < 20; round++)
        {
            var current = (await NewStore().GetAsync(_ct))!;
            var attempts = Enumerable.Range(0, 8).Select(i => Task.Run(async () =>
            {
                try
                {
                    await NewStore().UpdateAsync(current, Record($"w{i}", round), _ct);
                    return true;
                }
                catch (LeaseStoreException e) when (e.Reason == LeaseStoreFailure.Conflict)
                {
                    return false;
                }
            }));

            var won = await Task.WhenAll(attempts);

            Assert.Equal(1, won.Count(w => w));
        }

        Assert.Equal(base0.Uid, (await NewStore().GetAsync(_ct))!.Uid);
        Assert.Equal("21", (await NewStore().GetAsync(_ct))!.Version);
    }

    [Fact]
    public async Task A_write_waits_while_another_process_holds_the_lock()
    {
        var store = NewStore();
        var v1 = await store.CreateAsync(Record("a"), _ct);

        using (new FileStream(_dir.File("default_app.json.lock"), FileMode.Open, FileAccess.ReadWrite, FileShare.None))
        {
            using var shortly = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => store.UpdateAsync(v1, Record("b", 1), shortly.Token));
            Assert.Equal(v1, await store.GetAsync(_ct));
        }

        Assert.Equal("b", (await store.UpdateAsync(v1, Record("b", 1), _ct)).Record.HolderIdentity);
    }

    [Fact]
    public async Task A_corrupt_file_is_reported_as_invalid_not_thrown_raw()
    {
        await File.WriteAllTextAsync(_dir.File("default_app.json"), "{ not json", _ct);

        var e = await Assert.ThrowsAsync<LeaseStoreException>(() => NewStore().GetAsync(_ct));

        Assert.Equal(LeaseStoreFailure.Invalid, e.Reason);
        Assert.Contains("not a valid lease file", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_hostile_record_is_read_without_crashing()
    {
        await File.WriteAllTextAsync(
            _dir.File("default_app.json"),
            """{"uid":"u","resourceVersion":7,"spec":{"holderIdentity":null,"leaseDurationSeconds":-9,"acquireTime":null,"renewTime":"2026-11-25T02:04:12.1Z","leaseTransitions":2147483647}}""",
            _ct);

        var lease = await NewStore().GetAsync(_ct);

        Assert.Equal(new LeaseRecord("", -9, null, new DateTimeOffset(2026, 11, 25, 2, 4, 12, 100, TimeSpan.Zero), int.MaxValue), lease!.Record);
    }

    [Fact]
    public async Task The_watch_starts_with_the_current_state_and_reports_each_change()
    {
        var store = NewStore();
        await using var watch = store.WatchAsync(_ct).GetAsyncEnumerator(_ct);

        Assert.True(await watch.MoveNextAsync());
        Assert.Null(watch.Current);

        var created = await NewStore().CreateAsync(Record("a"), _ct);
        Assert.True(await watch.MoveNextAsync());
        Assert.Equal(created, watch.Current);

        var updated = await NewStore().UpdateAsync(created, Record("", 0) with { LeaseDurationSeconds = 1 }, _ct);
        Assert.True(await watch.MoveNextAsync());
        Assert.Equal(updated, watch.Current);

        File.Delete(_dir.File("default_app.json"));
        Assert.True(await watch.MoveNextAsync());
        Assert.Null(watch.Current);
    }

    [Fact]
    public void An_unwritable_directory_is_reported_at_start()
    {
        File.WriteAllText(_dir.File("not-a-dir"), "");
        var store = new FileLeaseStore(_dir.File("not-a-dir"), "default", "app", TimeProvider.System);

        var problem = store.CheckUsable();

        Assert.NotNull(problem);
        Assert.StartsWith($"lease directory {_dir.File("not-a-dir")} is not usable", problem, StringComparison.Ordinal);
    }

    public void Dispose() => _dir.Dispose();
}
