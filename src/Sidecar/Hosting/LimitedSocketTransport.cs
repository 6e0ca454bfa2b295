using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Options;

namespace LeaderSidecar.Hosting;

/// <summary>
/// Kestrel's socket transport with two changes to its accept loop, so that no number of
/// connections can take the descriptors the lease store needs, and running out of them anyway is
/// not fatal.
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>A listener holding its limit of connections, or a connection that arrives with fewer
/// than <see cref="ConnectionLimits.Reserve"/> descriptors free, is refused in the accept loop
/// itself (closed with a reset, the descriptor returned at once). Kestrel's own limit hands the
/// connection to the thread pool first, so under a flood accepted-but-not-yet-refused connections
/// pile up beyond it, and it logs a warning for every one.</item>
/// <item>When accept fails for another reason than a connection reset in the backlog (above all
/// "too many open files"), the loop pauses, doubling up to a second. Kestrel retries at once:
/// the pending connection stays in the backlog, so accept fails again at once, and the loop spins
/// a core allocating an exception each turn, until the runtime, unable to start a thread without
/// a descriptor, aborts with "Out of memory".</item>
/// </list>
/// Binding is Kestrel's: <see cref="SocketTransportOptions.CreateBoundListenSocket"/> and the backlog.
/// </remarks>
internal sealed class LimitedSocketTransport(
    IOptions<SocketTransportOptions> options,
    ConnectionLimits limits,
    TimeProvider time,
    ILoggerFactory loggers) : IConnectionListenerFactory, IConnectionListenerFactorySelector
{
    public bool CanBind(EndPoint endpoint) => endpoint is IPEndPoint or UnixDomainSocketEndPoint;

    public ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default)
    {
        var settings = options.Value;
        Socket socket;
        try
        {
            socket = settings.CreateBoundListenSocket(endpoint);
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.AddressAlreadyInUse)
        {
            throw new AddressInUseException(e.Message, e);
        }

        socket.Listen(settings.Backlog);
        var factory = new SocketConnectionContextFactory(
            new SocketConnectionFactoryOptions
            {
                IOQueueCount = settings.IOQueueCount,
                WaitForDataBeforeAllocatingBuffer = settings.WaitForDataBeforeAllocatingBuffer,
                MaxReadBufferSize = settings.MaxReadBufferSize,
                MaxWriteBufferSize = settings.MaxWriteBufferSize,
                UnsafePreferInlineScheduling = settings.UnsafePreferInlineScheduling,
            },
            loggers.CreateLogger("Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets"));
        var listener = new LimitedListener(socket, factory, limits, settings.NoDelay, time, loggers.CreateLogger<LimitedSocketTransport>());
        return ValueTask.FromResult<IConnectionListener>(listener);
    }
}

/// <summary>One listening socket with at most <see cref="ConnectionLimits.PerListener"/> connections open; see <see cref="LimitedSocketTransport"/>.</summary>
internal sealed partial class LimitedListener : IConnectionListener
{
    /// <summary>The first pause after a failed accept; it doubles up to <see cref="LongestPause"/>.</summary>
    public static readonly TimeSpan FirstPause = TimeSpan.FromMilliseconds(10);

    public static readonly TimeSpan LongestPause = TimeSpan.FromSeconds(1);

    /// <summary>Refusals and failures are logged at most this often per listener, with a count.</summary>
    public static readonly TimeSpan ReportEvery = TimeSpan.FromSeconds(10);

    private readonly Socket _socket;
    private readonly SocketConnectionContextFactory _factory;
    private readonly int _limit;
    private readonly long? _descriptorCeiling;
    private readonly bool _noDelay;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private int _open;
    private long _refused;
    private long _failed;
    private long? _lastRefusalReport;
    private long? _lastFailureReport;

    public LimitedListener(Socket socket, SocketConnectionContextFactory factory, ConnectionLimits limits, bool noDelay, TimeProvider time, ILogger logger)
    {
        _socket = socket;
        _factory = factory;
        _limit = limits.PerListener;
        _descriptorCeiling = OperatingSystem.IsWindows() ? null : limits.DescriptorCeiling;
        _noDelay = noDelay;
        _time = time;
        _logger = logger;
        EndPoint = socket.LocalEndPoint!;
    }

    public EndPoint EndPoint { get; }

    /// <summary>Connections handed to Kestrel and not yet disposed.</summary>
    public int Open => Volatile.Read(ref _open);

    /// <summary>Connections refused at the limit, since start.</summary>
    public long Refused => Interlocked.Read(ref _refused);

    /// <summary>Accepts that failed (other than resets in the backlog), since start.</summary>
    public long Failed => Interlocked.Read(ref _failed);

    public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
    {
        var pause = FirstPause;
        while (true)
        {
            Socket accepted;
            try
            {
                accepted = await _socket.AcceptAsync(cancellationToken);
            }
            catch (Exception e) when (e is ObjectDisposedException or OperationCanceledException
                || e is SocketException { SocketErrorCode: SocketError.OperationAborted })
            {
                // Unbound or disposed: Kestrel stops accepting on null.
                return null;
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionReset or SocketError.ConnectionAborted)
            {
                // The client gave up while in the backlog; the next one is unaffected.
                continue;
            }
            catch (SocketException e)
            {
                var paused = Task.Delay(pause, _time, cancellationToken);
                var failed = Interlocked.Increment(ref _failed);
                if (Due(ref _lastFailureReport))
                {
                    LogAcceptFailed(_logger, EndPoint.ToString() ?? "", e.SocketErrorCode.ToString(), e.Message, (long)pause.TotalMilliseconds, failed);
                }

                try
                {
                    await paused;
                }
                catch (OperationCanceledException)
                {
                    return null;
                }

                pause = pause * 2 < LongestPause ? pause * 2 : LongestPause;
                continue;
            }

            pause = FirstPause;
            if (Interlocked.Increment(ref _open) > _limit)
            {
                Interlocked.Decrement(ref _open);
                Refuse(accepted, $"it holds its limit of {_limit} connections");
                continue;
            }

            if (_descriptorCeiling is { } ceiling && (long)accepted.Handle >= ceiling)
            {
                Interlocked.Decrement(ref _open);
                Refuse(accepted, $"fewer than {ConnectionLimits.Reserve} file descriptors are free");
                continue;
            }

            try
            {
                if (accepted.LocalEndPoint is IPEndPoint)
                {
                    accepted.NoDelay = _noDelay;
                }

                return new CountedConnection(_factory.Create(accepted), this);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                // Reset between accept and set-up (reading its addresses, setting no-delay).
                Interlocked.Decrement(ref _open);
                accepted.Dispose();
            }
        }
    }

    public ValueTask UnbindAsync(CancellationToken cancellationToken = default)
    {
        _socket.Dispose();
        return default;
    }

    public ValueTask DisposeAsync()
    {
        _socket.Dispose();
        _factory.Dispose();
        return default;
    }

    private void Release() => Interlocked.Decrement(ref _open);

    private void Refuse(Socket socket, string reason)
    {
        // A zero linger timeout closes with a reset: the client learns at once, and no
        // TIME_WAIT is left here for each refused connection.
        try
        {
            socket.LingerState = new LingerOption(true, 0);
        }
        catch (SocketException)
        {
        }

        socket.Dispose();
        var refused = Interlocked.Increment(ref _refused);
        if (Due(ref _lastRefusalReport))
        {
            LogRefusing(_logger, EndPoint.ToString() ?? "", reason, refused);
        }
    }

    /// <summary>True at most once per <see cref="ReportEvery"/>; AcceptAsync never runs twice at once, so no lock.</summary>
    private bool Due(ref long? last)
    {
        var now = _time.GetTimestamp();
        if (last is { } then && _time.GetElapsedTime(then, now) < ReportEvery)
        {
            return false;
        }

        last = now;
        return true;
    }

    [LoggerMessage(EventId = 320, EventName = "ConnectionLimitReached", Level = LogLevel.Warning,
        Message = "Refusing new connections on {Listener}: {Reason} ({Refused} refused since start)")]
    private static partial void LogRefusing(ILogger logger, string listener, string reason, long refused);

    [LoggerMessage(EventId = 321, EventName = "AcceptFailed", Level = LogLevel.Warning,
        Message = "Cannot accept connections on {Listener}: {Error} ({Reason}); pausing {PauseMs} ms before the next try ({Failed} failures since start)")]
    private static partial void LogAcceptFailed(ILogger logger, string listener, string error, string reason, long pauseMs, long failed);

    /// <summary>The transport's connection, which gives its place back when Kestrel disposes it.</summary>
    private sealed class CountedConnection(ConnectionContext inner, LimitedListener listener) : ConnectionContext
    {
        private int _released;

        public override string ConnectionId
        {
            get => inner.ConnectionId;
            set => inner.ConnectionId = value;
        }

        public override IFeatureCollection Features => inner.Features;

        public override IDictionary<object, object?> Items
        {
            get => inner.Items;
            set => inner.Items = value;
        }

        public override IDuplexPipe Transport
        {
            get => inner.Transport;
            set => inner.Transport = value;
        }

        public override CancellationToken ConnectionClosed
        {
            get => inner.ConnectionClosed;
            set => inner.ConnectionClosed = value;
        }

        public override EndPoint? LocalEndPoint
        {
            get => inner.LocalEndPoint;
            set => inner.LocalEndPoint = value;
        }

        public override EndPoint? RemoteEndPoint
        {
            get => inner.RemoteEndPoint;
            set => inner.RemoteEndPoint = value;
        }

        public override void Abort() => inner.Abort();

        public override void Abort(ConnectionAbortedException abortReason) => inner.Abort(abortReason);

        public override async ValueTask DisposeAsync()
        {
            try
            {
                // Closes the socket: only then is its descriptor free again.
                await inner.DisposeAsync();
                await base.DisposeAsync();
            }
            finally
            {
                if (Interlocked.Exchange(ref _released, 1) == 0)
                {
                    listener.Release();
                }
            }
        }
    }
}
