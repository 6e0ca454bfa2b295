using System.Runtime.CompilerServices;
using System.Threading.Channels;
using LeaderSidecar.Election;

namespace LeaderSidecar.Tests.Election;

/// <summary>
/// A lease store in memory with the same compare-and-swap rules as the real ones, plus switches to
/// make requests fail or hang. Requests complete synchronously unless told to hang.
/// </summary>
internal sealed class InMemoryLeaseStore : ILeaseStore
{
    private readonly Lock _gate = new();
    private readonly List<Channel<LeaseSnapshot?>> _watchers = [];
    private readonly Dictionary<string, int> _requests = [];
    private LeaseSnapshot? _lease;
    private long _version;
    private LeaseStoreFailure? _failure;

    public string Description => "in-memory lease";

    /// <summary>When set, every request fails with this reason until cleared.</summary>
    public LeaseStoreFailure? FailWith
    {
        get { lock (_gate) { return _failure; } }
        set { lock (_gate) { _failure = value; } }
    }

    /// <summary>When set, every request waits until its token is cancelled.</summary>
    public bool Hang { get; set; }

    /// <summary>When set, <see cref="WatchAsync"/> fails at once.</summary>
    public bool WatchBroken { get; set; }

    /// <summary>Runs just before a create or update is applied, to let another writer win the race.</summary>
    public Action<string>? BeforeWrite { get; set; }

    /// <summary>While true, writes land but their answers are lost (the client sees a timeout).</summary>
    public bool LoseAnswers { get; set; }

    public LeaseSnapshot? Lease
    {
        get { lock (_gate) { return _lease; } }
    }

    public int Requests(string verb)
    {
        lock (_gate)
        {
            return _requests.GetValueOrDefault(verb);
        }
    }

    public async Task<LeaseSnapshot?> GetAsync(CancellationToken cancellationToken)
    {
        await Enter("get", cancellationToken);
        return Lease;
    }

    public async Task<LeaseSnapshot> CreateAsync(LeaseRecord record, CancellationToken cancellationToken)
    {
        await Enter("create", cancellationToken);
        BeforeWrite?.Invoke("create");
        lock (_gate)
        {
            if (_lease is not null)
            {
                throw new LeaseStoreException(LeaseStoreFailure.Conflict, "already exists");
            }

            return Answer(Store(new LeaseSnapshot(record, "", Guid.NewGuid().ToString())));
        }
    }

    public async Task<LeaseSnapshot> UpdateAsync(LeaseSnapshot current, LeaseRecord record, CancellationToken cancellationToken)
    {
        await Enter("update", cancellationToken);
        BeforeWrite?.Invoke("update");
        lock (_gate)
        {
            if (_lease is null)
            {
                throw new LeaseStoreException(LeaseStoreFailure.NotFound, "not found");
            }

            if (_lease.Version != current.Version)
            {
                throw new LeaseStoreException(LeaseStoreFailure.Conflict, "the object has been modified");
            }

            // A hand-over request survives a write in its term and goes with the next acquisition.
            var handOver = record.LeaseTransitions == _lease.Record.LeaseTransitions ? _lease.HandOver : null;
            return Answer(Store(_lease with { Record = record, HandOver = handOver }));
        }
    }

    private LeaseSnapshot Answer(LeaseSnapshot written) =>
        LoseAnswers ? throw new LeaseStoreException(LeaseStoreFailure.Timeout, "the answer was lost") : written;

    /// <summary>Writes the record as an operator would, bypassing compare-and-swap.</summary>
    public LeaseSnapshot Overwrite(LeaseRecord record)
    {
        lock (_gate)
        {
            return Store(new LeaseSnapshot(record, "", _lease?.Uid ?? Guid.NewGuid().ToString()));
        }
    }

    /// <summary>Sets (or removes) the hand-over request beside the record, as an operator's annotation does: a new version, the same record.</summary>
    public LeaseSnapshot Annotate(HandOverRequest? request)
    {
        lock (_gate)
        {
            return Store(_lease! with { HandOver = request });
        }
    }

    public void Delete()
    {
        lock (_gate)
        {
            _lease = null;
            _version++;
            Notify(null);
        }
    }

    /// <summary>Ends every open watch with an error, as a dropped connection would.</summary>
    public void DropWatches()
    {
        lock (_gate)
        {
            foreach (var watcher in _watchers)
            {
                watcher.Writer.TryComplete(new LeaseStoreException(LeaseStoreFailure.Unavailable, "watch dropped"));
            }

            _watchers.Clear();
        }
    }

    public async IAsyncEnumerable<LeaseSnapshot?> WatchAsync([EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await Enter("watch", cancellationToken);
        if (WatchBroken)
        {
            throw new LeaseStoreException(LeaseStoreFailure.Unavailable, "watch refused");
        }

        var channel = Channel.CreateUnbounded<LeaseSnapshot?>();
        lock (_gate)
        {
            channel.Writer.TryWrite(_lease);
            _watchers.Add(channel);
        }

        try
        {
            await foreach (var lease in channel.Reader.ReadAllAsync(cancellationToken))
            {
                yield return lease;
            }
        }
        finally
        {
            lock (_gate)
            {
                _watchers.Remove(channel);
            }
        }
    }

    private LeaseSnapshot Store(LeaseSnapshot lease)
    {
        _version++;
        _lease = lease with { Version = _version.ToString(System.Globalization.CultureInfo.InvariantCulture) };
        Notify(_lease);
        return _lease;
    }

    private void Notify(LeaseSnapshot? lease)
    {
        foreach (var watcher in _watchers)
        {
            watcher.Writer.TryWrite(lease);
        }
    }

    private async Task Enter(string verb, CancellationToken cancellationToken)
    {
        LeaseStoreFailure? failure;
        lock (_gate)
        {
            _requests[verb] = _requests.GetValueOrDefault(verb) + 1;
            failure = _failure;
        }

        if (Hang)
        {
            await Task.Delay(Timeout.Infinite, cancellationToken);
        }

        cancellationToken.ThrowIfCancellationRequested();
        if (failure is { } reason)
        {
            throw new LeaseStoreException(reason, $"injected {reason}");
        }
    }
}
