namespace LeaderSidecar.Surfaces.Grpc;

/// <summary>
/// The open <c>Watch</c> streams and the newest revision each has written: a metric, the drain's
/// sign that no app is listening any more, and the way shutdown makes sure every stream has
/// carried the step-down before the lease is released.
/// </summary>
internal sealed class WatchStreams
{
    /// <summary>
    /// The most streams open at once. Connections and streams per connection are bounded by the
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
    public Stream? TryOpen()
    {
        var stream = new Stream(this);
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
    internal sealed class Stream(WatchStreams owner) : IDisposable
    {
        /// <summary>The newest revision written to this stream.</summary>
        public long Delivered { get; private set; }

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
