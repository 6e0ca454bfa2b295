using LeaderSidecar.Election;
using LeaderSidecar.Stores.MySql;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using MySqlConnector;

namespace LeaderSidecar.Tests.Stores.MySql;

/// <summary>What only MySQL has: its columns, the whole-row compare, the table, users and grants, and polling.</summary>
public sealed class MySqlLeaseStoreTests : IAsyncLifetime
{
    internal const string Table = MySqlOptions.DefaultTable;
    internal static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(5);
    private static readonly DateTimeOffset Now = new DateTimeOffset(2026, 11, 25, 2, 4, 12, TimeSpan.Zero).AddTicks(1_234_560);
    private readonly CancellationTokenSource _timeout = new(TimeSpan.FromSeconds(60));
    private readonly List<MySqlLeaseStore> _stores = [];
    private MariaDbServer _server = null!;

    private CancellationToken Ct => _timeout.Token;

    public async Task InitializeAsync() => _server = await MariaDbServer.StartAsync();

    public async Task DisposeAsync()
    {
        _server.Resume();
        foreach (var store in _stores)
        {
            store.Dispose();
        }

        await _server.DisposeAsync();
        _timeout.Dispose();
    }

    /// <summary>A store of lease demo/app, settled as the daemon settles its connection; polling fast unless told.</summary>
    internal static MySqlLeaseStore Store(string connectionString, string table = Table, bool createTable = true, TimeSpan? pollInterval = null, TimeProvider? time = null, ILogger<MySqlLeaseStore>? logger = null, bool settle = true, Action<MySqlConnectionStringBuilder>? adjust = null, TimeSpan? requestTimeout = null)
    {
        var connection = new MySqlConnectionStringBuilder(connectionString);
        if (settle)
        {
            MySqlStoreKind.Settle(connection, requestTimeout ?? RequestTimeout);
        }

        adjust?.Invoke(connection);

        return new MySqlLeaseStore(
            connection,
            table,
            createTable,
            "demo",
            "app",
            pollInterval ?? MySqlOptions.MinPollInterval,
            requestTimeout ?? RequestTimeout,
            time ?? TimeProvider.System,
            logger ?? NullLogger<MySqlLeaseStore>.Instance);
    }

    [Fact]
    public async Task The_row_has_the_lease_spec_fields_as_columns_with_microsecond_utc_times()
    {
        var created = await Connect().CreateAsync(Record("a", 3), Ct);

        var row = await _server.SqlAsync($"SELECT namespace, name, holderIdentity, leaseDurationSeconds, acquireTime, renewTime, leaseTransitions, version, uid FROM {Table}");

        Assert.Equal($"demo\tapp\ta\t15\t2026-11-25 02:04:12.123456\t2026-11-25 02:04:12.123456\t3\t1\t{created.Uid}", row.Trim());
        Assert.Equal("1", created.Version);
        Assert.True(Guid.TryParseExact(created.Uid, "D", out _), created.Uid);
        var columns = await _server.SqlAsync($"SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_NAME = '{Table}' AND COLUMN_NAME IN ('acquireTime', 'version') ORDER BY COLUMN_NAME");
        Assert.Equal("acquireTime\tdatetime(6)\nversion\tbigint(20) unsigned", columns.Trim());
    }

    [Fact]
    public async Task Times_are_stored_in_utc_whatever_their_offset_and_cut_to_the_microsecond()
    {
        var store = Connect();
        var local = new DateTimeOffset(2026, 11, 25, 4, 4, 12, TimeSpan.FromHours(2)).AddTicks(1_234_567);

        var created = await store.CreateAsync(new LeaseRecord("a", 15, local, null, 0), Ct);

        Assert.Equal(new DateTimeOffset(2026, 11, 25, 2, 4, 12, TimeSpan.Zero).AddTicks(1_234_560), created.Record.AcquireTime);
        Assert.Null(created.Record.RenewTime);
        Assert.Equal(created, await Connect().GetAsync(Ct));
        Assert.Equal("2026-11-25 02:04:12.123456\tNULL", (await _server.SqlAsync($"SELECT acquireTime, renewTime FROM {Table}")).Trim());
    }

    [Fact]
    public async Task The_version_counts_the_writes_and_never_wraps()
    {
        var store = Connect();
        var created = await store.CreateAsync(Record("a"), Ct);
        var renewed = await store.UpdateAsync(created, Record("a", renewedAfterSeconds: 2), Ct);
        Assert.Equal("2", renewed.Version);
        Assert.Equal("2", (await _server.SqlAsync($"SELECT version FROM {Table}")).Trim());

        await _server.SqlAsync($"UPDATE {Table} SET version = 18446744073709551615");
        var last = (await store.GetAsync(Ct))!;
        var end = await Assert.ThrowsAsync<LeaseStoreException>(() => store.UpdateAsync(last, Record("a", renewedAfterSeconds: 4), Ct));

        Assert.Equal(LeaseStoreFailure.Invalid, end.Reason);
        Assert.Contains("cannot grow", end.Message, StringComparison.Ordinal);
        Assert.Equal("18446744073709551615", (await _server.SqlAsync($"SELECT version FROM {Table}")).Trim());
    }

    [Fact]
    public async Task An_update_over_a_version_of_a_deleted_and_recreated_row_is_a_conflict()
    {
        // The row starts again at version 1 with a new uid: a snapshot of the old row at version 1
        // must not win against it.
        var old = await Connect().CreateAsync(Record("a"), Ct);
        await _server.SqlAsync($"DELETE FROM {Table}");
        var again = await Connect().CreateAsync(Record("a"), Ct);
        Assert.Equal(old.Version, again.Version);

        var stale = await Assert.ThrowsAsync<LeaseStoreException>(() => Connect().UpdateAsync(old, Record("b", 1), Ct));

        Assert.Equal(LeaseStoreFailure.Conflict, stale.Reason);
        Assert.Equal(again, await Connect().GetAsync(Ct));
    }

    [Fact]
    public async Task A_hand_edit_that_leaves_the_version_alone_is_seen_by_the_watch_and_makes_the_next_update_a_conflict()
    {
        var store = Connect();
        var created = await store.CreateAsync(Record("a"), Ct);
        await using var watch = Connect().WatchAsync(Ct).GetAsyncEnumerator(Ct);
        Assert.Equal(created, await NextAsync(watch));

        await _server.SqlAsync($"UPDATE {Table} SET holderIdentity = 'stranger' WHERE name = 'app'");

        var edited = await NextAsync(watch);
        Assert.Equal("stranger", edited!.Record.HolderIdentity);
        Assert.Equal(created.Version, edited.Version);
        var conflict = await Assert.ThrowsAsync<LeaseStoreException>(() => store.UpdateAsync(created, Record("a", renewedAfterSeconds: 2), Ct));
        Assert.Equal(LeaseStoreFailure.Conflict, conflict.Reason);
        Assert.Equal(edited, await store.GetAsync(Ct));
    }

    [Fact]
    public async Task A_won_update_counts_as_one_row_even_when_the_server_reports_changed_rows_only()
    {
        // MySqlConnector reports found rows unless UseAffectedRows=true; the daemon never sets it,
        // and it would not matter: the version changes on every write, so the row always changes.
        var store = Track(Store(_server.ConnectionString() + ";UseAffectedRows=true", settle: false));
        var created = await store.CreateAsync(Record("a"), Ct);

        var same = await store.UpdateAsync(created, created.Record, Ct);

        Assert.Equal(created.Record, same.Record);
        Assert.Equal("2", same.Version);
    }

    [Theory]
    [InlineData("renewTime = '0000-00-00 00:00:00'", "renewTime")]
    [InlineData("acquireTime = '2026-00-00 00:00:00'", "acquireTime")]
    [InlineData("uid = ''", "uid")]
    [InlineData("leaseTransitions = -1", "leaseTransitions")]
    public async Task A_row_that_is_not_a_record_is_invalid(string edit, string column)
    {
        await Connect().CreateAsync(Record("a"), Ct);
        await _server.SqlAsync($"SET SESSION sql_mode = ''; UPDATE {Table} SET {edit}");

        var failure = await Assert.ThrowsAsync<LeaseStoreException>(() => Connect().GetAsync(Ct));

        Assert.Equal(LeaseStoreFailure.Invalid, failure.Reason);
        Assert.Contains("not a lease record", failure.Message, StringComparison.Ordinal);
        _ = column;
    }

    [Fact]
    public async Task A_table_of_another_shape_is_invalid()
    {
        await Connect().CreateAsync(Record("a"), Ct);
        await _server.SqlAsync($"ALTER TABLE {Table} DROP COLUMN renewTime");

        var failure = await Assert.ThrowsAsync<LeaseStoreException>(() => Connect().GetAsync(Ct));

        Assert.Equal(LeaseStoreFailure.Invalid, failure.Reason);
        Assert.Contains("renewTime", failure.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_oversized_holder_is_invalid_and_never_quoted_whole()
    {
        await Connect().CreateAsync(Record("a"), Ct);
        await _server.SqlAsync($"ALTER TABLE {Table} MODIFY holderIdentity MEDIUMTEXT NOT NULL; UPDATE {Table} SET holderIdentity = REPEAT('x', 100000)");

        var failure = await Assert.ThrowsAsync<LeaseStoreException>(() => Connect().GetAsync(Ct));

        Assert.Equal(LeaseStoreFailure.Invalid, failure.Reason);
        Assert.True(failure.Message.Length < 400, failure.Message);
    }

    [Fact]
    public async Task Garbage_written_during_a_watch_ends_it_as_invalid()
    {
        var created = await Connect().CreateAsync(Record("a"), Ct);
        await using var watch = Connect().WatchAsync(Ct).GetAsyncEnumerator(Ct);
        Assert.Equal(created, await NextAsync(watch));

        await _server.SqlAsync($"UPDATE {Table} SET renewTime = '0000-00-00 00:00:00'");

        var failure = await Assert.ThrowsAsync<LeaseStoreException>(() => NextAsync(watch));
        Assert.Equal(LeaseStoreFailure.Invalid, failure.Reason);
    }

    [Fact]
    public async Task A_missing_table_is_created_once_and_logged()
    {
        var logger = new ListLogger();
        var store = Track(Store(_server.ConnectionString(), table: "elections", logger: logger));

        Assert.Null(await store.GetAsync(Ct));
        var created = await store.CreateAsync(Record("a"), Ct);

        Assert.Equal(created, await store.GetAsync(Ct));
        Assert.Single(logger.Lines, line => line.Contains("Created the lease table elections", StringComparison.Ordinal));
        Assert.Contains("InnoDB", await _server.SqlAsync("SHOW CREATE TABLE elections"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task With_create_table_off_a_missing_table_is_forbidden_and_names_the_flag()
    {
        var store = Track(Store(_server.ConnectionString(), createTable: false));

        var failure = await Assert.ThrowsAsync<LeaseStoreException>(() => store.GetAsync(Ct));

        Assert.Equal(LeaseStoreFailure.Forbidden, failure.Reason);
        Assert.Contains("--mysql-create-table=false", failure.Message, StringComparison.Ordinal);
        Assert.Equal("", (await _server.SqlAsync($"SHOW TABLES LIKE '{Table}'")).Trim());
    }

    [Fact]
    public async Task A_user_with_only_select_insert_and_update_on_the_one_table_can_elect()
    {
        await Connect().GetAsync(Ct);
        await _server.SqlAsync($"CREATE TABLE other (x INT); CREATE USER 'least'@'%' IDENTIFIED BY 'least-pw'; GRANT SELECT, INSERT, UPDATE ON {MariaDbServer.Database}.{Table} TO 'least'@'%'");

        foreach (var createTable in new[] { false, true })
        {
            await _server.SqlAsync($"DELETE FROM {Table}");
            var store = Track(Store(_server.ConnectionString("least", "least-pw"), createTable: createTable));
            var created = await store.CreateAsync(Record("a"), Ct);
            var renewed = await store.UpdateAsync(created, Record("a", renewedAfterSeconds: 2), Ct);
            Assert.Equal(renewed, await store.GetAsync(Ct));
            await using var watch = store.WatchAsync(Ct).GetAsyncEnumerator(Ct);
            Assert.Equal(renewed, await NextAsync(watch));
        }

        var (code, _, error) = await _server.CliAsync("SHOW GRANTS FOR 'least'@'%'");
        Assert.True(code == 0, error);
    }

    [Fact]
    public async Task Wrong_credentials_are_unauthorized_and_missing_rights_are_forbidden()
    {
        var created = await Connect().CreateAsync(Record("a"), Ct);
        await _server.SqlAsync($"CREATE USER 'nobody'@'%' IDENTIFIED BY 'nobody-pw'; CREATE USER 'reader'@'%' IDENTIFIED BY 'reader-pw'; GRANT SELECT ON {MariaDbServer.Database}.{Table} TO 'reader'@'%'");

        var wrong = await Assert.ThrowsAsync<LeaseStoreException>(() => Track(Store(_server.ConnectionString(password: "nope"))).GetAsync(Ct));
        Assert.Equal(LeaseStoreFailure.Unauthorized, wrong.Reason);
        Assert.DoesNotContain("nope", wrong.Message, StringComparison.Ordinal);

        // No right on the database at all (1044), and no right to write the table (1142).
        var nobody = await Assert.ThrowsAsync<LeaseStoreException>(() => Track(Store(_server.ConnectionString("nobody", "nobody-pw"))).GetAsync(Ct));
        Assert.Equal(LeaseStoreFailure.Forbidden, nobody.Reason);
        // A database the user has no right on, existing or not, is 1044 (the server does not tell
        // such a user whether it exists).
        var unknown = await Assert.ThrowsAsync<LeaseStoreException>(() => Track(Store(_server.ConnectionString(), adjust: c => c.Database = "nope")).GetAsync(Ct));
        Assert.Equal(LeaseStoreFailure.Forbidden, unknown.Reason);
        var reader = Track(Store(_server.ConnectionString("reader", "reader-pw")));
        Assert.Equal(created, await reader.GetAsync(Ct));
        var denied = await Assert.ThrowsAsync<LeaseStoreException>(() => reader.UpdateAsync(created, Record("b", 1), Ct));
        Assert.Equal(LeaseStoreFailure.Forbidden, denied.Reason);
        Assert.Contains("1142", denied.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_watch_reads_the_row_once_per_poll_interval_with_one_select()
    {
        var interval = TimeSpan.FromMilliseconds(250);
        var time = new PollClock(Now, interval);
        var writer = Connect();
        var created = await writer.CreateAsync(Record("a"), Ct);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        await using var watch = Track(Store(_server.ConnectionString(), pollInterval: interval, time: time)).WatchAsync(stop.Token).GetAsyncEnumerator(stop.Token);
        Assert.Equal(created, await NextAsync(watch));
        var renewed = await writer.UpdateAsync(created, Record("a", renewedAfterSeconds: 2), Ct);

        // The watch waits for the interval on the store's clock; until it passes, nothing is read.
        var next = NextAsync(watch);
        await Poll.UntilAsync(() => Task.FromResult(time.Waits == 1), TimeSpan.FromSeconds(10), "the watch to wait for its first poll");
        var selects = await _server.StatusAsync("Com_select");
        time.Advance(interval);
        Assert.Equal(renewed, await next);
        Assert.Equal(selects + 1, await _server.StatusAsync("Com_select"));

        // Every later interval is one SELECT; an unchanged row is not yielded.
        next = NextAsync(watch);
        for (var poll = 2; poll <= 4; poll++)
        {
            await Poll.UntilAsync(() => Task.FromResult(time.Waits == poll), TimeSpan.FromSeconds(10), $"the watch to wait for poll {poll}");
            time.Advance(interval);
        }

        await Poll.UntilAsync(() => Task.FromResult(time.Waits == 5), TimeSpan.FromSeconds(10), "the watch to wait for poll 5");
        Assert.Equal(selects + 4, await _server.StatusAsync("Com_select"));
        Assert.False(next.IsCompleted);
        await stop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => next);
    }

    [Fact]
    public async Task A_watch_on_a_server_that_stopped_answering_ends_as_a_timeout()
    {
        // The store's own request timeout, not the connection's command timeout, ends the poll.
        var created = await Connect().CreateAsync(Record("a"), Ct);
        var store = Track(Store(_server.ConnectionString(), adjust: c => c.DefaultCommandTimeout = 0));
        await using var watch = store.WatchAsync(Ct).GetAsyncEnumerator(Ct);
        Assert.Equal(created, await NextAsync(watch));

        _server.Pause();

        var failure = await Assert.ThrowsAsync<LeaseStoreException>(() => NextAsync(watch));
        Assert.Equal(LeaseStoreFailure.Timeout, failure.Reason);
    }

    [Fact]
    public async Task After_a_server_restart_the_next_request_reconnects()
    {
        var store = Connect();
        var created = await store.CreateAsync(Record("a"), Ct);
        Assert.Equal(created, await store.GetAsync(Ct));

        await _server.RestartAsync();

        // The pooled connection died with the server; the pool notices (it pings a connection it
        // hands out) and opens a new one, so no request fails for it.
        Assert.Equal(created, await store.GetAsync(Ct));
        Assert.Equal("2", (await store.UpdateAsync(created, Record("a", renewedAfterSeconds: 2), Ct)).Version);
    }

    [Fact]
    public async Task A_stopped_server_is_unavailable()
    {
        var store = Connect();
        await store.GetAsync(Ct);
        await _server.StopAsync();

        var failure = await Assert.ThrowsAsync<LeaseStoreException>(() => store.GetAsync(Ct));

        Assert.Equal(LeaseStoreFailure.Unavailable, failure.Reason);
    }

    private static LeaseRecord Record(string holder, int transitions = 0, int renewedAfterSeconds = 0) =>
        new(holder, 15, Now, Now.AddSeconds(renewedAfterSeconds), transitions);

    private static async Task<LeaseSnapshot?> NextAsync(IAsyncEnumerator<LeaseSnapshot?> watch) =>
        await watch.MoveNextAsync() ? watch.Current : throw new TimeoutException("the watch ended");

    private MySqlLeaseStore Connect() => Track(Store(_server.ConnectionString()));

    private MySqlLeaseStore Track(MySqlLeaseStore store)
    {
        _stores.Add(store);
        return store;
    }

    /// <summary>A fake clock that counts the watch's waits between polls (timers of exactly the poll interval).</summary>
    private sealed class PollClock(DateTimeOffset start, TimeSpan interval) : FakeTimeProvider(start)
    {
        private int _waits;

        public int Waits => Volatile.Read(ref _waits);

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            if (dueTime == interval)
            {
                Interlocked.Increment(ref _waits);
            }

            return base.CreateTimer(callback, state, dueTime, period);
        }
    }

    private sealed class ListLogger : ILogger<MySqlLeaseStore>
    {
        public List<string> Lines { get; } = [];

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (Lines)
            {
                Lines.Add(formatter(state, exception));
            }
        }
    }
}
