using LeaderSidecar.Election;

namespace LeaderSidecar.Surfaces.Grpc;

/// <summary>Which surface a watch stream is open on.</summary>
internal enum WatchSurface
{
    /// <summary>gRPC <c>Watch</c>.</summary>
    Grpc,

    /// <summary>HTTP <c>GET /watch</c> (server-sent events).</summary>
    Http,
}

/// <summary>
/// The open watch streams — gRPC <c>Watch</c> and HTTP <c>/watch</c> alike — and the newest
/// revision each has written: metrics, the drain's sign that no app is listening any more, and the
/// way shutdown makes sure every stream has carried the step-down before the lease is released.
/// </summary>
internal sealed class WatchStreams
{
    /// <summary>How long the final status may take to reach a client when the server closes a stream.</summary>
    public static readonly TimeSpan FinalWriteTimeout = TimeSpan.FromSeconds(1);

    /// <summary>
    /// The most streams open at once, on both surfaces together. Connections and streams per connection are bounded by the
    /// listeners, but their product (tens of thousands of streams, each with its buffers) is not a
    /// bound a local neighbour should be able to reach; a thousand watching apps is already far
    /// beyond a sidecar's use.
    /// </summary>
    public const int MaxOpen = 4096;

    private readonly Lock _gate = new();
    private readonly HashSet<Stream> _open = [];
    private TaskCompletionSource _changed = NewSignal();

    /// <summary>Open streams now.</summary>
    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _open.Count;
            }
        }
    }

    /// <summary>Open streams on one surface now.</summary>
    public int CountOn(WatchSurface surface)
    {
        lock (_gate)
        {
            return _open.Count(s => s.Surface == surface);
        }
    }

    /// <summary>Completes when no stream is open (at once if none is).</summary>
    public async Task WhenNoneAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            Task changed;
            lock (_gate)
            {
                if (_open.Count == 0)
                {
                    return;
                }

                changed = _changed.Task;
            }

            await changed.WaitAsync(cancellationToken);
        }
    }

    /// <summary>Completes when every open stream has written <paramref name="revision"/> or a newer status, or has closed.</summary>
    public async Task WhenDeliveredAsync(long revision, CancellationToken cancellationToken)
    {
        while (true)
        {
            Task changed;
            lock (_gate)
            {
                if (_open.All(s => s.Delivered >= revision))
                {
                    return;
                }

                changed = _changed.Task;
            }

            await changed.WaitAsync(cancellationToken);
        }
    }

    /// <summary>
    /// Counts one stream until the returned handle is disposed; <see langword="null"/> when
    /// <see cref="MaxOpen"/> streams are open already.
    /// </summary>
    public Stream? TryOpen(WatchSurface surface)
    {
        var stream = new Stream(this, surface);
        lock (_gate)
        {
            if (_open.Count >= MaxOpen)
            {
                return null;
            }

            _open.Add(stream);
            Signal();
        }

        return stream;
    }

    private void Signal()
    {
        var changed = _changed;
        _changed = NewSignal();
        changed.SetResult();
    }

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>One open stream.</summary>
    internal sealed class Stream(WatchStreams owner, WatchSurface surface) : IDisposable
    {
        public WatchSurface Surface => surface;

        /// <summary>The newest revision written to this stream.</summary>
        public long Delivered { get; private set; }

        /// <summary>
        /// When the server closes the stream after the release: writes <paramref name="last"/> with
        /// <paramref name="write"/> unless the stream carried it already, within a second.
        /// </summary>
        public async Task WriteFinalAsync(LeadershipStatus last, Func<LeadershipStatus, CancellationToken, Task> write, TimeProvider time, CancellationToken aborted)
        {
            if (last.Revision <= Delivered)
            {
                return;
            }

            using var timeout = new CancellationTokenSource(FinalWriteTimeout, time);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, aborted);
            try
            {
                await write(last, linked.Token);
            }
            catch (OperationCanceledException)
            {
            }
        }

        /// <summary>Records that the status with <paramref name="revision"/> was written.</summary>
        public void Wrote(long revision)
        {
            lock (owner._gate)
            {
                Delivered = revision;
                owner.Signal();
            }
        }

        public void Dispose()
        {
            lock (owner._gate)
            {
                if (owner._open.Remove(this))
                {
                    owner.Signal();
                }
            }
        }
    }
}
