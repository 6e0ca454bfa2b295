using System.Globalization;
using System.Text;
using LeaderSidecar.Election;
using LeaderSidecar.Stores.LocalFile;
using Microsoft.Extensions.Time.Testing;

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

    [Fact]
    public async Task An_idle_watch_holds_one_change_wait_however_many_rereads_pass()
    {
        await NewStore().CreateAsync(Record("a"), _ct);
        var time = new FakeTimeProvider(Now);
        var store = new FileLeaseStore(_dir.Path, "default", "app", time);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(_ct);
        var watch = store.WatchAsync(stop.Token).GetAsyncEnumerator(stop.Token);
        Assert.True(await watch.MoveNextAsync());
        var next = watch.MoveNextAsync().AsTask();
        try
        {
            for (var period = 0; period < 100; period++)
            {
                var before = store.Rereads;
                await Poll.UntilAsync(
                    () =>
                    {
                        if (store.Rereads > before)
                        {
                            return Task.FromResult(true);
                        }

                        time.Advance(TimeSpan.FromSeconds(1));
                        return Task.FromResult(false);
                    },
                    TimeSpan.FromSeconds(10),
                    $"re-read {period + 1}");
            }

            Assert.False(next.IsCompleted);
            Assert.Equal(1, store.PendingChangeWaits);

            // The one wait still sees the next change.
            var current = (await store.GetAsync(_ct))!;
            var updated = await NewStore().UpdateAsync(current, Record("b", 1), _ct);
            Assert.True(await next.WaitAsync(TimeSpan.FromSeconds(10), _ct));
            Assert.Equal(updated, watch.Current);
        }
        finally
        {
            await stop.CancelAsync();
            await Task.WhenAny(next);
            await watch.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_version_that_cannot_grow_is_refused_as_invalid_and_never_wraps()
    {
        await File.WriteAllTextAsync(
            _dir.File("default_app.json"),
            $$$"""{"uid":"u","resourceVersion":{{{long.MaxValue}}},"spec":{"holderIdentity":"a","leaseDurationSeconds":15,"leaseTransitions":3}}""",
            _ct);
        var store = NewStore();
        var current = (await store.GetAsync(_ct))!;
        Assert.Equal(long.MaxValue.ToString(CultureInfo.InvariantCulture), current.Version);

        var e = await Assert.ThrowsAsync<LeaseStoreException>(() => store.UpdateAsync(current, Record("a", 3), _ct));

        Assert.Equal(LeaseStoreFailure.Invalid, e.Reason);
        Assert.Contains("cannot grow", e.Message, StringComparison.Ordinal);
        Assert.Equal(current, await NewStore().GetAsync(_ct));
    }

    [Fact]
    public async Task A_record_of_exactly_the_size_limit_is_read()
    {
        var record = """{"uid":"u","resourceVersion":1,"spec":{"holderIdentity":"a"}}""";
        await File.WriteAllTextAsync(_dir.File("default_app.json"), record.PadRight(FileLeaseStore.MaxRecordBytes), _ct);

        Assert.Equal("a", (await NewStore().GetAsync(_ct))!.Record.HolderIdentity);
    }

    [Fact]
    public async Task A_lease_file_over_the_size_limit_is_invalid_and_not_echoed()
    {
        var huge = new string('x', 4 * 1024 * 1024);
        var content = $$$"""{"uid":"u","resourceVersion":1,"spec":{"holderIdentity":"{{{huge}}}"}}""";
        await File.WriteAllTextAsync(_dir.File("default_app.json"), content, _ct);

        var e = await Assert.ThrowsAsync<LeaseStoreException>(() => NewStore().GetAsync(_ct));

        Assert.Equal(LeaseStoreFailure.Invalid, e.Reason);
        Assert.Contains($"{Encoding.UTF8.GetByteCount(content)} bytes", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("xxxx", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_lease_file_one_byte_over_the_limit_is_invalid()
    {
        var record = """{"uid":"u","resourceVersion":1,"spec":{"holderIdentity":"a"}}""";
        await File.WriteAllTextAsync(_dir.File("default_app.json"), record.PadRight(FileLeaseStore.MaxRecordBytes + 1), _ct);

        var e = await Assert.ThrowsAsync<LeaseStoreException>(() => NewStore().GetAsync(_ct));

        Assert.Equal(LeaseStoreFailure.Invalid, e.Reason);
    }

    [Fact]
    public async Task A_malformed_file_is_reported_without_its_content()
    {
        var name = new string('A', 1000);
        await File.WriteAllTextAsync(_dir.File("default_app.json"), $$$"""{"spec":{"{{{name}}}": }}""", _ct);

        var e = await Assert.ThrowsAsync<LeaseStoreException>(() => NewStore().GetAsync(_ct));

        Assert.Equal(LeaseStoreFailure.Invalid, e.Reason);
        Assert.DoesNotContain("AAAA", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("a uid with spaces")]
    [InlineData("0123456789012345678901234567890123456789012345678901234567890123456789")]
    public async Task A_uid_that_is_not_a_short_plain_word_is_invalid(string uid)
    {
        await File.WriteAllTextAsync(_dir.File("default_app.json"), $$$"""{"uid":"{{{uid}}}","resourceVersion":1,"spec":{"holderIdentity":"a"}}""", _ct);

        var e = await Assert.ThrowsAsync<LeaseStoreException>(() => NewStore().GetAsync(_ct));

        Assert.Equal(LeaseStoreFailure.Invalid, e.Reason);
        Assert.DoesNotContain(uid, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_link_planted_at_the_lock_file_is_not_followed()
    {
        using var elsewhere = new TempDirectory();
        var precious = elsewhere.File("precious");
        var absent = elsewhere.File("absent");
        await File.WriteAllTextAsync(precious, "keep", _ct);
        File.CreateSymbolicLink(_dir.File("default_app.json.lock"), absent);

        var problem = NewStore().CheckUsable();
        var e = await Assert.ThrowsAsync<LeaseStoreException>(() => NewStore().CreateAsync(Record("a"), _ct));

        Assert.Contains("default_app.json.lock is a symbolic link", problem, StringComparison.Ordinal);
        Assert.DoesNotContain("\n", problem, StringComparison.Ordinal);
        Assert.Equal(LeaseStoreFailure.Unavailable, e.Reason);
        Assert.False(File.Exists(absent));

        File.Delete(_dir.File("default_app.json.lock"));
        File.CreateSymbolicLink(_dir.File("default_app.json.lock"), precious);
        Assert.NotNull(NewStore().CheckUsable());
        Assert.Equal("keep", await File.ReadAllTextAsync(precious, _ct));
    }

    [Fact]
    public async Task A_link_planted_at_the_old_probe_name_is_not_followed()
    {
        using var elsewhere = new TempDirectory();
        var precious = elsewhere.File("precious");
        await File.WriteAllTextAsync(precious, "keep", _ct);
        File.CreateSymbolicLink(_dir.File($".probe-{Environment.ProcessId}"), precious);

        Assert.Null(NewStore().CheckUsable());

        Assert.Equal("keep", await File.ReadAllTextAsync(precious, _ct));
    }

    [Fact]
    public void A_link_planted_at_the_identity_file_is_not_followed()
    {
        using var elsewhere = new TempDirectory();
        var absent = elsewhere.File("absent");
        File.CreateSymbolicLink(_dir.File($".default_app.json.identity-{FileLeaseStore.IdentityHash("me")}"), absent);
        using var store = NewStore();

        var problem = store.ClaimIdentity("me");

        Assert.Contains("is a symbolic link", problem, StringComparison.Ordinal);
        Assert.False(File.Exists(absent));
    }

    [Fact]
    public async Task A_lease_file_that_is_a_link_is_invalid_and_not_read_through()
    {
        using var elsewhere = new TempDirectory();
        var precious = elsewhere.File("precious.json");
        var record = """{"uid":"u","resourceVersion":1,"spec":{"holderIdentity":"a"}}""";
        await File.WriteAllTextAsync(precious, record, _ct);
        File.CreateSymbolicLink(_dir.File("default_app.json"), precious);

        var e = await Assert.ThrowsAsync<LeaseStoreException>(() => NewStore().GetAsync(_ct));

        Assert.Equal(LeaseStoreFailure.Invalid, e.Reason);
        Assert.Contains("symbolic link", e.Message, StringComparison.Ordinal);
        Assert.Equal(record, await File.ReadAllTextAsync(precious, _ct));
    }

    public void Dispose() => _dir.Dispose();
}
