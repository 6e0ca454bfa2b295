using System.Text;
using LeaderSidecar.Election;
using LeaderSidecar.Stores.Etcd;
using Microsoft.Extensions.Logging.Abstractions;

namespace LeaderSidecar.Tests.Stores.Etcd;

/// <summary>What only etcd has: its value format, compaction, auth and several members.</summary>
public sealed class EtcdLeaseStoreTests : IAsyncLifetime
{
    internal const string Key = "/leader-sidecar/demo/app";
    private static readonly DateTimeOffset Now = new DateTimeOffset(2026, 11, 25, 2, 4, 12, TimeSpan.Zero).AddTicks(1_234_560);
    private readonly CancellationTokenSource _timeout = new(TimeSpan.FromSeconds(60));
    private readonly List<EtcdLeaseStore> _stores = [];
    private EtcdServer _server = null!;

    private CancellationToken Ct => _timeout.Token;

    public async Task InitializeAsync() => _server = await EtcdServer.StartAsync();

    public async Task DisposeAsync()
    {
        foreach (var store in _stores)
        {
            store.Dispose();
        }

        await _server.DisposeAsync();
        _timeout.Dispose();
    }

    internal static EtcdLeaseStore Store(IReadOnlyList<Uri> endpoints, string? user = null, string? password = null, TimeSpan? requestTimeout = null) =>
        new(
            new EtcdConnection(endpoints, user, password, null, null, NullLogger<EtcdConnection>.Instance),
            EtcdOptions.DefaultPrefix,
            "demo",
            "app",
            requestTimeout ?? TimeSpan.FromSeconds(10),
            TimeProvider.System,
            NullLogger<EtcdLeaseStore>.Instance);

    /// <summary>
    /// A user with the least a sidecar needs, as docs/STORES-ETCD.md sets it up: a role with
    /// readwrite on the key range of the default prefix, and nothing else. Before auth is enabled.
    /// </summary>
    internal static async Task AddElectionUserAsync(EtcdServer server, string user, string password)
    {
        await server.EtcdctlAsync("user", "add", $"{user}:{password}");
        await server.EtcdctlAsync("role", "add", "leader-sidecar");
        await server.EtcdctlAsync("role", "grant-permission", "leader-sidecar", "--prefix=true", "readwrite", EtcdOptions.DefaultPrefix);
        await server.EtcdctlAsync("user", "grant-role", user, "leader-sidecar");
    }

    [Fact]
    public async Task The_value_is_the_record_as_json_with_the_lease_spec_field_names_and_microtime()
    {
        var created = await Connect().CreateAsync(Record("a", 3), Ct);

        var value = await _server.EtcdctlAsync("get", Key, "--print-value-only");

        Assert.Equal(
            """{"holderIdentity":"a","leaseDurationSeconds":15,"acquireTime":"2026-11-25T02:04:12.123456Z","renewTime":"2026-11-25T02:04:12.123456Z","leaseTransitions":3}""",
            value.Trim());
        Assert.Equal(created.Version, created.Uid);
    }

    [Fact]
    public async Task The_version_is_the_mod_revision_and_the_uid_the_create_revision()
    {
        var store = Connect();
        var before = await _server.BumpAsync();
        var created = await store.CreateAsync(Record("a"), Ct);
        await _server.BumpAsync();
        var renewed = await store.UpdateAsync(created, Record("a"), Ct);

        Assert.Equal((before + 1).ToString(System.Globalization.CultureInfo.InvariantCulture), created.Uid);
        Assert.Equal((before + 3).ToString(System.Globalization.CultureInfo.InvariantCulture), renewed.Version);
        Assert.Equal(created.Uid, renewed.Uid);
        Assert.Equal(renewed, await store.GetAsync(Ct));
    }

    [Theory]
    [InlineData("not json")]
    [InlineData("null")]
    [InlineData("[1,2]")]
    [InlineData("""{"holderIdentity":"a","renewTime":"yesterday"}""")]
    [InlineData("""{"holderIdentity":"a","leaseDurationSeconds":1e400}""")]
    public async Task A_value_that_is_not_a_record_is_invalid(string garbage)
    {
        await _server.PutAsync(Key, Encoding.UTF8.GetBytes(garbage));

        var failure = await Assert.ThrowsAsync<LeaseStoreException>(() => Connect().GetAsync(Ct));

        Assert.Equal(LeaseStoreFailure.Invalid, failure.Reason);
    }

    [Fact]
    public async Task An_oversized_value_is_invalid_and_never_quoted_whole()
    {
        var huge = Encoding.UTF8.GetBytes("{\"holderIdentity\":\"" + new string('x', 100 * 1024) + "\"}");
        await _server.PutAsync(Key, huge);

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

        await _server.PutAsync(Key, Encoding.UTF8.GetBytes("garbage"));

        var failure = await Assert.ThrowsAsync<LeaseStoreException>(() => NextAsync(watch));
        Assert.Equal(LeaseStoreFailure.Invalid, failure.Reason);
    }

    [Fact]
    public async Task A_watch_from_a_compacted_revision_fails_and_the_next_watch_reads_the_newest_state()
    {
        // A watch is opened from the revision after its read; a compaction in between (a slow
        // open, a busy cluster) leaves nothing to stream from. Only the open can meet it: a watch
        // that is streaming is never compacted under, and every new watch reads first.
        var writer = Connect();
        var reader = Connect();
        var read = await writer.CreateAsync(Record("a"), Ct);
        var current = read;
        for (var i = 1; i <= 3; i++)
        {
            current = await writer.UpdateAsync(current, Record("a", 0, i), Ct);
        }

        await _server.CompactAsync(await _server.BumpAsync());
        await using (var stale = reader.WatchFromAsync(read, long.Parse(read.Version, System.Globalization.CultureInfo.InvariantCulture), Ct).GetAsyncEnumerator(Ct))
        {
            // etcd confirms the watch, then finds its start compacted: the stream ends at once.
            Assert.Equal(read, await NextAsync(stale));
            var failure = await Assert.ThrowsAsync<LeaseStoreException>(() => NextAsync(stale));
            Assert.Equal(LeaseStoreFailure.Unavailable, failure.Reason);
            Assert.Contains("compacted", failure.Message, StringComparison.Ordinal);
        }

        await using var again = reader.WatchAsync(Ct).GetAsyncEnumerator(Ct);
        Assert.Equal(current, await NextAsync(again));
        current = await writer.UpdateAsync(current, Record("a", 0, 9), Ct);
        Assert.Equal(current, await NextAsync(again));
    }

    [Fact]
    public async Task Wrong_credentials_are_unauthorized_and_a_user_without_a_role_on_the_key_is_forbidden()
    {
        await AddElectionUserAsync(_server, "app", "apppw");
        await _server.EtcdctlAsync("user", "add", "other:otherpw");
        await _server.EnableAuthAsync();

        var allowed = Connect(user: "app", password: "apppw");
        var created = await allowed.CreateAsync(Record("a"), Ct);
        Assert.Equal(created, await allowed.GetAsync(Ct));
        await using (var watch = allowed.WatchAsync(Ct).GetAsyncEnumerator(Ct))
        {
            Assert.Equal(created, await NextAsync(watch));
        }

        var wrong = await Assert.ThrowsAsync<LeaseStoreException>(() => Connect(user: "app", password: "nope").GetAsync(Ct));
        Assert.Equal(LeaseStoreFailure.Unauthorized, wrong.Reason);

        var anonymous = await Assert.ThrowsAsync<LeaseStoreException>(() => Connect().GetAsync(Ct));
        Assert.Equal(LeaseStoreFailure.Unauthorized, anonymous.Reason);

        var other = Connect(user: "other", password: "otherpw");
        var denied = await Assert.ThrowsAsync<LeaseStoreException>(() => other.GetAsync(Ct));
        Assert.Equal(LeaseStoreFailure.Forbidden, denied.Reason);
        var deniedWrite = await Assert.ThrowsAsync<LeaseStoreException>(() => other.UpdateAsync(created, Record("b", 1), Ct));
        Assert.Equal(LeaseStoreFailure.Forbidden, deniedWrite.Reason);
    }

    [Fact]
    public async Task A_role_on_the_one_key_alone_is_enough_to_create_renew_and_watch()
    {
        await _server.EtcdctlAsync("user", "add", "app:apppw");
        await _server.EtcdctlAsync("role", "add", "one-lease");
        await _server.EtcdctlAsync("role", "grant-permission", "one-lease", "readwrite", Key);
        await _server.EtcdctlAsync("user", "grant-role", "app", "one-lease");
        await _server.EnableAuthAsync();
        var store = Connect(user: "app", password: "apppw");

        var created = await store.CreateAsync(Record("a"), Ct);
        await using var watch = store.WatchAsync(Ct).GetAsyncEnumerator(Ct);
        Assert.Equal(created, await NextAsync(watch));
        var renewed = await store.UpdateAsync(created, Record("a", 0, 1), Ct);

        Assert.Equal(renewed, await NextAsync(watch));
    }

    [Fact]
    public async Task An_expired_token_is_renewed_by_logging_in_again()
    {
        await using var server = await EtcdServer.StartAsync("--auth-token-ttl", "1");
        await AddElectionUserAsync(server, "app", "apppw");
        await server.EnableAuthAsync();
        var store = Track(Store([server.Endpoint], "app", "apppw"));
        var created = await store.CreateAsync(Record("a"), Ct);

        // An idle simple token expires after its TTL; etcd logs when it drops one.
        await Poll.UntilAsync(() => Task.FromResult(server.Log.Contains("\"deleted a simple token\",\"user-name\":\"app\"", StringComparison.Ordinal)), TimeSpan.FromSeconds(30), "etcd to expire the token");

        Assert.Equal(created, await store.GetAsync(Ct));
    }

    [Fact]
    public async Task A_watch_on_a_member_that_stopped_answering_ends_as_unavailable()
    {
        // A quiet lease sends nothing, so only the connection's pings can tell a frozen or vanished
        // member from a calm one (about 20 s: a ping every 10 s, 10 s to answer).
        var created = await Connect().CreateAsync(Record("a"), Ct);
        await using var watch = Connect().WatchAsync(Ct).GetAsyncEnumerator(Ct);
        Assert.Equal(created, await NextAsync(watch));

        _server.Pause();

        var failure = await Assert.ThrowsAsync<LeaseStoreException>(() => NextAsync(watch));
        Assert.Equal(LeaseStoreFailure.Unavailable, failure.Reason);
        _server.Resume();
    }

    [Fact]
    public async Task A_refused_first_endpoint_fails_over_to_the_next()
    {
        var refused = new Uri($"http://127.0.0.1:{ServerProcess.FreePort()}");
        var store = Track(Store([refused, _server.Endpoint]));

        // A refused connection never carried the request, so even a write moves on at once.
        var created = await store.CreateAsync(Record("a"), Ct);
        Assert.Equal(created, await store.GetAsync(Ct));
        await using var watch = store.WatchAsync(Ct).GetAsyncEnumerator(Ct);
        Assert.Equal(created, await NextAsync(watch));
        Assert.Contains(refused.Authority, store.Description, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_member_that_stops_answering_is_left_for_the_next_after_the_request_is_cancelled()
    {
        await using var second = await EtcdServer.StartAsync();
        var store = Track(Store([_server.Endpoint, second.Endpoint]));
        Assert.Null(await store.GetAsync(Ct));
        _server.Pause();

        // The write may have reached the hung member, so it is not repeated elsewhere: it is
        // abandoned when the caller's deadline passes, and the next request goes to the next member.
        using (var deadline = new CancellationTokenSource(TimeSpan.FromMilliseconds(500)))
        {
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => store.CreateAsync(Record("a"), deadline.Token));
        }

        var created = await store.CreateAsync(Record("b"), Ct);
        Assert.Equal(created, await store.GetAsync(Ct));
        _server.Resume();
    }

    private EtcdLeaseStore Connect(string? user = null, string? password = null) => Track(Store([_server.Endpoint], user, password));

    private EtcdLeaseStore Track(EtcdLeaseStore store)
    {
        _stores.Add(store);
        return store;
    }

    private static LeaseRecord Record(string holder, int transitions = 0, int renewedAfterSeconds = 0) =>
        new(holder, 15, Now, Now.AddSeconds(renewedAfterSeconds), transitions);

    private static async Task<LeaseSnapshot?> NextAsync(IAsyncEnumerator<LeaseSnapshot?> watch) =>
        await watch.MoveNextAsync() ? watch.Current : throw new TimeoutException("the watch ended");
}
