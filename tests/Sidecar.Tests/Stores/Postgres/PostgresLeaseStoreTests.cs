using LeaderSidecar.Election;
using LeaderSidecar.Stores.Postgres;
using LeaderSidecar.Tests.Deploy;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace LeaderSidecar.Tests.Stores.Postgres;

/// <summary>What only PostgreSQL has: its table, triggers, roles, LISTEN and its failure codes.</summary>
public sealed class PostgresLeaseStoreTests : IAsyncLifetime
{
    internal const string DeleteRow = "DELETE FROM leader_sidecar_leases WHERE namespace = 'demo' AND name = 'app'";
    private static readonly DateTimeOffset Now = new DateTimeOffset(2026, 11, 25, 2, 4, 12, TimeSpan.Zero).AddTicks(1_234_560);
    private readonly CancellationTokenSource _timeout = new(TimeSpan.FromSeconds(90));
    private readonly List<PostgresLeaseStore> _stores = [];
    private PostgresServer _server = null!;

    private CancellationToken Ct => _timeout.Token;

    public async Task InitializeAsync() => _server = await PostgresServer.StartAsync();

    public async Task DisposeAsync()
    {
        _server.Resume();
        foreach (var store in _stores)
        {
            await store.DisposeAsync();
        }

        await _server.DisposeAsync();
        _timeout.Dispose();
    }

    internal static PostgresLeaseStore Store(
        string url,
        string? password = null,
        string table = PostgresOptions.DefaultTable,
        bool createTable = true,
        string? channel = null,
        TimeSpan? requestTimeout = null,
        ILogger<PostgresLeaseStore>? logger = null)
    {
        var tableName = PostgresTableName.Parse(table, out var tableProblem) ?? throw new ArgumentException(tableProblem);
        return new PostgresLeaseStore(
            PostgresTarget.Parse(url, out var problem) ?? throw new ArgumentException(problem),
            password,
            tableName,
            createTable,
            "demo",
            "app",
            requestTimeout ?? TimeSpan.FromSeconds(5),
            TimeProvider.System,
            logger ?? NullLogger<PostgresLeaseStore>.Instance)
        {
            Channel = channel ?? tableName.Channel,
        };
    }

    [Fact]
    public async Task The_row_is_the_record_in_plain_columns_with_microseconds_a_version_and_a_uuid()
    {
        var created = await Connect().CreateAsync(Record("a", 3), Ct);

        var row = await _server.PsqlAsync(
            "SELECT namespace, name, holder_identity, lease_duration_seconds, acquire_time AT TIME ZONE 'UTC', renew_time AT TIME ZONE 'UTC', lease_transitions, version, uid FROM leader_sidecar_leases");

        Assert.Equal($"demo|app|a|15|2026-11-25 02:04:12.123456|2026-11-25 02:04:12.123456|3|1|{created.Uid}", row);
        Assert.Equal("1", created.Version);
        Assert.True(Guid.TryParse(created.Uid, out _), created.Uid);
    }

    [Fact]
    public async Task Every_write_moves_the_version_on_by_one_and_a_hand_edit_in_psql_does_too_and_reaches_the_watch()
    {
        var writer = Connect();
        var created = await writer.CreateAsync(Record("a"), Ct);
        var renewed = await writer.UpdateAsync(created, Record("a", renewedAfterSeconds: 2), Ct);
        Assert.Equal(("1", "2"), (created.Version, renewed.Version));
        Assert.Equal(created.Uid, renewed.Uid);
        await using var watch = Connect().WatchAsync(Ct).GetAsyncEnumerator(Ct);
        Assert.Equal(renewed, await NextAsync(watch));

        // An operator's edit, written without a thought for version or uid: the triggers keep both.
        await _server.PsqlAsync("UPDATE leader_sidecar_leases SET holder_identity = 'stranger', version = 1, uid = gen_random_uuid()");

        var edited = await NextAsync(watch);
        Assert.Equal("stranger", edited!.Record.HolderIdentity);
        Assert.Equal(("3", renewed.Uid), (edited.Version, edited.Uid));
        var stale = await Assert.ThrowsAsync<LeaseStoreException>(() => writer.UpdateAsync(renewed, Record("a", renewedAfterSeconds: 4), Ct));
        Assert.Equal(LeaseStoreFailure.Conflict, stale.Reason);
    }

    [Fact]
    public async Task A_re_created_lease_starts_again_at_version_1_under_a_new_uid_which_an_old_snapshot_cannot_write()
    {
        var store = Connect();
        var first = await store.CreateAsync(Record("a"), Ct);
        await _server.PsqlAsync(DeleteRow);
        var second = await Connect().CreateAsync(Record("b"), Ct);
        Assert.Equal(first.Version, second.Version);
        Assert.NotEqual(first.Uid, second.Uid);

        // Same version number, other lease: the compare-and-swap checks the uid as well.
        var aba = await Assert.ThrowsAsync<LeaseStoreException>(() => store.UpdateAsync(first, Record("a", renewedAfterSeconds: 2), Ct));

        Assert.Equal(LeaseStoreFailure.Conflict, aba.Reason);
        Assert.Equal(second, await store.GetAsync(Ct));
    }

    [Theory]
    [InlineData("lease_transitions = -1", "negative")]
    [InlineData("holder_identity = repeat('x', 70000)", "70000 characters")]
    public async Task A_row_no_writer_of_ours_could_leave_is_invalid_and_never_quoted_whole(string garbage, string why)
    {
        await Connect().CreateAsync(Record("a"), Ct);
        await _server.PsqlAsync($"UPDATE leader_sidecar_leases SET {garbage}");

        var failure = await Assert.ThrowsAsync<LeaseStoreException>(() => Connect().GetAsync(Ct));

        Assert.Equal(LeaseStoreFailure.Invalid, failure.Reason);
        Assert.Contains(why, failure.Message, StringComparison.Ordinal);
        Assert.True(failure.Message.Length < 400, failure.Message);
    }

    [Fact]
    public async Task A_negative_duration_and_an_overlong_holder_are_read_as_they_are_for_the_core_to_judge()
    {
        // The core treats a non-positive duration as expired (as client-go does) and an identity
        // over its limit as an unnamed claim it waits out; the store reports what the row says.
        await Connect().CreateAsync(Record("a"), Ct);
        await _server.PsqlAsync("UPDATE leader_sidecar_leases SET lease_duration_seconds = -5, holder_identity = repeat('h', 2000), acquire_time = NULL");

        var lease = await Connect().GetAsync(Ct);

        Assert.Equal((-5, 2000, null), (lease!.Record.LeaseDurationSeconds, lease.Record.HolderIdentity.Length, lease.Record.AcquireTime));
    }

    [Fact]
    public async Task Garbage_written_during_a_watch_ends_it_as_invalid()
    {
        var created = await Connect().CreateAsync(Record("a"), Ct);
        await using var watch = Connect().WatchAsync(Ct).GetAsyncEnumerator(Ct);
        Assert.Equal(created, await NextAsync(watch));

        await _server.PsqlAsync("UPDATE leader_sidecar_leases SET lease_transitions = -7");

        var failure = await Assert.ThrowsAsync<LeaseStoreException>(() => NextAsync(watch));
        Assert.Equal(LeaseStoreFailure.Invalid, failure.Reason);
    }

    [Fact]
    public async Task The_shipped_setup_sql_defines_what_the_daemon_would_and_its_role_elects_with_only_select_insert_update()
    {
        var setup = Repository.PathOf("deploy/postgres/setup.sql");
        Assert.Contains(PostgresSchema.Definition(PostgresTableName.Default), await File.ReadAllTextAsync(setup), StringComparison.Ordinal);

        await _server.PsqlFileAsync(setup);
        await _server.PsqlFileAsync(setup);
        await _server.PsqlAsync("ALTER ROLE leader_sidecar PASSWORD 'apppw'");
        Assert.Equal(
            "INSERT,SELECT,UPDATE",
            await _server.PsqlAsync("SELECT string_agg(privilege_type, ',' ORDER BY privilege_type) FROM information_schema.role_table_grants WHERE grantee = 'leader_sidecar'"));

        var a = Connect("leader_sidecar", "apppw", createTable: false);
        var b = Connect("leader_sidecar", "apppw", createTable: false);
        var created = await a.CreateAsync(Record("a"), Ct);
        await using var watch = b.WatchAsync(Ct).GetAsyncEnumerator(Ct);
        Assert.Equal(created, await NextAsync(watch));
        var taken = await b.UpdateAsync(created, Record("b", 1), Ct);
        Assert.Equal(taken, await NextAsync(watch));
        Assert.Equal(taken, await a.GetAsync(Ct));

        // Nothing more: the role may not delete the lease or change the table.
        var (code, _, error) = await _server.RunPsqlAsync("SET ROLE leader_sidecar; DELETE FROM leader_sidecar_leases");
        Assert.NotEqual(0, code);
        Assert.Contains("permission denied", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Wrong_credentials_are_unauthorized_and_a_role_without_grants_is_forbidden()
    {
        await Connect().GetAsync(Ct);
        await _server.PsqlAsync("CREATE ROLE app LOGIN PASSWORD 'apppw'");

        var wrong = await Assert.ThrowsAsync<LeaseStoreException>(() => Connect("app", "nope").GetAsync(Ct));
        Assert.Equal(LeaseStoreFailure.Unauthorized, wrong.Reason);
        Assert.DoesNotContain("nope", wrong.Message, StringComparison.Ordinal);

        var none = await Assert.ThrowsAsync<LeaseStoreException>(() => Connect("app").GetAsync(Ct));
        Assert.Equal(LeaseStoreFailure.Unauthorized, none.Reason);

        var unknown = await Assert.ThrowsAsync<LeaseStoreException>(() => Connect("nobody", "pw").GetAsync(Ct));
        Assert.Equal(LeaseStoreFailure.Unauthorized, unknown.Reason);

        var denied = await Assert.ThrowsAsync<LeaseStoreException>(() => Connect("app", "apppw").GetAsync(Ct));
        Assert.Equal(LeaseStoreFailure.Forbidden, denied.Reason);
    }

    [Fact]
    public async Task A_missing_table_is_forbidden_when_the_daemon_may_not_create_it_or_cannot()
    {
        var notAllowed = await Assert.ThrowsAsync<LeaseStoreException>(() => Connect(createTable: false).GetAsync(Ct));
        Assert.Equal(LeaseStoreFailure.Forbidden, notAllowed.Reason);
        Assert.Contains("deploy/postgres/setup.sql", notAllowed.Message, StringComparison.Ordinal);

        // PostgreSQL 15 grants no CREATE on the public schema to ordinary roles.
        await _server.PsqlAsync("CREATE ROLE app LOGIN PASSWORD 'apppw'");
        var cannot = await Assert.ThrowsAsync<LeaseStoreException>(() => Connect("app", "apppw").GetAsync(Ct));
        Assert.Equal(LeaseStoreFailure.Forbidden, cannot.Reason);
        Assert.Contains("permission denied for schema public", cannot.Message, StringComparison.Ordinal);

        // A table without the triggers is not used: hand edits would go unseen.
        await _server.PsqlAsync("CREATE TABLE leader_sidecar_leases (namespace text, name text)");
        var bare = await Assert.ThrowsAsync<LeaseStoreException>(() => Connect(createTable: false).GetAsync(Ct));
        Assert.Contains("has no leader-sidecar triggers", bare.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_table_dropped_under_a_running_store_is_created_again()
    {
        var store = Connect();
        await store.CreateAsync(Record("a"), Ct);
        await _server.PsqlAsync("DROP TABLE leader_sidecar_leases");

        var gone = await Assert.ThrowsAsync<LeaseStoreException>(() => store.GetAsync(Ct));
        Assert.Equal(LeaseStoreFailure.Forbidden, gone.Reason);

        Assert.Null(await store.GetAsync(Ct));
        Assert.Equal("2", await _server.PsqlAsync("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'leader_sidecar_leases'::regclass"));
    }

    [Fact]
    public async Task Daemons_starting_together_on_an_empty_database_create_one_table_between_them()
    {
        var stores = Enumerable.Range(0, 4).Select(_ => Connect()).ToList();

        var reads = await Task.WhenAll(stores.Select(s => s.GetAsync(Ct)));

        Assert.All(reads, Assert.Null);
        Assert.Equal("1", await _server.PsqlAsync("SELECT count(*) FROM pg_class WHERE relname = 'leader_sidecar_leases'"));
    }

    [Fact]
    public async Task A_schema_qualified_table_is_created_there_and_watched_on_its_own_name()
    {
        await _server.PsqlAsync("CREATE SCHEMA coordination");
        var writer = Track(Store(_server.Url(), table: "coordination.leases"));
        var created = await writer.CreateAsync(Record("a"), Ct);
        await using var watch = Track(Store(_server.Url(), table: "coordination.leases")).WatchAsync(Ct).GetAsyncEnumerator(Ct);
        Assert.Equal(created, await NextAsync(watch));

        var renewed = await writer.UpdateAsync(created, Record("a", renewedAfterSeconds: 2), Ct);

        Assert.Equal(renewed, await NextAsync(watch));
        Assert.Equal("a", await _server.PsqlAsync("SELECT holder_identity FROM coordination.leases"));
    }

    [Fact]
    public async Task A_listener_that_never_hears_its_probe_ends_the_watch_and_says_so_once()
    {
        // A pooler in transaction mode hands LISTEN to a server connection that is not ours, so
        // nothing comes back. Listening on a channel nobody notifies is the same silence.
        var logs = new ListLogger<PostgresLeaseStore>();
        var store = Track(Store(_server.Url(), channel: "nobody_notifies_this", requestTimeout: TimeSpan.FromSeconds(2), logger: logs));
        await Connect().CreateAsync(Record("a"), Ct);

        for (var attempt = 0; attempt < 2; attempt++)
        {
            await using var watch = store.WatchAsync(Ct).GetAsyncEnumerator(Ct);
            var silent = await Assert.ThrowsAsync<LeaseStoreException>(() => NextAsync(watch));
            Assert.Equal(LeaseStoreFailure.Unavailable, silent.Reason);
            Assert.Contains("probe", silent.Message, StringComparison.Ordinal);
        }

        Assert.Single(logs.Entries, e => e.Event.Name == "PostgresListenSilent" && e.Level == LogLevel.Warning);
        Assert.NotNull(await store.GetAsync(Ct));
    }

    [Fact]
    public async Task Behind_a_listener_that_hears_nothing_followers_poll_and_still_take_over_a_released_lease()
    {
        // Generous timeouts: on a loaded machine a watch must not fail for slowness before its probe.
        var options = new ElectionOptions { Identity = "x", LeaseName = "app", LeaseDuration = TimeSpan.FromSeconds(6), RenewDeadline = TimeSpan.FromSeconds(4), RetryPeriod = TimeSpan.FromSeconds(1) };
        var logs = new ListLogger<PostgresLeaseStore>();
        using var a = new RunningElector(Track(Store(_server.Url(), channel: "nobody_notifies_this", requestTimeout: TimeSpan.FromSeconds(3), logger: logs)), options with { Identity = "a" });
        using var b = new RunningElector(Track(Store(_server.Url(), channel: "nobody_notifies_this", requestTimeout: TimeSpan.FromSeconds(3), logger: logs)), options with { Identity = "b" });
        await Poll.UntilAsync(() => Task.FromResult(a.Leads ^ b.Leads), TimeSpan.FromSeconds(30), "one of the two to lead");
        var (leader, follower) = a.Leads ? (a, b) : (b, a);
        await Poll.UntilAsync(() => Task.FromResult(follower.State.Current.Holder == leader.Options.Identity), TimeSpan.FromSeconds(30), "the follower to know the leader");
        await Poll.UntilAsync(() => Task.FromResult(logs.Entries.Count(e => e.Event.Name == "PostgresListenSilent") == 2), TimeSpan.FromSeconds(60), "both watches to find LISTEN silent");

        await leader.Elector.ResignAsync(TimeSpan.FromMinutes(5), Ct);

        await Poll.UntilAsync(() => Task.FromResult(follower.Leads), TimeSpan.FromSeconds(30), "the follower to take over the released lease");
        Assert.Equal(1, (await Connect().GetAsync(Ct))?.Record.LeaseTransitions);
    }

    [Fact]
    public async Task A_watch_on_a_server_that_stopped_answering_ends_within_its_quiet_check()
    {
        var created = await Connect().CreateAsync(Record("a"), Ct);
        await using var watch = Track(Store(_server.Url(), requestTimeout: TimeSpan.FromSeconds(1))).WatchAsync(Ct).GetAsyncEnumerator(Ct);
        Assert.Equal(created, await NextAsync(watch));

        _server.Pause();

        var failure = await Assert.ThrowsAsync<LeaseStoreException>(() => NextAsync(watch));
        Assert.Equal(LeaseStoreFailure.Timeout, failure.Reason);
        _server.Resume();
    }

    [Fact]
    public async Task After_the_first_host_dies_requests_and_the_next_watch_go_to_the_next_one()
    {
        // The second server stands for a promoted replica: it has the table, not (here) the row.
        await using var second = await PostgresServer.StartAsync();
        await second.PsqlFileAsync(Repository.PathOf("deploy/postgres/setup.sql"));
        var url = $"postgresql://postgres@127.0.0.1:{_server.Port},127.0.0.1:{second.Port}/postgres?target_session_attrs=primary";
        var store = Track(Store(url));
        var created = await store.CreateAsync(Record("a"), Ct);
        Assert.Equal("a", await _server.PsqlAsync("SELECT holder_identity FROM leader_sidecar_leases"));
        await using (var watch = store.WatchAsync(Ct).GetAsyncEnumerator(Ct))
        {
            Assert.Equal(created, await NextAsync(watch));

            await _server.StopAsync();

            var lost = await Assert.ThrowsAsync<LeaseStoreException>(() => NextAsync(watch));
            Assert.Equal(LeaseStoreFailure.Unavailable, lost.Reason);
        }

        await using var next = store.WatchAsync(Ct).GetAsyncEnumerator(Ct);
        Assert.Null(await NextAsync(next));
        var again = await store.CreateAsync(Record("b"), Ct);
        Assert.Equal(again, await NextAsync(next));
        Assert.Equal("b", await second.PsqlAsync("SELECT holder_identity FROM leader_sidecar_leases"));
    }

    [Fact]
    public async Task Over_tls_verify_full_with_the_servers_ca_works_and_a_role_refused_without_tls_is_unauthorized()
    {
        await using var tls = await PostgresServer.StartAsync(tls: true);
        await tls.PsqlAsync("CREATE ROLE app LOGIN PASSWORD 'apppw'");
        await tls.PsqlAsync("GRANT CREATE ON SCHEMA public TO app");

        var verified = Track(Store(tls.Url("app", $"?sslmode=verify-full&sslrootcert={tls.CaFile}"), "apppw"));
        var created = await verified.CreateAsync(Record("a"), Ct);
        await using (var watch = verified.WatchAsync(Ct).GetAsyncEnumerator(Ct))
        {
            Assert.Equal(created, await NextAsync(watch));
        }

        var plain = Track(Store(tls.Url("app", "?sslmode=disable"), "apppw"));
        var refused = await Assert.ThrowsAsync<LeaseStoreException>(() => plain.GetAsync(Ct));
        Assert.Equal(LeaseStoreFailure.Unauthorized, refused.Reason);
    }

    private PostgresLeaseStore Connect(string? user = null, string? password = null, bool createTable = true) =>
        Track(Store(_server.Url(user ?? "postgres"), password, createTable: createTable));

    private PostgresLeaseStore Track(PostgresLeaseStore store)
    {
        _stores.Add(store);
        return store;
    }

    private static LeaseRecord Record(string holder, int transitions = 0, int renewedAfterSeconds = 0) =>
        new(holder, 15, Now, Now.AddSeconds(renewedAfterSeconds), transitions);

    /// <summary>A real-time elector on a store, running until disposed.</summary>
    private sealed class RunningElector : IDisposable
    {
        private readonly CancellationTokenSource _stop = new();

        public RunningElector(ILeaseStore store, ElectionOptions options)
        {
            Options = options;
            State = new LeadershipState(options, TimeProvider.System, NullLogger<LeadershipState>.Instance);
            Elector = new LeaderElector(store, options, State, TimeProvider.System, NullLogger<LeaderElector>.Instance);
            _ = Elector.RunAsync(_stop.Token);
        }

        public ElectionOptions Options { get; }

        public LeadershipState State { get; }

        public LeaderElector Elector { get; }

        public bool Leads => State.Current.IsLeader;

        public void Dispose()
        {
            _stop.Cancel();
            _stop.Dispose();
            Elector.Dispose();
            State.Dispose();
        }
    }

    private static async Task<LeaseSnapshot?> NextAsync(IAsyncEnumerator<LeaseSnapshot?> watch) =>
        await watch.MoveNextAsync() ? watch.Current : throw new TimeoutException("the watch ended");
}
