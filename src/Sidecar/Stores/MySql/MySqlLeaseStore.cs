using System.Globalization;
using System.Runtime.CompilerServices;
using LeaderSidecar.Election;
using MySqlConnector;

namespace LeaderSidecar.Stores.MySql;

/// <summary>
/// The lease as one row of a MySQL or MariaDB table, keyed by (namespace, name), with the record's
/// fields as columns under the Lease spec's names, a <c>version</c> counter and a <c>uid</c>.
/// Create is an INSERT (a duplicate key is a conflict); update is an UPDATE that matches only the
/// row exactly as it was read — same uid, same version, same record — and adds one to the version,
/// so a lost race, a re-created row or a hand edit is a conflict. Followers poll the row.
/// </summary>
/// <remarks>
/// <para>
/// What the server guarantees: InnoDB executes each statement atomically under a row lock, so of
/// several UPDATEs that match the same version exactly one changes the row and the others match
/// nothing; a committed write is durable on that server (with the default
/// <c>innodb_flush_log_at_trx_commit=1</c>) and every later statement sees it. Versions are
/// <c>BIGINT UNSIGNED</c> and only grow (at the end of the range the UPDATE fails rather than
/// wrap); a row deleted and inserted again has a new random uid.
/// </para>
/// <para>
/// What it can lose, and this store cannot hide: a failover to an asynchronous replica that missed
/// the last writes rewinds the row, so a version can come back with other content. The update
/// compares the whole row, not only the version, so nobody overwrites a state it did not read, and
/// followers see a change by content as well as by version. A server with a non-durable commit
/// setting can lose acknowledged renews in a crash, which looks like the same rewind.
/// </para>
/// <para>
/// There is no change feed: the watch reads the row every poll interval and yields it when it
/// differs from the last one read. Polls use a pool of their own whose connections are not reset
/// between uses (one statement a poll); requests reset theirs, which also proves them alive after
/// a server restart. Every read is bounded: the holder and uid are read cut to one character over
/// their limits, and a longer one is an invalid record.
/// </para>
/// <para>
/// A request whose caller gives up returns at once, whatever the server does: MySqlConnector may
/// not end a query on a server that stopped answering until its command timeout, and its own
/// cancellation (a <c>KILL QUERY</c> on a new connection) blocks the thread that asks for it. So
/// each request runs on its own, the caller's token cancels it from the thread pool, and a
/// request given up on finishes in the background within the command timeout.
/// </para>
/// </remarks>
internal sealed partial class MySqlLeaseStore : ILeaseStore, IDisposable
{
    /// <summary>The longest uid read as one; the store writes 36-character UUIDs.</summary>
    public const int MaxUidLength = 64;

    /// <summary>The columns, as the table is created (docs/STORES-MYSQL.md shows the same statement).</summary>
    public const string Columns = """
          namespace VARCHAR(63) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
          name VARCHAR(253) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
          holderIdentity VARCHAR(1024) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
          leaseDurationSeconds INT NOT NULL,
          acquireTime DATETIME(6) NULL,
          renewTime DATETIME(6) NULL,
          leaseTransitions INT NOT NULL,
          version BIGINT UNSIGNED NOT NULL,
          uid CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
          PRIMARY KEY (namespace, name)
        """;

    // DATETIME holds years 1000 to 9999.
    private static readonly DateTime EarliestTime = new(1000, 1, 1, 0, 0, 0, DateTimeKind.Utc);

    /// <summary>The most connections the watch's polls hold: one, and one more while an abandoned poll finishes.</summary>
    private const int MaxPollConnections = 2;

    private readonly MySqlDataSource _requests;
    private readonly MySqlDataSource _polls;
    private readonly string _namespace;
    private readonly string _name;
    private readonly string _table;
    private readonly bool _createTable;
    private readonly TimeSpan _pollInterval;
    private readonly TimeSpan _requestTimeout;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly string _select;
    private readonly string _insert;
    private readonly string _update;
    private readonly string _create;

    /// <param name="requestTimeout">The longest one poll of the watch may take (the elector's request timeout).</param>
    /// <param name="connection">Where and how to connect (MySqlStoreKind.Settle has set what the store relies on).</param>
    public MySqlLeaseStore(MySqlConnectionStringBuilder connection, string table, bool createTable, string @namespace, string name, TimeSpan pollInterval, TimeSpan requestTimeout, TimeProvider time, ILogger<MySqlLeaseStore> logger)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(pollInterval, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(requestTimeout, TimeSpan.Zero);
        if (!MySqlOptions.IsTableName(table))
        {
            throw new ArgumentException($"not a table name: {table}", nameof(table));
        }

        _requests = new MySqlDataSource(connection.ConnectionString);
        _polls = new MySqlDataSource(new MySqlConnectionStringBuilder(connection.ConnectionString) { ConnectionReset = false, MaximumPoolSize = MaxPollConnections }.ConnectionString);
        _namespace = @namespace;
        _name = name;
        _table = table;
        _createTable = createTable;
        _pollInterval = pollInterval;
        _requestTimeout = requestTimeout;
        _time = time;
        _logger = logger;
        Description = $"mysql table {table} row {@namespace}/{name} at {MySqlOptions.Address(connection)}";

        const string Key = "namespace = @namespace AND name = @name";
        _select = $"SELECT LEFT(holderIdentity, {LeaseRecord.MaxHolderIdentityLength + 1}), leaseDurationSeconds, acquireTime, renewTime, leaseTransitions, version, LEFT(uid, {MaxUidLength + 1}) FROM `{table}` WHERE {Key}";
        _insert = $"INSERT INTO `{table}` (namespace, name, holderIdentity, leaseDurationSeconds, acquireTime, renewTime, leaseTransitions, version, uid) VALUES (@namespace, @name, @holder, @duration, @acquire, @renew, @transitions, 1, @uid)";

        // The whole row as read, not only its version: a hand edit that left the version alone, or
        // a replica that came back with the same version and other content, is a conflict too.
        _update = $"UPDATE `{table}` SET holderIdentity = @holder, leaseDurationSeconds = @duration, acquireTime = @acquire, renewTime = @renew, leaseTransitions = @transitions, version = version + 1 " +
            $"WHERE {Key} AND uid = @uid AND version = @version AND holderIdentity = @wasHolder AND leaseDurationSeconds = @wasDuration " +
            "AND acquireTime <=> @wasAcquire AND renewTime <=> @wasRenew AND leaseTransitions = @wasTransitions";
        _create = $"CREATE TABLE IF NOT EXISTS `{table}` (\n{Columns}\n) ENGINE=InnoDB COMMENT='leader-sidecar leases: one row per lease, written only by leader-sidecar'";
    }

    public string Description { get; }

    public Task<LeaseSnapshot?> GetAsync(CancellationToken cancellationToken) =>
        RunAsync("lease read", _requests, ReadAsync, cancellationToken);

    public async Task<LeaseSnapshot> CreateAsync(LeaseRecord record, CancellationToken cancellationToken)
    {
        record = Storable(record);
        var uid = Guid.NewGuid().ToString("D");
        await RunAsync("lease create", _requests, async (connection, token) =>
        {
            await using var command = Command(connection, _insert);
            SetRecord(command, record);
            command.Parameters.AddWithValue("@uid", uid);
            return await command.ExecuteNonQueryAsync(token);
        }, cancellationToken);
        return new LeaseSnapshot(record, "1", uid);
    }

    public async Task<LeaseSnapshot> UpdateAsync(LeaseSnapshot current, LeaseRecord record, CancellationToken cancellationToken)
    {
        if (!ulong.TryParse(current.Version, NumberStyles.None, CultureInfo.InvariantCulture, out var version))
        {
            // Not a version this store handed out: no row can be at it.
            throw new LeaseStoreException(LeaseStoreFailure.Conflict, $"lease update: version \"{Shorten(current.Version)}\" is not a version of the row");
        }

        if (version == ulong.MaxValue)
        {
            // Never wrap: a version that came back to an old number could match a stale snapshot.
            throw Invalid($"version {version} cannot grow; delete the row to start the lease again under a new uid");
        }

        record = Storable(record);
        var changed = await RunAsync("lease update", _requests, async (connection, token) =>
        {
            await using var command = Command(connection, _update);
            SetRecord(command, record);
            command.Parameters.AddWithValue("@uid", current.Uid);
            command.Parameters.AddWithValue("@version", version);
            command.Parameters.AddWithValue("@wasHolder", current.Record.HolderIdentity);
            command.Parameters.AddWithValue("@wasDuration", current.Record.LeaseDurationSeconds);
            command.Parameters.AddWithValue("@wasAcquire", Column(current.Record.AcquireTime));
            command.Parameters.AddWithValue("@wasRenew", Column(current.Record.RenewTime));
            command.Parameters.AddWithValue("@wasTransitions", current.Record.LeaseTransitions);

            // Found rows, not changed rows (the connection never sets UseAffectedRows): the row
            // always changes anyway, since its version does.
            return await command.ExecuteNonQueryAsync(token);
        }, cancellationToken);
        if (changed != 1)
        {
            throw new LeaseStoreException(LeaseStoreFailure.Conflict, $"lease update: the row is no longer at version {version} as read (written since, or deleted)");
        }

        return new LeaseSnapshot(record, (version + 1).ToString(CultureInfo.InvariantCulture), current.Uid);
    }

    public async IAsyncEnumerable<LeaseSnapshot?> WatchAsync([EnumeratorCancellation] CancellationToken cancellationToken)
    {
        // Each poll is one SELECT that ends within the request timeout: a server that stopped
        // answering ends the watch as a timeout, a lost connection as unavailable; the elector
        // polls meanwhile and opens a new watch, which reads first.
        var last = await PollAsync(cancellationToken);
        yield return last;

        while (true)
        {
            await Task.Delay(_pollInterval, _time, cancellationToken);
            var now = await PollAsync(cancellationToken);
            if (now != last)
            {
                last = now;
                yield return now;
            }
        }
    }

    public void Dispose()
    {
        _requests.Dispose();
        _polls.Dispose();
    }

    /// <summary>Turns a client exception into a <see cref="LeaseStoreException"/>; null lets it through as it is.</summary>
    internal static LeaseStoreException? Failure(string what, Exception e, CancellationToken cancellationToken) => e switch
    {
        OperationCanceledException when cancellationToken.IsCancellationRequested => null,
        LeaseStoreException => null,
        MySqlException mysql => FromServer(what, mysql),
        IOException or System.Net.Sockets.SocketException or InvalidOperationException => new LeaseStoreException(LeaseStoreFailure.Unavailable, $"{what}: MySQL unreachable: {Shorten(e.Message)}", e),
        TimeoutException or OperationCanceledException => new LeaseStoreException(LeaseStoreFailure.Timeout, $"{what} timed out", e),
        _ => null,
    };

    /// <summary>MySQL's errors by number (the server's own, and MySqlConnector's client-side ones).</summary>
    internal static LeaseStoreException FromServer(string what, MySqlException e)
    {
        var reason = e.ErrorCode switch
        {
            MySqlErrorCode.AccessDenied => LeaseStoreFailure.Unauthorized,

            // No right on the database, the table or a column; and a database that does not exist,
            // which no retry will create.
            MySqlErrorCode.DatabaseAccessDenied or MySqlErrorCode.TableAccessDenied or MySqlErrorCode.ColumnAccessDenied
                or MySqlErrorCode.UnknownDatabase or MySqlErrorCode.NoSuchTable => LeaseStoreFailure.Forbidden,
            MySqlErrorCode.DuplicateKeyEntry or MySqlErrorCode.LockDeadlock => LeaseStoreFailure.Conflict,
            MySqlErrorCode.LockWaitTimeout or MySqlErrorCode.CommandTimeoutExpired or MySqlErrorCode.QueryInterrupted => LeaseStoreFailure.Timeout,

            // A table of another shape, a value the columns cannot hold, a version at the end of its range.
            MySqlErrorCode.BadFieldError or MySqlErrorCode.WarningDataOutOfRange or MySqlErrorCode.DataOutOfRange
                or MySqlErrorCode.DataTooLong or MySqlErrorCode.TruncatedWrongValue or MySqlErrorCode.TruncatedWrongValueForField => LeaseStoreFailure.Invalid,
            MySqlErrorCode.TooManyUserConnections or MySqlErrorCode.ConnectionCountError => LeaseStoreFailure.Throttled,

            // Refused, reset or shut down; a read-only server (a replica, or a primary being failed over).
            _ when e.IsTransient => LeaseStoreFailure.Unavailable,
            MySqlErrorCode.UnableToConnectToHost or MySqlErrorCode.ServerShutdown or MySqlErrorCode.OptionPreventsStatement => LeaseStoreFailure.Unavailable,
            _ when e.Number < 1000 => LeaseStoreFailure.Unavailable,
            _ => LeaseStoreFailure.ServerError,
        };
        return new LeaseStoreException(reason, $"{what}: MySQL error {e.Number}: {Shorten(e.Message)}", e);
    }

    /// <summary>Server-provided text as it may appear in a log: bounded, on one line.</summary>
    internal static string Shorten(string text) => Kubernetes.KubernetesLeaseStore.Shorten(text);

    /// <summary>
    /// Runs one statement on a connection from <paramref name="pool"/>, and returns when it is done
    /// or as soon as <paramref name="cancellationToken"/> is cancelled, whichever comes first (see
    /// the class remarks). Failures come out as <see cref="LeaseStoreException"/>, cancellation as
    /// <see cref="OperationCanceledException"/>.
    /// </summary>
    private async Task<T> RunAsync<T>(string what, MySqlDataSource pool, Func<MySqlConnection, CancellationToken, Task<T>> statement, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var driver = new CancellationTokenSource();
        var forward = QuietCancel.Forward(driver, cancellationToken);
        var work = ExecuteAsync(what, pool, statement, driver.Token);
        _ = work.ContinueWith(
            static (done, state) =>
            {
                // Observed, so a request given up on never surfaces as an unobserved exception.
                _ = done.Exception;
                var (registration, source) = ((CancellationTokenRegistration, CancellationTokenSource))state!;
                registration.Dispose();
                source.Dispose();
            },
            (forward, driver),
            CancellationToken.None,
            TaskContinuationOptions.ExecuteSynchronously,
            TaskScheduler.Default);
        return await work.WaitAsync(cancellationToken);
    }

    /// <summary>
    /// Opens a pooled connection and runs the statement; a missing table is created once and the
    /// statement run again, when allowed.
    /// </summary>
    private async Task<T> ExecuteAsync<T>(string what, MySqlDataSource pool, Func<MySqlConnection, CancellationToken, Task<T>> statement, CancellationToken cancellationToken)
    {
        for (var created = false; ; created = true)
        {
            try
            {
                await using var connection = await pool.OpenConnectionAsync(cancellationToken);
                return await statement(connection, cancellationToken);
            }
            catch (MySqlException e) when (e.ErrorCode == MySqlErrorCode.NoSuchTable && _createTable && !created)
            {
                await CreateTableAsync(cancellationToken);
            }
            catch (MySqlException e) when (e.ErrorCode == MySqlErrorCode.NoSuchTable)
            {
                throw new LeaseStoreException(
                    LeaseStoreFailure.Forbidden,
                    _createTable
                        ? $"{what}: table {_table} is still missing after it was created"
                        : $"{what}: table {_table} does not exist, and --mysql-create-table=false: create it (docs/STORES-MYSQL.md has the statement)",
                    e);
            }
            catch (Exception e) when (Failure(what, e, cancellationToken) is { } failure)
            {
                throw failure;
            }
        }
    }

    /// <summary>One read of the watch, within the request timeout.</summary>
    private Task<LeaseSnapshot?> PollAsync(CancellationToken cancellationToken) =>
        RequestTimeout.WithinAsync("lease read", _requestTimeout, _time, token => RunAsync("lease read", _polls, ReadAsync, token), cancellationToken);

    private async Task CreateTableAsync(CancellationToken cancellationToken)
    {
        try
        {
            await using var connection = await _requests.OpenConnectionAsync(cancellationToken);
            await using var command = Command(connection, _create);
            await command.ExecuteNonQueryAsync(cancellationToken);
            LogTableCreated(_logger, _table);
        }
        catch (MySqlException e) when (e.ErrorCode is MySqlErrorCode.TableAccessDenied or MySqlErrorCode.DatabaseAccessDenied)
        {
            throw new LeaseStoreException(LeaseStoreFailure.Forbidden, $"table {_table} does not exist and this user may not create it: create it, or grant CREATE on it ({Shorten(e.Message)})", e);
        }
        catch (Exception e) when (Failure("creating the lease table", e, cancellationToken) is { } failure)
        {
            throw failure;
        }
    }

    /// <summary>The row: null when there is none; an unusable row is <see cref="LeaseStoreFailure.Invalid"/>.</summary>
    private async Task<LeaseSnapshot?> ReadAsync(MySqlConnection connection, CancellationToken cancellationToken)
    {
        await using var command = Command(connection, _select);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        if (!await reader.ReadAsync(cancellationToken))
        {
            return null;
        }

        LeaseSnapshot lease;
        try
        {
            var holder = reader.GetString(0);
            var uid = reader.GetString(6);
            if (holder.Length > LeaseRecord.MaxHolderIdentityLength)
            {
                throw Invalid($"holderIdentity is longer than {LeaseRecord.MaxHolderIdentityLength} characters");
            }

            if (uid.Length is 0 or > MaxUidLength)
            {
                throw Invalid($"uid must be 1 to {MaxUidLength} characters");
            }

            var transitions = reader.GetInt32(4);
            if (transitions < 0)
            {
                // A term never is: taking it would hand the next holder a term at or below an old one.
                throw Invalid($"leaseTransitions {transitions} is negative, and a term never is");
            }

            lease = new LeaseSnapshot(
                new LeaseRecord(holder, reader.GetInt32(1), Time(reader, 2), Time(reader, 3), transitions),
                reader.GetUInt64(5).ToString(CultureInfo.InvariantCulture),
                uid);
        }
        catch (Exception e) when (e is InvalidCastException or OverflowException or FormatException or ArgumentOutOfRangeException or System.Data.SqlTypes.SqlNullValueException or MySqlConversionException)
        {
            // A hand edit the columns allow but a record cannot hold: a zero date, a NULL where
            // none belongs, a column altered to another type.
            throw Invalid(Shorten(e.Message), e);
        }

        if (await reader.ReadAsync(cancellationToken))
        {
            throw Invalid("more than one row has this namespace and name (the table has no primary key on them)");
        }

        return lease;
    }

    private LeaseStoreException Invalid(string why, Exception? inner = null) =>
        new(LeaseStoreFailure.Invalid, $"the row {_namespace}/{_name} in table {_table} is not a lease record: {why}", inner);

    private static DateTimeOffset? Time(MySqlDataReader reader, int column) =>
        reader.IsDBNull(column) ? null : new DateTimeOffset(DateTime.SpecifyKind(reader.GetDateTime(column), DateTimeKind.Utc));

    private MySqlCommand Command(MySqlConnection connection, string sql)
    {
        var command = new MySqlCommand(sql, connection);
        command.Parameters.AddWithValue("@namespace", _namespace);
        command.Parameters.AddWithValue("@name", _name);
        return command;
    }

    private static void SetRecord(MySqlCommand command, LeaseRecord record)
    {
        command.Parameters.AddWithValue("@holder", record.HolderIdentity);
        command.Parameters.AddWithValue("@duration", record.LeaseDurationSeconds);
        command.Parameters.AddWithValue("@acquire", Column(record.AcquireTime));
        command.Parameters.AddWithValue("@renew", Column(record.RenewTime));
        command.Parameters.AddWithValue("@transitions", record.LeaseTransitions);
    }

    private static object Column(DateTimeOffset? time) => time is { } value ? value.UtcDateTime : DBNull.Value;

    /// <summary>
    /// The record as the columns will hold it: times in UTC cut to the microsecond, which is what
    /// is read back. A time DATETIME cannot hold, or a holder longer than the column, is refused
    /// before it is sent.
    /// </summary>
    private static LeaseRecord Storable(LeaseRecord record)
    {
        if (record.HolderIdentity.Length > LeaseRecord.MaxHolderIdentityLength)
        {
            throw new LeaseStoreException(LeaseStoreFailure.Invalid, $"holderIdentity is longer than {LeaseRecord.MaxHolderIdentityLength} characters");
        }

        return record with { AcquireTime = Micro(record.AcquireTime), RenewTime = Micro(record.RenewTime) };

        static DateTimeOffset? Micro(DateTimeOffset? time)
        {
            if (time is not { } value)
            {
                return null;
            }

            if (value.UtcDateTime < EarliestTime)
            {
                throw new LeaseStoreException(LeaseStoreFailure.Invalid, $"time {value:O} is before the year 1000, which a DATETIME column cannot hold");
            }

            return new DateTimeOffset(value.UtcTicks - (value.UtcTicks % 10), TimeSpan.Zero);
        }
    }

    [LoggerMessage(EventId = 710, EventName = "MySqlTableCreated", Level = LogLevel.Information,
        Message = "Created the lease table {Table} (it did not exist)")]
    private static partial void LogTableCreated(ILogger logger, string table);
}
