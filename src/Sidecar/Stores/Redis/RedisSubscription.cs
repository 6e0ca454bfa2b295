using System.Threading.Channels;
using LeaderSidecar.Election;

namespace LeaderSidecar.Stores.Redis;

/// <summary>
/// A connection subscribed to the lease's channel. A reader task keeps the newest message (they
/// coalesce: each one carries the whole record, so only the last counts) and notes when the server
/// last said anything, so a connection that went silent (a vanished server sends no reset) is found
/// by <see cref="PingAsync"/> and <see cref="SilentFor"/>. When the connection fails, the next
/// <see cref="WaitAsync"/> throws.
/// </summary>
internal sealed class RedisSubscription : IAsyncDisposable
{
    private readonly RedisConnection _connection;
    private readonly string _channel;
    private readonly TimeProvider _time;
    private readonly Channel<ReadOnlyMemory<byte>> _messages = Channel.CreateBounded<ReadOnlyMemory<byte>>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropOldest });
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _reader;
    private long _lastHeard;
    private Task<bool>? _pendingNotice;

    private RedisSubscription(RedisConnection connection, string channel, TimeProvider time)
    {
        _connection = connection;
        _channel = channel;
        _time = time;
        _lastHeard = time.GetTimestamp();
        _reader = ReadAsync();
    }

    /// <summary>How long the server has said nothing on this connection.</summary>
    public TimeSpan SilentFor => _time.GetElapsedTime(Interlocked.Read(ref _lastHeard));

    /// <summary>Connects, subscribes, and returns once the server confirmed the subscription.</summary>
    public static async Task<RedisSubscription> OpenAsync(RedisServerSettings settings, string channel, TimeProvider time, CancellationToken cancellationToken)
    {
        var connection = await RedisConnection.OpenAsync(settings, cancellationToken);
        try
        {
            await connection.SendAsync(["SUBSCRIBE", channel], cancellationToken);
            var confirmation = await connection.ReceiveAsync(cancellationToken);
            if (confirmation.IsError)
            {
                throw RedisFailures.FromReply("lease subscribe", confirmation);
            }

            if (Kind(confirmation) != "subscribe")
            {
                throw new RespProtocolException($"SUBSCRIBE answered {Kubernetes.KubernetesLeaseStore.Shorten(confirmation.ToString())}");
            }

            return new RedisSubscription(connection, channel, time);
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Waits up to <paramref name="interval"/> for a message: the newest one's content when one came,
    /// <see langword="null"/> when the interval passed quietly. Throws an unavailable
    /// <see cref="LeaseStoreException"/> once the connection failed.
    /// </summary>
    public async Task<ReadOnlyMemory<byte>?> WaitAsync(TimeSpan interval, CancellationToken cancellationToken)
    {
        // One wait for a notice lives until a notice comes, across any number of quiet intervals.
        _pendingNotice ??= _messages.Reader.WaitToReadAsync(cancellationToken).AsTask();
        if (!_pendingNotice.IsCompleted)
        {
            using var delayCts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            await Task.WhenAny(_pendingNotice, Task.Delay(interval, _time, delayCts.Token));
            await delayCts.CancelAsync();
        }

        cancellationToken.ThrowIfCancellationRequested();
        if (!_pendingNotice.IsCompleted)
        {
            return null;
        }

        var notice = _pendingNotice;
        _pendingNotice = null;
        try
        {
            if (await notice && _messages.Reader.TryRead(out var message))
            {
                return message;
            }

            throw new LeaseStoreException(LeaseStoreFailure.Unavailable, "lease subscription: ended");
        }
        catch (Exception e) when (e is not LeaseStoreException && RedisFailures.FromException("lease subscription", e, cancellationToken) is { } failure)
        {
            throw failure;
        }
    }

    /// <summary>Asks the server for a sign of life on this connection; the answer resets <see cref="SilentFor"/>.</summary>
    public async Task PingAsync(CancellationToken cancellationToken)
    {
        try
        {
            await _connection.SendAsync(["PING"], cancellationToken);
        }
        catch (Exception e) when (RedisFailures.FromException("lease subscription", e, cancellationToken) is { } failure)
        {
            throw failure;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _connection.Dispose();
        try
        {
            await _reader;
        }
        catch (Exception)
        {
            // The reader's failure was handed to the waiter, or nobody waits any more.
        }

        _stop.Dispose();
    }

    private async Task ReadAsync()
    {
        try
        {
            while (true)
            {
                var push = await _connection.ReceiveAsync(_stop.Token);
                Interlocked.Exchange(ref _lastHeard, _time.GetTimestamp());
                if (push.IsError)
                {
                    // The server ended the subscription (its ACL changed, for one): read again elsewhere.
                    throw RedisFailures.FromReply("lease subscription", push);
                }

                if (Kind(push) == "message" && push.Items.Count == 3 && push.Items[1].Text == _channel)
                {
                    _messages.Writer.TryWrite(push.Items[2].Bytes);
                }
            }
        }
        catch (Exception e)
        {
            _messages.Writer.TryComplete(_stop.IsCancellationRequested ? null : e);
        }
    }

    /// <summary>The kind of a pub/sub push (<c>message</c>, <c>subscribe</c>, <c>pong</c>…), in RESP2 an array, in RESP3 a push.</summary>
    private static string Kind(RespValue push) =>
        push.Kind is RespKind.Array or RespKind.Push && push.Items.Count > 0 ? push.Items[0].Text : "";
}
