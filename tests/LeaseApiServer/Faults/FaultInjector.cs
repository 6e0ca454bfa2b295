namespace LeaderSidecar.Testing.LeaseApi.Faults;

/// <summary>
/// Faults a test switches on and off while the server runs; every method is thread-safe and takes effect for
/// the next request. Latency applies first, then hangs, then forced errors, all before authentication.
/// </summary>
public sealed class FaultInjector
{
    private readonly Lock _gate = new();
    private readonly List<(RequestFilter Filter, TimeSpan Delay)> _latencies = [];
    private readonly List<ErrorRule> _errors = [];
    private readonly List<HangRule> _hangs = [];
    private readonly List<(RequestFilter Filter, long Bytes)> _endlessLines = [];
    private int _hungRequests;
    private long _endlessLineBytes;

    /// <summary>While true, new connections are closed as soon as they are accepted, as if the API server
    /// were down behind a load balancer. Open connections stay (use <c>RestartAsync</c> to cut them).</summary>
    public bool RefuseConnections { get; set; }

    /// <summary>Requests currently held by a <see cref="Hang"/> (watch streams held mid-stream included).</summary>
    public int HungRequests => Volatile.Read(ref _hungRequests);

    /// <summary>Delays matching requests; delays of several matching rules add up. Dispose to remove.</summary>
    public IDisposable AddLatency(TimeSpan delay, RequestFilter? filter = null)
    {
        var rule = (filter ?? RequestFilter.Any, delay);
        lock (_gate)
        {
            _latencies.Add(rule);
        }

        return new Removal(() =>
        {
            lock (_gate)
            {
                _latencies.Remove(rule);
            }
        });
    }

    /// <summary>Answers the next <paramref name="count"/> matching requests with <paramref name="response"/>.
    /// Rules are used in the order they were added.</summary>
    public void FailNext(int count, FaultResponse response, RequestFilter? filter = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        AddError(new ErrorRule(filter ?? RequestFilter.Any, response, count));
    }

    /// <summary>Answers every matching request with <paramref name="response"/> until disposed.</summary>
    public IDisposable FailAll(FaultResponse response, RequestFilter? filter = null)
    {
        var rule = new ErrorRule(filter ?? RequestFilter.Any, response, int.MaxValue);
        AddError(rule);
        return new Removal(() =>
        {
            lock (_gate)
            {
                _errors.Remove(rule);
            }
        });
    }

    /// <summary>
    /// Holds matching requests unanswered — and stops delivering events on matching open watches — until the
    /// returned handle is disposed or the client gives up: a network partition of one client when filtered
    /// by its token.
    /// </summary>
    public IDisposable Hang(RequestFilter? filter = null)
    {
        var hang = new HangRule(filter ?? RequestFilter.Any);
        lock (_gate)
        {
            _hangs.Add(hang);
        }

        return new Removal(() =>
        {
            lock (_gate)
            {
                _hangs.Remove(hang);
            }

            hang.Released.TrySetResult();
        });
    }

    /// <summary>Bytes of endless watch lines written so far (see <see cref="StreamEndlessLine"/>).</summary>
    public long EndlessLineBytesSent => Interlocked.Read(ref _endlessLineBytes);

    /// <summary>
    /// Answers matching (authorized) watches with 200 and then one event line that never ends: up to
    /// <paramref name="bytes"/> without a newline, as a broken proxy or a hostile server might send,
    /// after which the stream stays open until the client leaves. Dispose to remove.
    /// </summary>
    public IDisposable StreamEndlessLine(long bytes = long.MaxValue, RequestFilter? filter = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(bytes, 1);
        var rule = (filter ?? RequestFilter.Any, bytes);
        lock (_gate)
        {
            _endlessLines.Add(rule);
        }

        return new Removal(() =>
        {
            lock (_gate)
            {
                _endlessLines.Remove(rule);
            }
        });
    }

    /// <summary>Removes every latency, error, hang and endless-line rule and releases hung requests.</summary>
    public void Clear()
    {
        HangRule[] hangs;
        lock (_gate)
        {
            _latencies.Clear();
            _errors.Clear();
            _endlessLines.Clear();
            hangs = [.. _hangs];
            _hangs.Clear();
        }

        foreach (var hang in hangs)
        {
            hang.Released.TrySetResult();
        }

        RefuseConnections = false;
    }

    /// <summary>Applies latency and hangs to a request; returns the forced answer, if any.</summary>
    internal async Task<FaultResponse?> ApplyAsync(ApiVerb verb, string? token, string? leaseName, CancellationToken cancellationToken)
    {
        TimeSpan delay;
        lock (_gate)
        {
            delay = _latencies
                .Where(rule => rule.Filter.Matches(verb, token, leaseName))
                .Aggregate(TimeSpan.Zero, (sum, rule) => sum + rule.Delay);
        }

        if (delay > TimeSpan.Zero)
        {
            await Task.Delay(delay, cancellationToken);
        }

        await WaitWhileHungAsync(verb, token, leaseName, cancellationToken);

        lock (_gate)
        {
            var rule = _errors.FirstOrDefault(rule => rule.Filter.Matches(verb, token, leaseName));
            if (rule is null)
            {
                return null;
            }

            if (--rule.Remaining == 0)
            {
                _errors.Remove(rule);
            }

            return rule.Response;
        }
    }

    /// <summary>How many bytes of endless line a watch gets instead of events, if a rule matches.</summary>
    internal long? EndlessLineFor(string? token, string? leaseName)
    {
        lock (_gate)
        {
            return _endlessLines.Where(rule => rule.Filter.Matches(ApiVerb.Watch, token, leaseName)).Select(rule => (long?)rule.Bytes).FirstOrDefault();
        }
    }

    internal void CountEndlessLineBytes(int bytes) => Interlocked.Add(ref _endlessLineBytes, bytes);

    internal async Task WaitWhileHungAsync(ApiVerb verb, string? token, string? leaseName, CancellationToken cancellationToken)
    {
        while (true)
        {
            HangRule? hang;
            lock (_gate)
            {
                hang = _hangs.FirstOrDefault(hang => hang.Filter.Matches(verb, token, leaseName));
            }

            if (hang is null)
            {
                return;
            }

            Interlocked.Increment(ref _hungRequests);
            try
            {
                await hang.Released.Task.WaitAsync(cancellationToken);
            }
            finally
            {
                Interlocked.Decrement(ref _hungRequests);
            }
        }
    }

    private void AddError(ErrorRule rule)
    {
        lock (_gate)
        {
            _errors.Add(rule);
        }
    }

    private sealed class ErrorRule(RequestFilter filter, FaultResponse response, int remaining)
    {
        public RequestFilter Filter { get; } = filter;

        public FaultResponse Response { get; } = response;

        public int Remaining { get; set; } = remaining;
    }

    private sealed class HangRule(RequestFilter filter)
    {
        public RequestFilter Filter { get; } = filter;

        public TaskCompletionSource Released { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private sealed class Removal(Action remove) : IDisposable
    {
        private Action? _remove = remove;

        public void Dispose() => Interlocked.Exchange(ref _remove, null)?.Invoke();
    }
}
