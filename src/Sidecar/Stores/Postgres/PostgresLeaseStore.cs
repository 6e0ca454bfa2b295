using System.Globalization;
using System.Runtime.CompilerServices;
using LeaderSidecar.Election;
using Npgsql;
using NpgsqlTypes;

namespace LeaderSidecar.Stores.Postgres;

/// <summary>
/// The lease as one row of a PostgreSQL table, keyed by (namespace, name), the record's fields as
/// plain columns <c>psql</c> shows. Create is <c>INSERT … ON CONFLICT DO NOTHING</c>, update an
/// <c>UPDATE … WHERE version = $v AND uid = $u</c>; no row back is a conflict. Followers
/// <c>LISTEN</c> on the table's channel and re-read the row on each notification.
/// </summary>
/// <remarks>
/// <para>
/// What PostgreSQL guarantees: each statement is atomic, and a row lock serializes concurrent
/// updates of one row, so of two writers over one version exactly one matches its
/// <c>WHERE version = $v</c>; a committed write is durable on the primary (and on synchronous
/// standbys, where configured). The table's triggers (<see cref="PostgresSchema"/>) give every
/// write, by hand too, a new version and a notification sent at commit. A listener registered
/// before a read hears of every write that read did not see.
/// </para>
/// <para>
/// What it can lose, and this store cannot hide: with asynchronous replication a failover can
/// promote a standby that missed the last writes, so the row goes back to an older version (the
/// core compares content and uid as well as versions, and renewTime changes with every renew, so
/// the rewound row is still seen to change); a restored backup does the same. Notifications are
/// not durable: the watch re-reads the row when a notification arrives and when the connection
/// has been quiet for a request timeout, so a lost notification delays a follower, never misleads
/// it. A pooler in transaction mode (PgBouncer) silently breaks <c>LISTEN</c>: each watch first
/// sends itself a probe notification, and one that never arrives ends the watch, so the core polls.
/// </para>
/// <para>
/// Every value read is bounded: the holder is fetched only up to
/// <see cref="PostgresSchema.MaxHolderCharacters"/>; a longer one is an invalid row.
/// </para>
/// </remarks>
internal sealed partial class PostgresLeaseStore : ILeaseStore, IDisposable, IAsyncDisposable
{
    private const string ProbePrefix = "probe ";

    private readonly NpgsqlDataSource _requests;
    private readonly NpgsqlDataSource _listeners;
    private readonly PostgresTableName _table;
    private readonly bool _createTable;
    private readonly string _namespace;
    private readonly string _name;
    private readonly string _key;
    private readonly string _select;
    private readonly string _insert;
    private readonly string _update;
    private readonly TimeSpan _requestTimeout;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly SemaphoreSlim _setupGate = new(1, 1);
    private volatile bool _ready;
    private int _listenSilent;

    /// <param name="password">The password from a file or the environment; one in <paramref name="target"/> wins.</param>
    /// <param name="requestTimeout">Bounds the watch's steps (open, probe, re-read) and its quiet time before a re-read.</param>
    public PostgresLeaseStore(
        PostgresTarget target,
        string? password,
        PostgresTableName table,
        bool createTable,
        string @namespace,
        string name,
        TimeSpan requestTimeout,
        TimeProvider time,
        ILogger<PostgresLeaseStore> logger)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(requestTimeout, TimeSpan.Zero);
        _requests = Build(target, password, pooling: true);
        // The listening connection is its own, never pooled: each watch opens a new one through the
        // connection string (so after a failover it reaches the new primary), and closing it ends it.
        _listeners = Build(target, password, pooling: false);
        _table = table;
        _createTable = createTable;
        _namespace = @namespace;
        _name = name;
        _key = $"{@namespace}/{name}";
        _select = PostgresSchema.Select(table);
        _insert = PostgresSchema.Insert(table);
        _update = PostgresSchema.Update(table);
        _requestTimeout = requestTimeout;
        _time = time;
        _logger = logger;
        Channel = table.Channel;
        Description = $"postgres row {_key} in {table} at {target.Address}";
    }

    public string Description { get; }

    /// <summary>The channel the watch listens on; tests point it elsewhere to play a pooler that drops notifications.</summary>
    internal string Channel { get; init; }

    public async Task<LeaseSnapshot?> GetAsync(CancellationToken cancellationToken)
    {
        await EnsureTableAsync(cancellationToken);
        return await RequestAsync("lease read", async token =>
        {
            await using var command = _requests.CreateCommand(_select);
            AddKey(command);
            return await ReadSingleAsync(command, token);
        }, cancellationToken);
    }

    public async Task<LeaseSnapshot> CreateAsync(LeaseRecord record, CancellationToken cancellationToken)
    {
        await EnsureTableAsync(cancellationToken);
        return await RequestAsync("lease create", async token =>
        {
            await using var command = _requests.CreateCommand(_insert);
            AddKey(command);
            AddRecord(command, record);
            return await ReadSingleAsync(command, token)
                ?? throw new LeaseStoreException(LeaseStoreFailure.Conflict, "lease create: the row already exists");
        }, cancellationToken);
    }

    public async Task<LeaseSnapshot> UpdateAsync(LeaseSnapshot current, LeaseRecord record, CancellationToken cancellationToken)
    {
        if (!long.TryParse(current.Version, NumberStyles.None, CultureInfo.InvariantCulture, out var version) || !Guid.TryParse(current.Uid, out var uid))
        {
            // Not a version this store handed out: nothing can be at it.
            throw new LeaseStoreException(LeaseStoreFailure.Conflict, $"lease update: version \"{Shorten(current.Version)}\" of uid \"{Shorten(current.Uid)}\" is not one of this table's");
        }

        await EnsureTableAsync(cancellationToken);
        return await RequestAsync("lease update", async token =>
        {
            await using var command = _requests.CreateCommand(_update);
            AddKey(command);
            AddRecord(command, record);
            command.Parameters.Add(new NpgsqlParameter { Value = version, NpgsqlDbType = NpgsqlDbType.Bigint });
            command.Parameters.Add(new NpgsqlParameter { Value = uid.ToString(), NpgsqlDbType = NpgsqlDbType.Text });
            return await ReadSingleAsync(command, token)
                ?? throw new LeaseStoreException(LeaseStoreFailure.Conflict, $"lease update: the row is no longer at version {version} of uid {uid} (written or deleted since)");
        }, cancellationToken);
    }

    public async IAsyncEnumerable<LeaseSnapshot?> WatchAsync([EnumeratorCancellation] CancellationToken cancellationToken)
    {
        // Nothing is yielded until the listener is proven to hear notifications: until then the
        // elector polls. Every step below ends within the request timeout.
        var listener = await OpenListenerAsync(cancellationToken);
        await using (listener)
        {
            var last = await WithinRequestTimeoutAsync("lease watch read", token => listener.ReadAsync(this, token), cancellationToken);
            yield return last;

            while (true)
            {
                if (!listener.TakeChanged())
                {
                    // Quiet for a request timeout: read anyway. That proves the connection still
                    // answers (a vanished server would otherwise leave the watch silent forever)
                    // and catches a notification that was lost.
                    var heard = await RunAsync("lease watch", token => listener.Connection.WaitAsync(_requestTimeout, token), cancellationToken);
                    if (heard && !listener.TakeChanged())
                    {
                        continue;
                    }
                }

                var lease = await WithinRequestTimeoutAsync("lease watch read", token => listener.ReadAsync(this, token), cancellationToken);
                if (lease != last)
                {
                    last = lease;
                    yield return lease;
                }
            }
        }
    }

    public void Dispose()
    {
        _requests.Dispose();
        _listeners.Dispose();
        _setupGate.Dispose();
    }

    public async ValueTask DisposeAsync()
    {
        await _requests.DisposeAsync();
        await _listeners.DisposeAsync();
        _setupGate.Dispose();
    }

    /// <summary>
    /// Opens a listening connection, <c>LISTEN</c>s, and checks that a probe notification sent from
    /// another connection comes back: through a pooler in transaction mode it never does.
    /// </summary>
    private async Task<Listener> OpenListenerAsync(CancellationToken cancellationToken)
    {
        var listener = new Listener(_key, ProbePrefix + Guid.NewGuid().ToString("N"), Channel);
        try
        {
            await WithinRequestTimeoutAsync("lease watch", async timeout =>
            {
                await EnsureTableAsync(timeout);
                return await RunAsync("lease watch", async token =>
                {
                    await listener.OpenAsync(_listeners, token);
                    await using var notify = _requests.CreateCommand("SELECT pg_notify($1, $2)");
                    notify.Parameters.Add(new NpgsqlParameter { Value = _table.Channel, NpgsqlDbType = NpgsqlDbType.Text });
                    notify.Parameters.Add(new NpgsqlParameter { Value = listener.Probe, NpgsqlDbType = NpgsqlDbType.Text });
                    await notify.ExecuteNonQueryAsync(token);
                    return true;
                }, timeout);
            }, cancellationToken);

            await AwaitProbeAsync(listener, cancellationToken);
            return listener;
        }
        catch
        {
            await listener.DisposeAsync();
            throw;
        }
    }

    /// <summary>Waits up to a request timeout for the probe; one that never comes ends the watch, so the core polls.</summary>
    private async Task AwaitProbeAsync(Listener listener, CancellationToken cancellationToken)
    {
        var started = _time.GetTimestamp();
        while (!listener.ProbeHeard)
        {
            var left = _requestTimeout - _time.GetElapsedTime(started);
            if (left > TimeSpan.Zero && await RunAsync("lease watch", token => listener.Connection.WaitAsync(left, token), cancellationToken))
            {
                continue;
            }

            if (listener.ProbeHeard)
            {
                break;
            }

            if (Interlocked.Exchange(ref _listenSilent, 1) == 0)
            {
                LogListenSilent(_logger, Channel, _requestTimeout.TotalMilliseconds);
            }

            throw new LeaseStoreException(
                LeaseStoreFailure.Unavailable,
                $"lease watch: LISTEN {Channel} did not hear its own probe notification (a pooler in transaction mode, such as PgBouncer, drops them): polling instead");
        }

        if (Interlocked.Exchange(ref _listenSilent, 0) == 1)
        {
            LogListenWorks(_logger, Channel);
        }
    }

    /// <summary>
    /// Makes sure the table and its triggers exist before the first request: creates them when
    /// missing and allowed, else fails as <see cref="LeaseStoreFailure.Forbidden"/> (a start-up error).
    /// </summary>
    private async Task EnsureTableAsync(CancellationToken cancellationToken)
    {
        if (_ready)
        {
            return;
        }

        await _setupGate.WaitAsync(cancellationToken);
        try
        {
            if (_ready)
            {
                return;
            }

            var (exists, triggers) = await RequestAsync("lease table check", async token =>
            {
                await using var check = _requests.CreateCommand(PostgresSchema.Check);
                check.Parameters.Add(new NpgsqlParameter { Value = _table.Sql, NpgsqlDbType = NpgsqlDbType.Text });
                await using var reader = await check.ExecuteReaderAsync(token);
                await reader.ReadAsync(token);
                return (reader.GetBoolean(0), reader.GetInt32(1));
            }, cancellationToken);

            if (!exists || triggers < 2)
            {
                var missing = exists ? "has no leader-sidecar triggers (leader_sidecar_version, leader_sidecar_notify)" : "does not exist";
                if (!_createTable)
                {
                    throw new LeaseStoreException(
                        LeaseStoreFailure.Forbidden,
                        $"table {_table} {missing}, and --postgres-create-table=false: create it with the SQL in deploy/postgres/setup.sql (docs/STORES-POSTGRES.md)");
                }

                await CreateTableAsync(missing, cancellationToken);
            }

            _ready = true;
        }
        finally
        {
            _setupGate.Release();
        }
    }

    private async Task CreateTableAsync(string missing, CancellationToken cancellationToken)
    {
        try
        {
            await RunAsync("lease table create", async token =>
            {
                await using var connection = await _requests.OpenConnectionAsync(token);
                await using var transaction = await connection.BeginTransactionAsync(token);
                await using (var lockCommand = new NpgsqlCommand(PostgresSchema.DefinitionLock, connection, transaction))
                {
                    lockCommand.Parameters.Add(new NpgsqlParameter { Value = _table.Sql, NpgsqlDbType = NpgsqlDbType.Text });
                    await lockCommand.ExecuteNonQueryAsync(token);
                }

                await using (var define = new NpgsqlCommand(PostgresSchema.Definition(_table), connection, transaction))
                {
                    await define.ExecuteNonQueryAsync(token);
                }

                await transaction.CommitAsync(token);
                return true;
            }, cancellationToken);
        }
        catch (LeaseStoreException e) when (e.Reason == LeaseStoreFailure.Forbidden)
        {
            throw new LeaseStoreException(
                LeaseStoreFailure.Forbidden,
                $"table {_table} {missing}, and this role may not create it ({e.Message}): give it CREATE on the schema, or create the table with deploy/postgres/setup.sql and pass --postgres-create-table=false",
                e);
        }

        LogTableCreated(_logger, _table.ToString());
    }

    /// <summary>The one row a statement returns, or null when it returned none.</summary>
    private async Task<LeaseSnapshot?> ReadSingleAsync(NpgsqlCommand command, CancellationToken cancellationToken)
    {
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? Snapshot(reader) : null;
    }

    private void AddKey(NpgsqlCommand command)
    {
        command.Parameters.Add(new NpgsqlParameter { Value = _namespace, NpgsqlDbType = NpgsqlDbType.Text });
        command.Parameters.Add(new NpgsqlParameter { Value = _name, NpgsqlDbType = NpgsqlDbType.Text });
    }

    private static void AddRecord(NpgsqlCommand command, LeaseRecord record)
    {
        command.Parameters.Add(new NpgsqlParameter { Value = record.HolderIdentity, NpgsqlDbType = NpgsqlDbType.Text });
        command.Parameters.Add(new NpgsqlParameter { Value = record.LeaseDurationSeconds, NpgsqlDbType = NpgsqlDbType.Integer });
        command.Parameters.Add(new NpgsqlParameter { Value = Time(record.AcquireTime), NpgsqlDbType = NpgsqlDbType.TimestampTz });
        command.Parameters.Add(new NpgsqlParameter { Value = Time(record.RenewTime), NpgsqlDbType = NpgsqlDbType.TimestampTz });
        command.Parameters.Add(new NpgsqlParameter { Value = record.LeaseTransitions, NpgsqlDbType = NpgsqlDbType.Integer });
    }

    // timestamptz keeps microseconds, as MicroTime does; the core writes nothing finer.
    private static object Time(DateTimeOffset? time) => time is { } t ? t.UtcDateTime : DBNull.Value;

    /// <summary>
    /// The row at the reader as a snapshot. A row no writer of ours could have left (a holder past
    /// the read bound, a negative term, a value of the wrong type) is <see cref="LeaseStoreFailure.Invalid"/>.
    /// </summary>
    private LeaseSnapshot Snapshot(NpgsqlDataReader reader)
    {
        try
        {
            if (!reader.IsDBNull(1) && reader.GetInt32(1) > PostgresSchema.MaxHolderCharacters)
            {
                throw Invalid($"holder_identity is {reader.GetInt32(1)} characters, over the {PostgresSchema.MaxHolderCharacters} a lease record may have");
            }

            var transitions = reader.IsDBNull(5) ? 0 : reader.GetInt32(5);
            if (transitions < 0)
            {
                throw Invalid($"lease_transitions {transitions} is negative, and a term never is");
            }

            var record = new LeaseRecord(
                reader.IsDBNull(0) ? "" : reader.GetString(0),
                reader.IsDBNull(2) ? 0 : reader.GetInt32(2),
                ReadTime(reader, 3),
                ReadTime(reader, 4),
                transitions);
            return new LeaseSnapshot(record, reader.GetInt64(6).ToString(CultureInfo.InvariantCulture), reader.GetString(7));
        }
        catch (Exception e) when (e is InvalidCastException or FormatException or OverflowException or ArgumentOutOfRangeException)
        {
            throw Invalid($"a column has a value or type the record cannot hold ({Shorten(e.Message)})", e);
        }
    }

    private static DateTimeOffset? ReadTime(NpgsqlDataReader reader, int ordinal) =>
        reader.IsDBNull(ordinal) ? null : new DateTimeOffset(DateTime.SpecifyKind(reader.GetFieldValue<DateTime>(ordinal), DateTimeKind.Utc));

    private LeaseStoreException Invalid(string why, Exception? inner = null) =>
        new(LeaseStoreFailure.Invalid, $"row {_key} in {_table} is not a lease record: {why}", inner);

    /// <summary>
    /// Runs one request on a pooled connection. One that fails as unavailable is sent once more,
    /// at once: after a server restart or a failover every idle pooled connection is dead, and the
    /// failure cleared the pool, so the second try opens a new connection. (A write that had been
    /// applied before its connection broke then fails its compare-and-swap; the core tells its own
    /// landed write from another's.)
    /// </summary>
    private async Task<T> RequestAsync<T>(string what, Func<CancellationToken, Task<T>> call, CancellationToken cancellationToken)
    {
        try
        {
            return await RunAsync(what, call, cancellationToken);
        }
        catch (LeaseStoreException e) when (e.Reason == LeaseStoreFailure.Unavailable)
        {
            return await RunAsync(what, call, cancellationToken);
        }
    }

    /// <summary>
    /// Runs one Npgsql call, turning its failures into <see cref="LeaseStoreException"/>. When
    /// <paramref name="cancellationToken"/> fires, the call is abandoned at once: Npgsql cancels a
    /// running statement by opening a connection for PostgreSQL's cancel request, which a server
    /// that stopped answering can hold up, so that happens in the background.
    /// </summary>
    private async Task<T> RunAsync<T>(string what, Func<CancellationToken, Task<T>> call, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var inner = new CancellationTokenSource();
        Task<T> task;
        try
        {
            task = call(inner.Token);
        }
        catch (Exception e) when (Failure(what, e) is { } failure)
        {
            throw failure;
        }

        try
        {
            using (QuietCancel.Forward(inner, cancellationToken))
            {
                return await task.WaitAsync(cancellationToken);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Observe the abandoned call's end, whatever it is.
            _ = task.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            throw;
        }
        catch (Exception e) when (Failure(what, e) is { } failure)
        {
            throw failure;
        }
    }

    /// <summary>Maps an Npgsql failure to a reason; null lets it through (cancellation, our own failures).</summary>
    private LeaseStoreException? Failure(string what, Exception e)
    {
        var failure = e switch
        {
            LeaseStoreException or OperationCanceledException => null,
            PostgresException pg => FromSqlState(what, pg),
            NpgsqlException { InnerException: TimeoutException } => new LeaseStoreException(LeaseStoreFailure.Timeout, $"{what}: PostgreSQL did not answer in time: {Shorten(e.Message)}", e),
            // Npgsql's own words when the server asks for a password and none was given.
            NpgsqlException when e.InnerException is null && e.Message.Contains("password", StringComparison.OrdinalIgnoreCase) =>
                new LeaseStoreException(LeaseStoreFailure.Unauthorized, $"{what}: {Shorten(e.Message)}", e),
            NpgsqlException or IOException or System.Net.Sockets.SocketException => new LeaseStoreException(LeaseStoreFailure.Unavailable, $"{what}: PostgreSQL unreachable: {Shorten(Innermost(e).Message)}", e),
            TimeoutException => new LeaseStoreException(LeaseStoreFailure.Timeout, $"{what}: PostgreSQL did not answer in time", e),
            InvalidCastException or FormatException or OverflowException => new LeaseStoreException(LeaseStoreFailure.Invalid, $"{what}: {Shorten(e.Message)}", e),
            _ => new LeaseStoreException(LeaseStoreFailure.Unavailable, $"{what}: {e.GetType().Name}: {Shorten(e.Message)}", e),
        };

        if (failure?.Reason == LeaseStoreFailure.Unavailable)
        {
            // Idle pooled connections to a server that went away would fail the next requests too.
            _requests.Clear();
        }

        return failure;
    }

    /// <summary>PostgreSQL's error classes (SQLSTATE) as failure reasons.</summary>
    private LeaseStoreException FromSqlState(string what, PostgresException e)
    {
        var state = e.SqlState;
        var reason = state switch
        {
            // invalid_password; invalid_authorization_specification (no such role, no pg_hba entry).
            "28P01" or "28000" => LeaseStoreFailure.Unauthorized,
            // insufficient_privilege; and what can never work without an administrator: no such
            // database, schema or table.
            "42501" or "3D000" or "3F000" or "42P01" => LeaseStoreFailure.Forbidden,
            "57014" => LeaseStoreFailure.Timeout,
            "53300" => LeaseStoreFailure.Throttled,
            // admin or crash shutdown, starting up; a read-only standby (not the primary).
            "57P01" or "57P02" or "57P03" or "25006" => LeaseStoreFailure.Unavailable,
            _ when state.StartsWith("08", StringComparison.Ordinal) => LeaseStoreFailure.Unavailable,
            _ when state.StartsWith("22", StringComparison.Ordinal) || state.StartsWith("23", StringComparison.Ordinal) || state.StartsWith("42", StringComparison.Ordinal) => LeaseStoreFailure.Invalid,
            _ => LeaseStoreFailure.ServerError,
        };

        if (state == "42P01")
        {
            // The table was dropped: the next request sets it up again (or says it may not).
            _ready = false;
        }

        return new LeaseStoreException(reason, $"{what}: PostgreSQL {state}: {Shorten(e.MessageText)}", e);
    }

    private static Exception Innermost(Exception e)
    {
        while (e.InnerException is { } inner)
        {
            e = inner;
        }

        return e;
    }

    private Task<T> WithinRequestTimeoutAsync<T>(string what, Func<CancellationToken, Task<T>> request, CancellationToken cancellationToken) =>
        RequestTimeout.WithinAsync(what, _requestTimeout, _time, request, cancellationToken);

    private static string Shorten(string text) => Kubernetes.KubernetesLeaseStore.Shorten(text);

    private static NpgsqlDataSource Build(PostgresTarget target, string? password, bool pooling)
    {
        var builder = new NpgsqlSlimDataSourceBuilder(target.Settings.ConnectionString);
        builder.EnableTransportSecurity();
        var settings = builder.ConnectionStringBuilder;
        if (string.IsNullOrEmpty(settings.Password) && password is not null)
        {
            settings.Password = password;
        }

        if (string.IsNullOrEmpty(settings.ApplicationName))
        {
            settings.ApplicationName = "leader-sidecar";
        }

        settings.Pooling = pooling;
        settings.Multiplexing = false;
        return builder.Build();
    }

    [LoggerMessage(EventId = 800, EventName = "PostgresListenSilent", Level = LogLevel.Warning,
        Message = "LISTEN {Channel} did not hear its own probe notification within {TimeoutMs} ms: the connection goes through a pooler in transaction mode (PgBouncer?), which drops notifications. Followers poll every retry period instead of watching; connect to PostgreSQL directly or through a session-mode pool for instant hand-overs")]
    private static partial void LogListenSilent(ILogger logger, string channel, double timeoutMs);

    [LoggerMessage(EventId = 801, EventName = "PostgresListenWorks", Level = LogLevel.Information,
        Message = "LISTEN {Channel} hears notifications again; followers watch the lease")]
    private static partial void LogListenWorks(ILogger logger, string channel);

    [LoggerMessage(EventId = 802, EventName = "PostgresTableCreated", Level = LogLevel.Information,
        Message = "Created the lease table {Table} and its triggers")]
    private static partial void LogTableCreated(ILogger logger, string table);

    /// <summary>One watch's connection: LISTENing on the channel, noting notifications for our row and our probe.</summary>
    private sealed class Listener(string key, string probe, string channel) : IAsyncDisposable
    {
        public string Probe => probe;

        private NpgsqlConnection? _connection;
        private volatile bool _changed;
        private volatile bool _probeHeard;

        public NpgsqlConnection Connection => _connection ?? throw new InvalidOperationException("the listener is not open");

        public bool ProbeHeard => _probeHeard;

        public async Task OpenAsync(NpgsqlDataSource source, CancellationToken cancellationToken)
        {
            _connection = await source.OpenConnectionAsync(cancellationToken);
            _connection.Notification += (_, e) =>
            {
                if (e.Payload == key)
                {
                    _changed = true;
                }
                else if (e.Payload == probe)
                {
                    _probeHeard = true;
                }
            };
            await using var listen = new NpgsqlCommand($"LISTEN \"{channel}\"", _connection);
            await listen.ExecuteNonQueryAsync(cancellationToken);
        }

        /// <summary>Whether a notification for our row came since the last call.</summary>
        public bool TakeChanged()
        {
            var changed = _changed;
            _changed = false;
            return changed;
        }

        /// <summary>Reads the row on the listening connection itself, which also proves it alive.</summary>
        public Task<LeaseSnapshot?> ReadAsync(PostgresLeaseStore store, CancellationToken cancellationToken) =>
            store.RunAsync("lease watch read", async token =>
            {
                await using var command = new NpgsqlCommand(store._select, Connection);
                store.AddKey(command);
                return await store.ReadSingleAsync(command, token);
            }, cancellationToken);

        public async ValueTask DisposeAsync()
        {
            if (_connection is { } connection)
            {
                try
                {
                    await connection.DisposeAsync();
                }
                catch (Exception e) when (e is NpgsqlException or IOException or InvalidOperationException)
                {
                    // An abandoned wait may still be breaking the connection: it is closed either way.
                }
            }
        }
    }
}
