using System.Globalization;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using LeaderSidecar.Election;

namespace LeaderSidecar.Stores.Redis;

/// <summary>
/// The lease as one Redis hash at <c>PREFIX NAMESPACE:NAME</c> (<see cref="RedisLeaseHash"/>).
/// Create and compare-and-swap are each one Lua script, atomic on the server, that also
/// <c>PUBLISH</c>es the record it wrote on a channel of the key's name; followers subscribe to it
/// and take each message as the new state, so a subscribed follower sends Redis nothing while the
/// leader renews.
/// </summary>
/// <remarks>
/// <para>
/// What Redis guarantees: one primary runs commands one at a time, so a script's checks and writes
/// are atomic, a read after an acknowledged write sees it, and one connection's messages arrive in
/// the order they were published. Pub/sub is at-most-once: a message sent while a follower's
/// subscription is down is lost. That is why a watch subscribes first and then reads the hash, reads
/// it again whenever a message is not a plain successor of what it holds (a new uid, an earlier
/// daemon's bare version), and when no record came for two retry periods (a leader renews every
/// one) reads it (a hand <c>DEL</c> or <c>HSET</c> publishes nothing) and asks the subscription for
/// a sign of life (<c>PING</c>); it ends the moment its connection fails or stays silent: the
/// elector then polls until a new subscription is up.
/// </para>
/// <para>
/// What Redis can lose, and this store cannot hide: replication is asynchronous. A primary
/// acknowledges a write before any replica has it, so a failover can forget an acquisition and,
/// with it, its term: the next acquisition writes the same (uid, term) again for another holder.
/// Terms are then no safe fencing token. <c>--redis-min-replicas N</c> makes every write wait
/// (<c>WAIT</c>) for N replicas within the request timeout, and a write fewer acknowledged is
/// reported as failed, so no claim is started or extended on it; but WAIT cannot undo the write,
/// and a failover may still promote a replica that missed it. Without replicas, a server whose
/// data is not fsynced (<c>appendfsync always</c>) forgets recent writes when its host crashes.
/// The election core compares content as well as versions and every write carries a new nonce,
/// so a rewound lease is still seen to change.
/// </para>
/// <para>
/// Every reply is bounded (<see cref="RespLimits"/>): a hash larger than a lease record, or a key
/// that is not a hash, is an invalid lease, never buffered whole.
/// </para>
/// </remarks>
internal sealed partial class RedisLeaseStore : ILeaseStore, IDisposable
{
    /// <summary>
    /// How long a watch goes without a new record before it reads the hash (hand edits publish
    /// nothing) and pings its subscription (a vanished server sends no reset), unless the daemon
    /// says otherwise (<see cref="SyncIntervalFor"/>): two of the default retry periods.
    /// </summary>
    public static readonly TimeSpan DefaultSyncInterval = SyncIntervalFor(TimeSpan.FromSeconds(2));

    private readonly RedisClient _client;
    private readonly string _channel;
    private readonly int _minReplicas;
    private readonly TimeSpan _requestTimeout;
    private readonly TimeSpan _syncInterval;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private long _scriptLoads;
    private long _unconfirmedWrites;

    /// <param name="settings">The server and how to log in.</param>
    /// <param name="prefix">The key prefix (<c>leader-sidecar:</c>).</param>
    /// <param name="namespace">The lease's namespace.</param>
    /// <param name="name">The lease's name.</param>
    /// <param name="minReplicas">Replicas that must acknowledge each write; 0: none.</param>
    /// <param name="requestTimeout">The longest any request (with its <c>WAIT</c>) may take.</param>
    /// <param name="time">The clock of timeouts and of the watch's re-reads.</param>
    /// <param name="logger">Where the store's own events go.</param>
    /// <param name="syncInterval">How long a watch goes without a new record before it reads the hash and pings its subscription; <see cref="DefaultSyncInterval"/> when not given.</param>
    public RedisLeaseStore(
        RedisServerSettings settings,
        string prefix,
        string @namespace,
        string name,
        int minReplicas,
        TimeSpan requestTimeout,
        TimeProvider time,
        ILogger<RedisLeaseStore> logger,
        TimeSpan? syncInterval = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(requestTimeout, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfNegative(minReplicas);
        _client = new RedisClient(settings);

        // Namespaces and names are DNS labels: no ':' in either, so the key is unambiguous.
        Key = $"{prefix}{@namespace}:{name}";
        _channel = Key;
        _minReplicas = minReplicas;
        _requestTimeout = requestTimeout;
        _syncInterval = syncInterval ?? DefaultSyncInterval;
        _time = time;
        _logger = logger;
        Description = $"redis key {Key} at {settings.Endpoint}";
    }

    public string Description { get; }

    /// <summary>The key (and the channel) of the lease.</summary>
    public string Key { get; }

    /// <summary>How many times a script had to be loaded (first use, a restart, <c>SCRIPT FLUSH</c>).</summary>
    internal long ScriptLoads => Interlocked.Read(ref _scriptLoads);

    /// <summary>How many writes landed on the primary but were not acknowledged by enough replicas.</summary>
    internal long UnconfirmedWrites => Interlocked.Read(ref _unconfirmedWrites);

    public Task<LeaseSnapshot?> GetAsync(CancellationToken cancellationToken) =>
        WithinRequestTimeoutAsync("lease read", (connection, token) => ReadAsync(connection, token), cancellationToken);

    public Task<LeaseSnapshot> CreateAsync(LeaseRecord record, CancellationToken cancellationToken)
    {
        const string what = "lease create";
        var uid = Guid.NewGuid().ToString();
        var nonce = NewNonce();
        return WithinRequestTimeoutAsync(what, async (connection, token) =>
        {
            var started = _time.GetTimestamp();
            var reply = await RunAsync(RedisLeaseHash.Create, connection, [_channel, uid, nonce, .. RedisLeaseHash.Fields(record)], what, token);
            if (reply.Kind == RespKind.Integer && reply.Integer == 0)
            {
                throw new LeaseStoreException(LeaseStoreFailure.Conflict, $"{what}: {Key} already exists");
            }

            var version = Version(what, reply);
            await ConfirmAsync(what, connection, started, token);
            return RedisLeaseHash.Written(record, version, uid, nonce);
        }, cancellationToken);
    }

    public async Task<LeaseSnapshot> UpdateAsync(LeaseSnapshot current, LeaseRecord record, CancellationToken cancellationToken)
    {
        const string what = "lease update";
        if (RedisLeaseHash.SplitVersion(current.Version) is not { } expected)
        {
            // Not a version this store handed out: nothing can be at that version.
            throw new LeaseStoreException(LeaseStoreFailure.Conflict, $"{what}: version \"{Kubernetes.KubernetesLeaseStore.Shorten(current.Version)}\" is not a Redis lease version");
        }

        var nonce = NewNonce();
        return await WithinRequestTimeoutAsync(what, async (connection, token) =>
        {
            var started = _time.GetTimestamp();
            var reply = await RunAsync(RedisLeaseHash.Update, connection, [_channel, expected.Fingerprint, nonce, .. RedisLeaseHash.Fields(record)], what, token);
            if (reply.Kind == RespKind.Integer)
            {
                throw reply.Integer == -1
                    ? new LeaseStoreException(LeaseStoreFailure.NotFound, $"{what}: {Key} does not exist")
                    : new LeaseStoreException(LeaseStoreFailure.Conflict, $"{what}: {Key} changed after version {expected.Counter}");
            }

            var version = Version(what, reply);
            await ConfirmAsync(what, connection, started, token);
            return RedisLeaseHash.Written(record, version, current.Uid, nonce);
        }, cancellationToken);
    }

    public async IAsyncEnumerable<LeaseSnapshot?> WatchAsync([EnumeratorCancellation] CancellationToken cancellationToken)
    {
        // Subscribe first, then read: a write after the read is announced on the subscription, so
        // nothing is missed; the first item is the state the watch continues from.
        await using var subscription = await RequestTimeout.WithinAsync("lease subscribe", _requestTimeout, _time, async token =>
        {
            try
            {
                return await RedisSubscription.OpenAsync(_client.Settings, _channel, _time, token);
            }
            catch (Exception e) when (RedisFailures.FromException("lease subscribe", e, token) is { } failure)
            {
                throw failure;
            }
        }, cancellationToken);

        var last = await GetAsync(cancellationToken);
        var syncedAt = _time.GetTimestamp();
        yield return last;

        while (true)
        {
            var message = await subscription.WaitAsync(NextWake(subscription, syncedAt), cancellationToken);
            if (message is null && subscription.SilentFor > _syncInterval + _requestTimeout)
            {
                // Pinged and still silent: a server that vanished sends no reset.
                throw new LeaseStoreException(LeaseStoreFailure.Timeout, $"lease subscription: no answer from Redis for {subscription.SilentFor.TotalSeconds:0.#} s");
            }

            LeaseSnapshot? now;
            if (message is { } content && RedisLeaseHash.Announced(Key, content) is { } announced && last is not null && announced.Uid == last.Uid)
            {
                // The record a script wrote. Messages come in the order of the writes, but one
                // published before the last read can arrive after it: an older counter is skipped.
                if (Counter(announced) <= Counter(last))
                {
                    continue;
                }

                now = announced;
            }
            else if (message is not null || _time.GetElapsedTime(syncedAt) >= _syncInterval)
            {
                // A message that does not follow from what this watch holds (a new uid, a record
                // where there was none, an earlier version's bare counter), or no record for a
                // sync interval, in which a hand edit (it publishes nothing) may have come: the
                // hash itself decides. Quiet that long, the subscription is asked for a sign of
                // life too (a server that vanished sends no reset).
                if (message is null)
                {
                    await subscription.PingAsync(cancellationToken);
                }

                now = await GetAsync(cancellationToken);
            }
            else
            {
                continue;
            }

            syncedAt = _time.GetTimestamp();
            if (now?.Version != last?.Version || now?.Uid != last?.Uid || now?.Record != last?.Record)
            {
                last = now;
                yield return now;
            }
        }
    }

    public void Dispose() => _client.Dispose();

    private async Task<LeaseSnapshot?> ReadAsync(RedisConnection connection, CancellationToken cancellationToken)
    {
        var reply = await connection.CallAsync(["HGETALL", Key], cancellationToken);
        return reply.IsError ? throw Failure("lease read", reply) : RedisLeaseHash.Parse(Key, reply);
    }

    private async Task<RespValue> RunAsync(RedisScript script, RedisConnection connection, IReadOnlyList<string> arguments, string what, CancellationToken cancellationToken)
    {
        var (reply, loaded) = await script.RunAsync(connection, [Key], arguments, cancellationToken);
        if (loaded)
        {
            Interlocked.Increment(ref _scriptLoads);
            LogScriptLoaded(_logger, script.Name, script.Sha);
        }

        return reply.IsError ? throw Failure(what, reply) : reply;
    }

    /// <summary>
    /// With <c>--redis-min-replicas</c>: waits (<c>WAIT</c>) for that many replicas to acknowledge
    /// this connection's writes, within what is left of the request timeout. Fewer is a failure:
    /// the write stands on the primary (WAIT undoes nothing), but it is not confirmed, so the
    /// elector neither starts nor extends a claim on it.
    /// </summary>
    private async Task ConfirmAsync(string what, RedisConnection connection, long started, CancellationToken cancellationToken)
    {
        if (_minReplicas == 0)
        {
            return;
        }

        // What is left of the request timeout, less a margin for WAIT's own answer to arrive in
        // time; never 0, which would wait forever.
        var margin = TimeSpan.FromTicks(Math.Max(TimeSpan.FromMilliseconds(50).Ticks, _requestTimeout.Ticks / 10));
        var left = (long)Math.Max(1, (_requestTimeout - margin - _time.GetElapsedTime(started)).TotalMilliseconds);
        var reply = await connection.CallAsync(
            ["WAIT", _minReplicas.ToString(CultureInfo.InvariantCulture), left.ToString(CultureInfo.InvariantCulture)], cancellationToken);
        if (reply.IsError)
        {
            throw Failure($"{what} (WAIT)", reply);
        }

        if (reply.Kind != RespKind.Integer || reply.Integer < _minReplicas)
        {
            var acknowledged = reply.Kind == RespKind.Integer ? reply.Integer : 0;
            Interlocked.Increment(ref _unconfirmedWrites);
            LogNotConfirmed(_logger, what, acknowledged, _minReplicas, left);
            throw new LeaseStoreException(
                LeaseStoreFailure.Unavailable,
                $"{what}: written on the primary but acknowledged by {acknowledged} of the {_minReplicas} replicas --redis-min-replicas requires within {left} ms; not confirmed, so not relied on");
        }
    }

    private LeaseStoreException Failure(string what, RespValue error) =>
        error.ErrorCode == "WRONGTYPE"
            ? new LeaseStoreException(LeaseStoreFailure.Invalid, $"{what}: {Key} is not a hash, so not a lease record (WRONGTYPE); delete it to let the lease start again")
            : RedisFailures.FromReply(what, error);

    /// <summary>The version a script returned: a counter this store can compare again.</summary>
    private static string Version(string what, RespValue reply) =>
        reply.Kind is RespKind.BulkString or RespKind.SimpleString && RedisLeaseHash.IsCounter(reply.Text)
            ? reply.Text
            : throw new LeaseStoreException(LeaseStoreFailure.ServerError, $"{what}: the script answered {Kubernetes.KubernetesLeaseStore.Shorten(reply.ToString())}, not a version");

    /// <summary>How long a watch may wait for a message before it must read the hash and ping its subscription, or give up on the subscription.</summary>
    private TimeSpan NextWake(RedisSubscription subscription, long syncedAt)
    {
        var untilSync = _syncInterval - _time.GetElapsedTime(syncedAt);
        var untilSilenceEnds = _syncInterval + _requestTimeout - subscription.SilentFor;
        return TimeSpan.FromTicks(Math.Max(TimeSpan.FromMilliseconds(10).Ticks, Math.Min(untilSync.Ticks, untilSilenceEnds.Ticks)));
    }

    /// <summary>
    /// Two retry periods: a leader renews (and publishes) once a retry period, up to 20 % later with
    /// its jitter, so a watch that heard nothing that long has a reason to look.
    /// </summary>
    public static TimeSpan SyncIntervalFor(TimeSpan retryPeriod) => retryPeriod * 2;

    /// <summary>The write counter of a version this store handed out (or read); 0 for anything else.</summary>
    private static long Counter(LeaseSnapshot snapshot) =>
        RedisLeaseHash.SplitVersion(snapshot.Version) is { } version ? long.Parse(version.Counter, CultureInfo.InvariantCulture) : 0;

    private static string NewNonce() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));

    /// <summary>Runs one request on the command connection within the request timeout; running out of it is a <see cref="LeaseStoreFailure.Timeout"/>.</summary>
    private Task<T> WithinRequestTimeoutAsync<T>(string what, Func<RedisConnection, CancellationToken, Task<T>> request, CancellationToken cancellationToken) =>
        RequestTimeout.WithinAsync(what, _requestTimeout, _time, token => _client.RunAsync(what, request, token), cancellationToken);

    [LoggerMessage(EventId = 900, EventName = "RedisWriteNotConfirmed", Level = LogLevel.Warning,
        Message = "Redis {What} was written on the primary but acknowledged by {Acknowledged} of {Required} replicas within {TimeoutMs} ms: not confirmed, so no claim rests on it")]
    private static partial void LogNotConfirmed(ILogger logger, string what, long acknowledged, int required, long timeoutMs);

    [LoggerMessage(EventId = 901, EventName = "RedisScriptLoaded", Level = LogLevel.Information,
        Message = "Redis did not have the lease {Script} script (first use, a restart or SCRIPT FLUSH); loaded it as {Sha}")]
    private static partial void LogScriptLoaded(ILogger logger, string script, string sha);
}
