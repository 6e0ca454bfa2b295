namespace LeaderSidecar.Surfaces.Grpc;

/// <summary>
/// Counts the open <c>Watch</c> streams: a metric, and the drain's sign that no app is listening
/// any more.
/// </summary>
internal sealed class WatchStreams
{
    private readonly Lock _gate = new();
    private int _count;
    private TaskCompletionSource _none = Completed();

    /// <summary>Open streams now.</summary>
    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _count;
            }
        }
    }

    /// <summary>Completes when no stream is open (at once if none is).</summary>
    public Task WhenNone
    {
        get
        {
            lock (_gate)
            {
                return _none.Task;
            }
        }
    }

    /// <summary>Counts one stream until the returned handle is disposed.</summary>
    public IDisposable Open()
    {
        lock (_gate)
        {
            if (_count++ == 0)
            {
                _none = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            }
        }

        return new Handle(this);
    }

    private void Close()
    {
        lock (_gate)
        {
            if (--_count == 0)
            {
                _none.TrySetResult();
            }
        }
    }

    private static TaskCompletionSource Completed()
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        done.SetResult();
        return done;
    }

    private sealed class Handle(WatchStreams owner) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                owner.Close();
            }
        }
    }
}
