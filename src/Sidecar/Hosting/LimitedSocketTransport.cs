using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Options;

namespace LeaderSidecar.Hosting;

/// <summary>
/// Kestrel's socket transport, with each listener holding at most
/// <see cref="ConnectionLimits.PerListener"/> connections and never taking the last
/// <see cref="ConnectionLimits.Reserve"/> file descriptors, so that no number of connections can
/// take the descriptors the lease store and the runtime need.
/// </summary>
/// <remarks>
/// A connection beyond either bound is refused as it comes out of the accept loop: reset and
/// closed before the next one is accepted, its descriptor returned at once. Kestrel's own limit
/// hands the connection to the thread pool first, so under a flood accepted-but-not-yet-refused
/// connections pile up beyond it, and it logs a warning for each one.
/// <para>
/// Why the descriptors matter: when accept fails with "too many open files", Kestrel's accept
/// loop retries at once; the pending connection stays in the backlog, so it fails again at once,
/// and the loop spins a core allocating an exception a turn, while the lease file cannot be
/// opened (the leader steps down) and the runtime, which needs a descriptor to start a thread,
/// aborts with "Out of memory". With the connections bounded here that state is out of their
/// reach.
/// </para>
/// </remarks>
internal sealed class LimitedSocketTransport(
    IOptions<SocketTransportOptions> options,
    ConnectionLimits limits,
    TimeProvider time,
    ILoggerFactory loggers) : IConnectionListenerFactory, IConnectionListenerFactorySelector
{
    private readonly SocketTransportFactory _sockets = new(options, loggers);

    public bool CanBind(EndPoint endpoint) => _sockets.CanBind(endpoint);

    public async ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default) =>
        new LimitedListener(await _sockets.BindAsync(endpoint, cancellationToken), limits, time, loggers.CreateLogger<LimitedSocketTransport>());
}

/// <summary>One listener of <see cref="LimitedSocketTransport"/>.</summary>
internal sealed partial class LimitedListener(IConnectionListener inner, ConnectionLimits limits, TimeProvider time, ILogger logger) : IConnectionListener
{
    /// <summary>Refusals are logged at most this often per listener, with a count.</summary>
    public static readonly TimeSpan ReportEvery = TimeSpan.FromSeconds(10);

    // Descriptor numbers are small integers on Unix only.
    private readonly long? _descriptorCeiling = OperatingSystem.IsWindows() ? null : limits.DescriptorCeiling;
    private int _open;
    private long _refused;
    private long? _lastReport;

    public EndPoint EndPoint => inner.EndPoint;

    /// <summary>Connections handed to Kestrel and not yet disposed.</summary>
    public int Open => Volatile.Read(ref _open);

    /// <summary>Connections refused since start.</summary>
    public long Refused => Interlocked.Read(ref _refused);

    public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
    {
        while (await inner.AcceptAsync(cancellationToken) is { } connection)
        {
            var socket = connection.Features.Get<IConnectionSocketFeature>()?.Socket;
            if (Interlocked.Increment(ref _open) > limits.PerListener)
            {
                await RefuseAsync(connection, socket, $"it holds its limit of {limits.PerListener} connections");
            }
            else if (_descriptorCeiling is { } ceiling && socket is not null && (long)socket.Handle >= ceiling)
            {
                // The system hands out the lowest free number: this one means few are left.
                await RefuseAsync(connection, socket, $"fewer than {ConnectionLimits.Reserve} file descriptors are free");
            }
            else
            {
                return new CountedConnection(connection, this);
            }
        }

        // Unbound: Kestrel stops accepting on null.
        return null;
    }

    public ValueTask UnbindAsync(CancellationToken cancellationToken = default) => inner.UnbindAsync(cancellationToken);

    public ValueTask DisposeAsync() => inner.DisposeAsync();

    private void Release() => Interlocked.Decrement(ref _open);

    private async Task RefuseAsync(ConnectionContext connection, Socket? socket, string reason)
    {
        Release();
        try
        {
            // A zero linger timeout closes with a reset: the client learns at once, and no
            // TIME_WAIT is left here for each refused connection.
            socket?.LingerState = new LingerOption(true, 0);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }

        // Closes the socket before the next accept, so refused connections never pile up.
        await connection.DisposeAsync();
        var refused = Interlocked.Increment(ref _refused);
        var now = time.GetTimestamp();
        if (_lastReport is not { } last || time.GetElapsedTime(last, now) >= ReportEvery)
        {
            // AcceptAsync never runs twice at once, so the report time needs no lock.
            _lastReport = now;
            LogRefusing(logger, EndPoint.ToString() ?? "", reason, refused);
        }
    }

    [LoggerMessage(EventId = 320, EventName = "ConnectionsRefused", Level = LogLevel.Warning,
        Message = "Refusing new connections on {Listener}: {Reason} ({Refused} refused since start)")]
    private static partial void LogRefusing(ILogger logger, string listener, string reason, long refused);

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
