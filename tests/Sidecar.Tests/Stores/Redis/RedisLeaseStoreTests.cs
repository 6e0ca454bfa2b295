using System.Globalization;
using System.Security.Cryptography.X509Certificates;
using LeaderSidecar.Election;
using LeaderSidecar.Stores.Redis;
using LeaderSidecar.Testing.LeaseApi.Tls;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace LeaderSidecar.Tests.Stores.Redis;

/// <summary>What only Redis has: its hash, scripts, pub/sub, WAIT, ACLs, TLS and its own failures.</summary>
public sealed class RedisLeaseStoreTests : IAsyncLifetime
{
    internal const string Key = "leader-sidecar:demo:app";
    private static readonly DateTimeOffset Now = new DateTimeOffset(2026, 11, 25, 2, 4, 12, TimeSpan.Zero).AddTicks(1_234_560);
    private readonly CancellationTokenSource _timeout = new(TimeSpan.FromSeconds(60));
    private readonly List<RedisLeaseStore> _stores = [];
    private readonly List<RedisServer> _servers = [];
    private RedisServer _server = null!;

    private CancellationToken Ct => _timeout.Token;

    public async Task InitializeAsync() => _server = await StartAsync();

    public async Task DisposeAsync()
    {
        foreach (var store in _stores)
        {
            store.Dispose();
        }

        foreach (var server in _servers)
        {
            server.Resume();
            await server.DisposeAsync();
        }

        _timeout.Dispose();
    }

    internal static RedisLeaseStore Store(
        RedisEndpoint endpoint,
        string? password = null,
        int minReplicas = 0,
        TimeSpan? requestTimeout = null,
        TimeSpan? syncInterval = null,
        X509Certificate2Collection? trustedRoots = null,
        TimeProvider? time = null) =>
        new(
            new RedisServerSettings(endpoint, password, trustedRoots, null),
            RedisOptions.DefaultPrefix,
            "demo",
            "app",
            minReplicas,
            requestTimeout ?? TimeSpan.FromSeconds(10),
            time ?? TimeProvider.System,
            NullLogger<RedisLeaseStore>.Instance,
            syncInterval);

    [Fact]
    public async Task The_lease_is_a_hash_of_the_record_with_version_uid_and_nonce_as_redis_cli_shows_it()
    {
        var store = Connect();
        var created = await store.CreateAsync(Record("a", 3), Ct);

        var hash = await _server.HashAsync(Key);

        Assert.Equal("a", hash["holderIdentity"]);
        Assert.Equal("15", hash["leaseDurationSeconds"]);
        Assert.Equal("2026-11-25T02:04:12.123456Z", hash["acquireTime"]);
        Assert.Equal("2026-11-25T02:04:12.123456Z", hash["renewTime"]);
        Assert.Equal("3", hash["leaseTransitions"]);
        Assert.Equal("1", hash["version"]);
        Assert.Equal(created.Uid, hash["uid"]);
        Assert.True(Guid.TryParse(created.Uid, out _), created.Uid);
        Assert.Matches("^[0-9a-f]{16}$", hash["nonce"]);
        Assert.Equal(8, hash.Count);

        var renewed = await store.UpdateAsync(created, Record("a", 3) with { RenewTime = null }, Ct);
        var after = await _server.HashAsync(Key);
        Assert.Equal("2", after["version"]);
        Assert.Equal(created.Uid, after["uid"]);
        Assert.NotEqual(hash["nonce"], after["nonce"]);
        Assert.False(after.ContainsKey("renewTime"));
        Assert.Equal(renewed, await store.GetAsync(Ct));
        Assert.StartsWith("2.", renewed.Version, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_write_is_published_so_a_watch_sees_it_at_once_not_at_its_resync()
    {
        // A resync far beyond the test: only the published message can wake the watch.
        var watcher = Connect(syncInterval: TimeSpan.FromHours(1));
        var writer = Connect();
        var created = await writer.CreateAsync(Record("a"), Ct);
        await using var watch = watcher.WatchAsync(Ct).GetAsyncEnumerator(Ct);
        Assert.Equal(created, await NextAsync(watch));

        var released = await writer.UpdateAsync(created, Record("") with { LeaseDurationSeconds = 1 }, Ct);

        Assert.Equal(released, await NextAsync(watch));
    }

    [Fact]
    public async Task A_watch_takes_each_published_record_as_it_is_and_reads_nothing_while_the_leader_renews()
    {
        var watcher = Connect(syncInterval: TimeSpan.FromHours(1));
        var writer = Connect();
        var current = await writer.CreateAsync(Record("a"), Ct);
        await using var watch = watcher.WatchAsync(Ct).GetAsyncEnumerator(Ct);
        Assert.Equal(current, await NextAsync(watch));
        var reads = await _server.CallsAsync("HGETALL");
        var pings = await _server.CallsAsync("PING");

        for (var renew = 1; renew <= 20; renew++)
        {
            current = await writer.UpdateAsync(current, Record(renew % 2 == 0 ? "a" : "", renew, renewedAfterSeconds: renew), Ct);
            Assert.Equal(current, await NextAsync(watch));
        }

        // Every renew's message carried the record: not one read more than before them.
        Assert.Equal(reads, await _server.CallsAsync("HGETALL"));
        Assert.Equal(pings, await _server.CallsAsync("PING"));
    }

    [Fact]
    public async Task The_sync_read_waits_for_a_sync_interval_without_records_so_renews_keep_it_away()
    {
        // The watch's clock is a fake one: 20 renews half a sync interval apart, 10 intervals in all.
        var time = new FakeTimeProvider(Now);
        var watcher = Track(Store(_server.Endpoint, syncInterval: TimeSpan.FromSeconds(1), time: time));
        var writer = Connect();
        var current = await writer.CreateAsync(Record("a"), Ct);
        await using var watch = watcher.WatchAsync(Ct).GetAsyncEnumerator(Ct);
        Assert.Equal(current, await NextAsync(watch));
        var reads = await _server.CallsAsync("HGETALL");

        for (var renew = 1; renew <= 20; renew++)
        {
            // The watch waits (its timer set) before the clock moves and the renew comes.
            var waiting = watch.MoveNextAsync().AsTask();
            time.Advance(TimeSpan.FromMilliseconds(500));
            current = await writer.UpdateAsync(current, Record("a", renewedAfterSeconds: renew), Ct);
            Assert.True(await waiting);
            Assert.Equal(current, watch.Current);
        }

        Assert.Equal(reads, await _server.CallsAsync("HGETALL"));

        // Then no record for a whole interval: the watch reads, and finds a hand edit.
        await _server.ExpectAsync("0", "HSET", Key, "holderIdentity", "stranger");
        var next = watch.MoveNextAsync().AsTask();
        await Poll.UntilAsync(
            () =>
            {
                if (!next.IsCompleted)
                {
                    time.Advance(TimeSpan.FromMilliseconds(100));
                }

                return Task.FromResult(next.IsCompleted);
            },
            TimeSpan.FromSeconds(10),
            "the watch to read the hash once no record came for its sync interval");
        Assert.True(await next);
        Assert.Equal("stranger", watch.Current!.Record.HolderIdentity);
    }

    [Fact]
    public async Task A_message_that_does_not_follow_from_the_last_record_makes_the_watch_read_the_hash()
    {
        var watcher = Connect(syncInterval: TimeSpan.FromHours(1));
        var created = await Connect().CreateAsync(Record("a"), Ct);
        await using var watch = watcher.WatchAsync(Ct).GetAsyncEnumerator(Ct);
        Assert.Equal(created, await NextAsync(watch));

        // An earlier version of the daemon publishes only the new version: read it from the hash.
        await _server.ExpectAsync("0", "HSET", Key, "holderIdentity", "stranger");
        await _server.ExpectAsync("1", "PUBLISH", Key, "2");
        Assert.Equal("stranger", (await NextAsync(watch))!.Record.HolderIdentity);

        // A record under another uid (the key deleted and created again): read, not believed.
        await _server.ExpectAsync("0", "HSET", Key, "holderIdentity", "b");
        const string foreign = "14:holderIdentity;8:intruder;7:version;1:9;3:uid;5:other;5:nonce;1:x;";
        await _server.ExpectAsync("1", "PUBLISH", Key, foreign);
        Assert.Equal("b", (await NextAsync(watch))!.Record.HolderIdentity);
    }

    [Fact]
    public async Task A_message_older_than_what_the_watch_holds_is_skipped()
    {
        var watcher = Connect(syncInterval: TimeSpan.FromHours(1));
        var writer = Connect();
        var created = await writer.CreateAsync(Record("a"), Ct);
        var first = await _server.HashAsync(Key);
        await using var watch = watcher.WatchAsync(Ct).GetAsyncEnumerator(Ct);
        Assert.Equal(created, await NextAsync(watch));
        var renewed = await writer.UpdateAsync(created, Record("a", renewedAfterSeconds: 1), Ct);
        Assert.Equal(renewed, await NextAsync(watch));

        // The create's message again, as if it had been published before the watch's read and
        // delivered after it: the watch must not go back to it.
        var stale = string.Concat(RedisLeaseHash.FingerprintFields.Where(first.ContainsKey).Select(f => $"{f.Length}:{f};{first[f].Length}:{first[f]};"));
        await _server.ExpectAsync("1", "PUBLISH", Key, stale);
        var next = await writer.UpdateAsync(renewed, Record("a", renewedAfterSeconds: 2), Ct);

        Assert.Equal(next, await NextAsync(watch));
    }

    [Fact]
    public async Task A_hand_edit_publishes_nothing_and_the_watch_finds_it_at_its_sync_read()
    {
        var watcher = Connect(syncInterval: TimeSpan.FromMilliseconds(200));
        var created = await Connect().CreateAsync(Record("a"), Ct);
        await using var watch = watcher.WatchAsync(Ct).GetAsyncEnumerator(Ct);
        Assert.Equal(created, await NextAsync(watch));

        await _server.ExpectAsync("0", "HSET", Key, "holderIdentity", "stranger");
        Assert.Equal("stranger", (await NextAsync(watch))!.Record.HolderIdentity);

        await _server.ExpectAsync("1", "DEL", Key);
        Assert.Null(await NextAsync(watch));
    }

    [Fact]
    public async Task A_hand_edit_that_leaves_the_version_alone_still_makes_a_stale_compare_and_swap_lose()
    {
        var store = Connect();
        var created = await store.CreateAsync(Record("a"), Ct);
        await _server.ExpectAsync("0", "HSET", Key, "holderIdentity", "stranger");

        var stale = await Assert.ThrowsAsync<LeaseStoreException>(() => store.UpdateAsync(created, Record("a", renewedAfterSeconds: 2), Ct));

        Assert.Equal(LeaseStoreFailure.Conflict, stale.Reason);
        var now = await store.GetAsync(Ct);
        Assert.Equal("stranger", now!.Record.HolderIdentity);
        Assert.Equal("1", (await _server.HashAsync(Key))["version"]);
        Assert.Equal("b", (await store.UpdateAsync(now, Record("b", 1), Ct)).Record.HolderIdentity);
    }

    [Fact]
    public async Task Scripts_are_loaded_once_and_again_after_SCRIPT_FLUSH_or_a_restart()
    {
        var store = Connect();
        var current = await store.CreateAsync(Record("a"), Ct);
        current = await store.UpdateAsync(current, Record("a", renewedAfterSeconds: 1), Ct);
        current = await store.UpdateAsync(current, Record("a", renewedAfterSeconds: 2), Ct);
        Assert.Equal(2, store.ScriptLoads);

        await _server.ScriptFlushAsync();
        current = await store.UpdateAsync(current, Record("a", renewedAfterSeconds: 3), Ct);
        Assert.Equal(3, store.ScriptLoads);

        await _server.RestartAsync();
        current = await store.UpdateAsync(current, Record("a", renewedAfterSeconds: 4), Ct);
        Assert.Equal(4, store.ScriptLoads);
        Assert.Equal(current, await store.GetAsync(Ct));
        await _server.ExpectAsync("1", "SCRIPT", "EXISTS", RedisLeaseHash.Update.Sha);
    }

    [Fact]
    public async Task A_restart_keeps_the_lease_and_the_next_request_reconnects_instead_of_failing()
    {
        var store = Connect();
        var created = await store.CreateAsync(Record("a"), Ct);

        await _server.RestartAsync();

        Assert.Equal(created, await store.GetAsync(Ct));
        await store.UpdateAsync(created, Record("a", renewedAfterSeconds: 1), Ct);
    }

    [Fact]
    public async Task A_dropped_subscription_ends_the_watch_and_a_new_watch_reads_the_newest_state_first()
    {
        var writer = Connect();
        var watcher = Connect(syncInterval: TimeSpan.FromHours(1));
        var current = await writer.CreateAsync(Record("a"), Ct);
        var watch = watcher.WatchAsync(Ct).GetAsyncEnumerator(Ct);
        Assert.Equal(current, await NextAsync(watch));

        Assert.Equal("1", (await _server.KillSubscribersAsync()).Trim());
        var ended = await Assert.ThrowsAsync<LeaseStoreException>(async () => await watch.MoveNextAsync());
        await watch.DisposeAsync();
        Assert.Equal(LeaseStoreFailure.Unavailable, ended.Reason);
        current = await writer.UpdateAsync(current, Record("a", renewedAfterSeconds: 1), Ct);

        await using var resumed = watcher.WatchAsync(Ct).GetAsyncEnumerator(Ct);
        Assert.Equal(current, await NextAsync(resumed));
        current = await writer.UpdateAsync(current, Record("a", renewedAfterSeconds: 2), Ct);
        Assert.Equal(current, await NextAsync(resumed));
    }

    [Fact]
    public async Task With_min_replicas_and_no_replica_a_write_lands_but_is_not_confirmed()
    {
        var store = Connect(minReplicas: 1, requestTimeout: TimeSpan.FromSeconds(2));

        var create = await Assert.ThrowsAsync<LeaseStoreException>(() => store.CreateAsync(Record("a"), Ct));

        Assert.Equal(LeaseStoreFailure.Unavailable, create.Reason);
        Assert.Contains("not confirmed", create.Message, StringComparison.Ordinal);
        Assert.Equal(1, store.UnconfirmedWrites);

        // WAIT undoes nothing: the write stands on the primary, and the next write goes over it.
        var landed = await store.GetAsync(Ct);
        Assert.Equal(Record("a"), landed!.Record);
        var update = await Assert.ThrowsAsync<LeaseStoreException>(() => store.UpdateAsync(landed, Record("a", renewedAfterSeconds: 1), Ct));
        Assert.Equal(LeaseStoreFailure.Unavailable, update.Reason);
        Assert.Equal(2, store.UnconfirmedWrites);
        Assert.Equal("2", (await _server.HashAsync(Key))["version"]);
    }

    [Fact]
    public async Task With_min_replicas_and_a_real_replica_writes_are_confirmed_and_replicated()
    {
        var replica = await _server.StartReplicaAsync();
        _servers.Add(replica);
        var store = Connect(minReplicas: 1, requestTimeout: TimeSpan.FromSeconds(5));

        var created = await store.CreateAsync(Record("a"), Ct);
        var renewed = await store.UpdateAsync(created, Record("a", renewedAfterSeconds: 1), Ct);

        Assert.Equal(0, store.UnconfirmedWrites);
        Assert.Equal("2", (await replica.HashAsync(Key))["version"]);
        Assert.Equal(renewed, await Store(replica.Endpoint).GetAsync(Ct));
    }

    [Fact]
    public async Task A_replica_refuses_writes_and_that_is_unavailable_not_fatal()
    {
        var replica = await _server.StartReplicaAsync();
        _servers.Add(replica);
        var store = Track(Store(replica.Endpoint));

        var failure = await Assert.ThrowsAsync<LeaseStoreException>(() => store.CreateAsync(Record("a"), Ct));

        Assert.Equal(LeaseStoreFailure.Unavailable, failure.Reason);
        Assert.Contains("READONLY", failure.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_documented_least_privilege_acl_user_can_do_all_the_store_needs()
    {
        await _server.AddUserAsync("leader-sidecar", "s3cret", DocumentedAclRules());
        var user = _server.Endpoint with { User = "leader-sidecar" };
        var writer = Track(Store(user, "s3cret"));
        var watcher = Track(Store(user, "s3cret", syncInterval: TimeSpan.FromHours(1)));

        var created = await writer.CreateAsync(Record("a"), Ct);
        await using var watch = watcher.WatchAsync(Ct).GetAsyncEnumerator(Ct);
        Assert.Equal(created, await NextAsync(watch));
        var renewed = await writer.UpdateAsync(created, Record("a", renewedAfterSeconds: 1), Ct);
        Assert.Equal(renewed, await NextAsync(watch));

        // The same user on any other key or channel is refused.
        var elsewhere = Track(new RedisLeaseStore(new RedisServerSettings(user, "s3cret", null, null), "other:", "demo", "app", 0, TimeSpan.FromSeconds(10), TimeProvider.System, NullLogger<RedisLeaseStore>.Instance));
        Assert.Equal(LeaseStoreFailure.Forbidden, (await Assert.ThrowsAsync<LeaseStoreException>(() => elsewhere.GetAsync(Ct))).Reason);
        Assert.Equal(LeaseStoreFailure.Forbidden, (await Assert.ThrowsAsync<LeaseStoreException>(() => elsewhere.CreateAsync(Record("a"), Ct))).Reason);
    }

    [Fact]
    public async Task A_user_whose_acl_lacks_a_command_the_script_runs_is_forbidden()
    {
        await _server.AddUserAsync("no-publish", "s3cret", [.. DocumentedAclRules().Where(r => r != "+publish")]);
        var store = Track(Store(_server.Endpoint with { User = "no-publish" }, "s3cret"));

        var failure = await Assert.ThrowsAsync<LeaseStoreException>(() => store.CreateAsync(Record("a"), Ct));

        Assert.Equal(LeaseStoreFailure.Forbidden, failure.Reason);
    }

    [Fact]
    public async Task Rejected_or_missing_credentials_are_unauthorized_for_reads_writes_and_the_watch()
    {
        await _server.RequirePasswordAsync("right");

        foreach (var store in new[] { Track(Store(_server.Endpoint, "wrong")), Track(Store(_server.Endpoint)) })
        {
            await FailsAsync(LeaseStoreFailure.Unauthorized, () => store.GetAsync(Ct));
            await FailsAsync(LeaseStoreFailure.Unauthorized, () => store.CreateAsync(Record("a"), Ct));
            await FailsAsync(LeaseStoreFailure.Unauthorized, () => FirstWatchItemAsync(store));
        }

        var failure = await Assert.ThrowsAsync<LeaseStoreException>(() => Track(Store(_server.Endpoint, "wrong")).GetAsync(Ct));
        Assert.DoesNotContain("wrong", failure.Message, StringComparison.Ordinal);
        Assert.Null(await Track(Store(_server.Endpoint, "right")).GetAsync(Ct));
    }

    [Fact]
    public async Task A_key_that_is_not_a_hash_is_invalid_for_reads_writes_and_the_watch()
    {
        var store = Connect();
        var created = await store.CreateAsync(Record("a"), Ct);
        await _server.ExpectAsync("OK", "SET", Key, "garbage");

        var read = await Assert.ThrowsAsync<LeaseStoreException>(() => store.GetAsync(Ct));
        var write = await Assert.ThrowsAsync<LeaseStoreException>(() => store.UpdateAsync(created, Record("a", renewedAfterSeconds: 1), Ct));
        var watch = await Assert.ThrowsAsync<LeaseStoreException>(() => FirstWatchItemAsync(store));

        Assert.Equal(LeaseStoreFailure.Invalid, read.Reason);
        Assert.Contains("WRONGTYPE", read.Message, StringComparison.Ordinal);
        Assert.Equal(LeaseStoreFailure.Invalid, write.Reason);
        Assert.Equal(LeaseStoreFailure.Invalid, watch.Reason);
        Assert.Equal("garbage", (await _server.CliAsync("GET", Key)).Trim());
    }

    [Theory]
    [InlineData("holderIdentity", "a")]
    [InlineData("version", "1", "holderIdentity", "a")]
    [InlineData("version", "one", "uid", "u")]
    [InlineData("version", "0", "uid", "u")]
    [InlineData("version", "01", "uid", "u")]
    [InlineData("version", "1", "uid", "has space")]
    [InlineData("version", "1", "uid", "u", "leaseDurationSeconds", "15s")]
    [InlineData("version", "1", "uid", "u", "leaseTransitions", "99999999999")]
    [InlineData("version", "1", "uid", "u", "renewTime", "yesterday")]
    public async Task A_hash_that_is_not_a_record_is_invalid(params string[] fields)
    {
        await _server.CliAsync(["HSET", Key, .. fields]);

        var failure = await Assert.ThrowsAsync<LeaseStoreException>(() => Connect().GetAsync(Ct));

        Assert.Equal(LeaseStoreFailure.Invalid, failure.Reason);
        Assert.Contains($"the hash at {Key} is not a lease record", failure.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_hash_too_large_for_a_lease_is_invalid_without_being_read_and_the_next_request_works()
    {
        var store = Connect();
        await _server.CliAsync("HSET", Key, "version", "1", "uid", "u", "holderIdentity", new string('x', RespLimits.Default.MaxBulkBytes + 1));

        var failure = await Assert.ThrowsAsync<LeaseStoreException>(() => store.GetAsync(Ct));

        Assert.Equal(LeaseStoreFailure.Invalid, failure.Reason);
        Assert.Contains("too large", failure.Message, StringComparison.Ordinal);
        await _server.ExpectAsync("1", "DEL", Key);
        Assert.Null(await store.GetAsync(Ct));
    }

    [Fact]
    public async Task A_server_that_stops_answering_is_a_timeout_within_the_request_timeout_and_the_store_recovers()
    {
        var created = await Connect().CreateAsync(Record("a"), Ct);
        var store = Connect(requestTimeout: TimeSpan.FromSeconds(1));

        // Connected and warm first (on a busy machine the first request alone can take a while).
        await Poll.UntilAsync(async () => await Attempt(() => store.GetAsync(Ct)) is null, TimeSpan.FromSeconds(30), "a first answer");
        await _server.SleepAsync(5);
        var read = await Assert.ThrowsAsync<LeaseStoreException>(() => store.GetAsync(Ct));
        Assert.Equal(LeaseStoreFailure.Timeout, read.Reason);

        await Poll.UntilAsync(async () => await Attempt(() => store.GetAsync(Ct)) is null, TimeSpan.FromSeconds(30), "the store to answer again after DEBUG SLEEP");
        Assert.Equal(created, await store.GetAsync(Ct));
    }

    [Fact]
    public async Task A_watch_on_a_paused_server_fails_as_a_timeout_within_the_request_timeout()
    {
        _server.Pause();
        var store = Connect(requestTimeout: TimeSpan.FromMilliseconds(500));

        var failure = await Assert.ThrowsAsync<LeaseStoreException>(() => FirstWatchItemAsync(store));

        Assert.Equal(LeaseStoreFailure.Timeout, failure.Reason);
    }

    [Fact]
    public async Task A_watch_whose_server_goes_silent_ends_instead_of_waiting_forever()
    {
        var store = Connect(requestTimeout: TimeSpan.FromMilliseconds(500), syncInterval: TimeSpan.FromMilliseconds(200));
        await using var watch = store.WatchAsync(Ct).GetAsyncEnumerator(Ct);
        Assert.Null(await NextAsync(watch));

        _server.Pause();

        var failure = await Assert.ThrowsAsync<LeaseStoreException>(async () => await watch.MoveNextAsync());
        Assert.Equal(LeaseStoreFailure.Timeout, failure.Reason);
    }

    [Fact]
    public async Task A_watch_whose_subscription_goes_silent_ends_even_while_reads_still_answer()
    {
        // Reads answer at once; the subscription is confirmed, then never answers a PING (a
        // connection cut without a reset, a proxy that stopped forwarding).
        await using var server = new FakeRedisServer(command => command[0] switch
        {
            "HGETALL" => FakeRedisServer.Resp("*0\r\n"),
            "SUBSCRIBE" => FakeRedisServer.Resp($"*3\r\n$9\r\nsubscribe\r\n${Key.Length}\r\n{Key}\r\n:1\r\n"),
            _ => null,
        });
        var store = Track(Store(server.Endpoint, requestTimeout: TimeSpan.FromMilliseconds(500), syncInterval: TimeSpan.FromMilliseconds(100)));
        await using var watch = store.WatchAsync(Ct).GetAsyncEnumerator(Ct);
        Assert.Null(await NextAsync(watch));

        var failure = await FailsAsync(LeaseStoreFailure.Timeout, async () => await watch.MoveNextAsync());

        Assert.Contains("lease subscription: no answer", failure.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("$1073741824\r\n", LeaseStoreFailure.Invalid, "too large")]
    [InlineData("*100000000\r\n", LeaseStoreFailure.Invalid, "too large")]
    [InlineData("HTTP/1.1 400 Bad Request\r\n\r\n", LeaseStoreFailure.Unavailable, "did not answer in RESP")]
    public async Task A_hostile_or_foreign_server_is_refused_from_the_first_bytes_of_its_answer(string header, LeaseStoreFailure reason, string problem)
    {
        // The header promises far more than a lease and the bytes keep coming: none of it is buffered.
        var flood = new byte[1024 * 1024];
        Array.Fill(flood, (byte)'x');
        await using var server = new FakeRedisServer(command => command[0] == "HGETALL" ? [.. FakeRedisServer.Resp(header), .. flood] : null);
        var store = Track(Store(server.Endpoint, requestTimeout: TimeSpan.FromSeconds(5)));

        var failure = await FailsAsync(reason, () => store.GetAsync(Ct));

        Assert.Contains(problem, failure.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Over_tls_the_server_is_verified_against_the_given_ca_only()
    {
        using var certificates = TestCertificates.Create(TimeProvider.System);
        using var other = TestCertificates.Create(TimeProvider.System);
        using var dir = new TempDirectory();
        await File.WriteAllTextAsync(dir.File("ca.pem"), certificates.Authority.ExportCertificatePem(), Ct);
        await File.WriteAllTextAsync(dir.File("server.pem"), certificates.Server.ExportCertificatePem(), Ct);
        await File.WriteAllTextAsync(dir.File("server-key.pem"), certificates.Server.GetECDsaPrivateKey()!.ExportPkcs8PrivateKeyPem(), Ct);
        var tlsPort = ServerProcess.FreePort();
        var server = await StartAsync(
            "--tls-port", tlsPort.ToString(CultureInfo.InvariantCulture), "--tls-cert-file", dir.File("server.pem"), "--tls-key-file", dir.File("server-key.pem"),
            "--tls-ca-cert-file", dir.File("ca.pem"), "--tls-auth-clients", "no");
        var endpoint = new RedisEndpoint(true, "127.0.0.1", tlsPort, 0, null);

        var store = Track(Store(endpoint, trustedRoots: [certificates.Authority]));
        var created = await store.CreateAsync(Record("a"), Ct);
        Assert.Equal(created, await store.GetAsync(Ct));
        Assert.Equal("a", (await server.HashAsync(Key))["holderIdentity"]);

        var wrongCa = await Assert.ThrowsAsync<LeaseStoreException>(() => Track(Store(endpoint, trustedRoots: [other.Authority])).GetAsync(Ct));
        Assert.Equal(LeaseStoreFailure.Unavailable, wrongCa.Reason);
        Assert.Contains("TLS", wrongCa.Message, StringComparison.Ordinal);

        var plainToTls = await Assert.ThrowsAsync<LeaseStoreException>(() => Track(Store(endpoint with { Tls = false }, requestTimeout: TimeSpan.FromSeconds(2))).GetAsync(Ct));
        Assert.Contains(plainToTls.Reason, new[] { LeaseStoreFailure.Unavailable, LeaseStoreFailure.Timeout });
    }

    /// <summary>The ACL rules of <c>docs/STORES-REDIS.md</c>'s <c>ACL SETUSER</c> line, after the user name and password.</summary>
    internal static string[] DocumentedAclRules()
    {
        var root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "Sidecar.sln")))
        {
            root = Path.GetDirectoryName(root)!;
        }

        var line = File.ReadLines(Path.Combine(root, "docs", "STORES-REDIS.md")).Single(l => l.StartsWith("ACL SETUSER leader-sidecar ", StringComparison.Ordinal));
        return [.. line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(3).Where(r => r is not ("on" or "reset") && !r.StartsWith('>'))];
    }

    private static LeaseRecord Record(string holder, int transitions = 0, int renewedAfterSeconds = 0) =>
        new(holder, 15, Now, Now.AddSeconds(renewedAfterSeconds), transitions);

    private static async Task<LeaseSnapshot?> NextAsync(IAsyncEnumerator<LeaseSnapshot?> watch) =>
        await watch.MoveNextAsync() ? watch.Current : throw new TimeoutException("the watch ended");

    /// <summary>Asserts that <paramref name="action"/> fails for <paramref name="reason"/>, showing the message when it does not.</summary>
    private static async Task<LeaseStoreException> FailsAsync(LeaseStoreFailure reason, Func<Task> action)
    {
        var failure = await Assert.ThrowsAsync<LeaseStoreException>(action);
        Assert.True(failure.Reason == reason, $"expected {reason}, got {failure.Reason}: {failure.Message}");
        return failure;
    }

    private static async Task<Exception?> Attempt(Func<Task> action)
    {
        try
        {
            await action();
            return null;
        }
        catch (LeaseStoreException e)
        {
            return e;
        }
    }

    private async Task<LeaseSnapshot?> FirstWatchItemAsync(ILeaseStore store)
    {
        await using var watch = store.WatchAsync(Ct).GetAsyncEnumerator(Ct);
        return await NextAsync(watch);
    }

    private async Task<RedisServer> StartAsync(params string[] extraArgs)
    {
        var server = await RedisServer.StartAsync(extraArgs);
        _servers.Add(server);
        return server;
    }

    private RedisLeaseStore Connect(int minReplicas = 0, TimeSpan? requestTimeout = null, TimeSpan? syncInterval = null) =>
        Track(Store(_server.Endpoint, minReplicas: minReplicas, requestTimeout: requestTimeout, syncInterval: syncInterval));

    private RedisLeaseStore Track(RedisLeaseStore store)
    {
        _stores.Add(store);
        return store;
    }
}
