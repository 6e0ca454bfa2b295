namespace LeaderSidecar.Stores.Redis;

/// <summary>
/// The store's command connection: one request at a time, opened on first use and opened again
/// after any request that left it out of step (a failure, a timeout, a cancellation). A request
/// may be several commands that must share the connection, such as a write and its <c>WAIT</c>.
/// </summary>
internal sealed class RedisClient(RedisServerSettings settings) : IDisposable
{
    private readonly SemaphoreSlim _gate = new(1, 1);
    private RedisConnection? _connection;
    private bool _disposed;

    public RedisServerSettings Settings => settings;

    /// <summary>
    /// Runs <paramref name="request"/> on the connection. Connection failures come out as a
    /// <see cref="Election.LeaseStoreException"/> (see <see cref="RedisFailures"/>), cancellation of
    /// <paramref name="cancellationToken"/> as <see cref="OperationCanceledException"/>.
    /// </summary>
    public async Task<T> RunAsync<T>(string what, Func<RedisConnection, CancellationToken, Task<T>> request, CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken);
        try
        {
            return await RunHeldAsync(what, request, cancellationToken);
        }
        finally
        {
            _gate.Release();
        }
    }

    public void Dispose()
    {
        // A request in flight holds the gate; closing its connection under it makes it fail at once.
        _disposed = true;
        _connection?.Dispose();
    }

    private async Task<T> RunHeldAsync<T>(string what, Func<RedisConnection, CancellationToken, Task<T>> request, CancellationToken cancellationToken)
    {
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_connection is { } idle && !idle.IsUsable())
            {
                idle.Dispose();
                _connection = null;
            }

            var connection = _connection ??= await RedisConnection.OpenAsync(settings, cancellationToken);
            try
            {
                return await request(connection, cancellationToken);
            }
            finally
            {
                if (connection.IsBroken)
                {
                    connection.Dispose();
                    _connection = null;
                }
            }
        }
        catch (Exception e) when (RedisFailures.FromException(what, e, cancellationToken) is { } failure)
        {
            throw failure;
        }
    }
}
