using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace LeaderSidecar.Hosting;

/// <summary>
/// What clients of the surfaces may hold: connections per listener, and the Kestrel limits that
/// bound what one connection costs.
/// </summary>
/// <remarks>
/// Every connection takes a file descriptor. A process out of descriptors cannot open its lease
/// file, so the leader steps down; and the runtime, which needs descriptors to start a thread,
/// then aborts with "Out of memory". So each listener may hold only so many connections that, all
/// full at once, they leave <see cref="Reserve"/> descriptors for the lease store, the log, the
/// leader file and the runtime; a connection beyond the limit is refused at once (see
/// <see cref="LimitedSocketTransport"/>). Long-polls (<c>/leader?wait=</c>) and gRPC <c>Watch</c>
/// streams hold their connection for as long as they wait, and count against the limit too.
/// </remarks>
internal sealed record ConnectionLimits
{
    /// <summary>Connections per listener when descriptors are plentiful: far more than a sidecar's clients need.</summary>
    public const int DefaultPerListener = 1024;

    /// <summary>
    /// Descriptors kept free for everything that is not a client connection: the lease store's
    /// lock, read and temporary files and its change watch, API-server connections (each with
    /// TLS), name lookups, the leader file, and the threads the runtime starts.
    /// </summary>
    public const int Reserve = 64;

    /// <summary>Below this a listener is of little use; a limit this low eats into the reserve instead.</summary>
    public const int MinimumPerListener = 8;

    /// <summary>How long a connection may sit idle between requests (also before its first one).</summary>
    public static readonly TimeSpan KeepAliveTimeout = TimeSpan.FromSeconds(30);

    /// <summary>How long a client may take to send a request's headers.</summary>
    public static readonly TimeSpan RequestHeadersTimeout = TimeSpan.FromSeconds(10);

    /// <summary>Concurrent HTTP/2 streams (gRPC calls) on one connection.</summary>
    public const int MaxStreamsPerConnection = 32;

    /// <summary>Connections one listener may hold at once.</summary>
    public required int PerListener { get; init; }

    /// <summary>The soft descriptor limit the figure was derived from; null where unknown.</summary>
    public ulong? DescriptorLimit { get; init; }

    /// <summary>Descriptors open when the figure was derived; null where unknown.</summary>
    public int? OpenAtStart { get; init; }

    /// <summary>
    /// The lowest descriptor number an accepted connection may not have: with fewer than
    /// <see cref="Reserve"/> descriptors free it is refused, however few connections are open.
    /// The system hands out the lowest free number, so a high one means that many are in use,
    /// whoever holds them (the JIT-compiled build, for one, keeps every assembly it loads open).
    /// Null where the limit is unknown.
    /// </summary>
    public long? DescriptorCeiling => DescriptorLimit is { } limit ? (long)Math.Min(limit, long.MaxValue) - Reserve : null;

    /// <summary>True when the descriptor limit is so low that the listeners eat into the reserve.</summary>
    public bool Starved { get; init; }

    /// <summary>
    /// The limits for <paramref name="listeners"/> listeners under a soft descriptor limit of
    /// <paramref name="descriptorLimit"/> with <paramref name="open"/> descriptors already open:
    /// the descriptors left after the reserve, shared evenly, at most <see cref="DefaultPerListener"/>.
    /// </summary>
    public static ConnectionLimits For(int listeners, ulong? descriptorLimit, int? open)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(listeners, 1);
        if (descriptorLimit is not { } limit)
        {
            return new ConnectionLimits { PerListener = DefaultPerListener, OpenAtStart = open };
        }

        var spare = (decimal)limit - (open ?? 0) - Reserve;
        var share = Math.Min(spare / listeners, DefaultPerListener);
        return new ConnectionLimits
        {
            PerListener = (int)Math.Max(Math.Floor(share), MinimumPerListener),
            DescriptorLimit = limit,
            OpenAtStart = open,
            Starved = share < MinimumPerListener,
        };
    }

    /// <summary>The limits for this process, from its descriptor limit and the descriptors open now.</summary>
    public static ConnectionLimits ForThisProcess(int listeners) =>
        For(listeners, FileDescriptors.SoftLimit(), FileDescriptors.CountOpen());

    /// <summary>Sets Kestrel's limits to match.</summary>
    public void Apply(KestrelServerOptions kestrel)
    {
        var limits = kestrel.Limits;

        // Kestrel counts per listener too; the transport refuses beyond the limit before Kestrel
        // sees the connection, so this is a second line, never the first.
        limits.MaxConcurrentConnections = PerListener;

        // No endpoint upgrades a connection (no WebSockets).
        limits.MaxConcurrentUpgradedConnections = 0;

        // Idle connections must not pile up toward the limit.
        limits.KeepAliveTimeout = KeepAliveTimeout;
        limits.RequestHeadersTimeout = RequestHeadersTimeout;

        // Requests here are a line and a few headers; what a connection may make the server buffer
        // bounds the memory a full listener costs.
        limits.MaxRequestHeadersTotalSize = 16 * 1024;
        limits.MaxRequestBufferSize = 32 * 1024;
        limits.MaxResponseBufferSize = 64 * 1024;

        limits.Http2.MaxStreamsPerConnection = MaxStreamsPerConnection;

        // gRPC requests are a few bytes; HTTP/2's minimum windows (64 KiB less one byte) bound
        // what a client may send ahead of the server reading it.
        limits.Http2.InitialConnectionWindowSize = 65_535;
        limits.Http2.InitialStreamWindowSize = 65_535;
    }
}
