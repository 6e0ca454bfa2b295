using System.Globalization;

namespace LeaderSidecar.Testing.LeaseApi.Storage;

/// <summary>
/// The server's etcd: Leases by namespace and name, one revision counter shared by every object (so a
/// resourceVersion orders all writes, as etcd's revision does), and a bounded history of changes that
/// watches resume from. Methods here bypass HTTP, auth and faults but still bump the revision and notify
/// watchers, so a test can rewrite a Lease "by hand" the way <c>kubectl edit</c> would.
/// </summary>
public sealed class LeaseStore
{
    private readonly Lock _gate = new();
    private readonly Dictionary<(string Namespace, string Name), Lease> _leases = [];
    private readonly Queue<WatchEvent> _history = new();
    private readonly List<WatchSubscription> _subscriptions = [];
    private readonly TimeProvider _time;
    private readonly int _historyLimit;
    private long _revision;
    private long _compactedRevision;

    internal LeaseStore(TimeProvider time, long initialRevision, int historyLimit)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(initialRevision);
        ArgumentOutOfRangeException.ThrowIfLessThan(historyLimit, 1);
        _time = time;
        _historyLimit = historyLimit;
        _revision = initialRevision;
        _compactedRevision = initialRevision;
    }

    /// <summary>The newest revision: the resourceVersion of the last write to any Lease.</summary>
    public long Revision
    {
        get
        {
            lock (_gate)
            {
                return _revision;
            }
        }
    }

    /// <summary>Watches from a resourceVersion older than this answer 410 Expired.</summary>
    public long CompactedRevision
    {
        get
        {
            lock (_gate)
            {
                return _compactedRevision;
            }
        }
    }

    internal int OpenWatchCount
    {
        get
        {
            lock (_gate)
            {
                return _subscriptions.Count;
            }
        }
    }

    public Lease? Get(string namespaceName, string name)
    {
        lock (_gate)
        {
            return _leases.GetValueOrDefault((namespaceName, name));
        }
    }

    public IReadOnlyList<Lease> List(string namespaceName) => ListWithRevision(namespaceName).Items;

    /// <summary>Creates or replaces a Lease unconditionally (no compare-and-swap).</summary>
    public Lease Put(Lease lease)
    {
        ArgumentNullException.ThrowIfNull(lease);
        return Apply(lease.Metadata.Namespace, lease.Metadata.Name, _ => LeaseChange.Write(lease))!;
    }

    /// <summary>Rewrites the spec of an existing Lease, e.g. to hand it to another holder.</summary>
    /// <exception cref="KeyNotFoundException">The Lease does not exist.</exception>
    public Lease Update(string namespaceName, string name, Func<LeaseSpec, LeaseSpec> change)
    {
        ArgumentNullException.ThrowIfNull(change);
        return Apply(namespaceName, name, current => current is null
            ? throw new KeyNotFoundException($"lease {namespaceName}/{name} does not exist")
            : LeaseChange.Write(current with { Spec = change(current.Spec) }))!;
    }

    /// <returns>Whether the Lease existed.</returns>
    public bool Delete(string namespaceName, string name)
    {
        var existed = false;
        Apply(namespaceName, name, current =>
        {
            existed = current is not null;
            return existed ? LeaseChange.Remove : LeaseChange.None;
        });
        return existed;
    }

    /// <summary>Takes the next revision for a write of another kind of object (etcd has one counter for all).</summary>
    internal long NextRevision()
    {
        lock (_gate)
        {
            return ++_revision;
        }
    }

    /// <summary>Forgets the whole change history, as an etcd compaction at the current revision does: a
    /// watch may then resume only from the current revision on.</summary>
    public void CompactHistory()
    {
        lock (_gate)
        {
            _history.Clear();
            _compactedRevision = _revision;
        }
    }

    /// <summary>Removes every Lease without telling watchers, as a wiped etcd would.</summary>
    internal void Wipe()
    {
        lock (_gate)
        {
            _leases.Clear();
            _history.Clear();
            _compactedRevision = _revision;
        }
    }

    internal (IReadOnlyList<Lease> Items, long Revision) ListWithRevision(string namespaceName)
    {
        lock (_gate)
        {
            var items = _leases.Values
                .Where(lease => lease.Metadata.Namespace == namespaceName)
                .OrderBy(lease => lease.Metadata.Name, StringComparer.Ordinal)
                .ToList();
            return (items, _revision);
        }
    }

    /// <summary>
    /// The one write path: <paramref name="decide"/> sees the current Lease (or null) under the store lock
    /// and says what to do, which makes compare-and-swap atomic. The store owns uid, resourceVersion and
    /// creationTimestamp. Returns the written or deleted Lease, or the current one when nothing changed.
    /// </summary>
    internal Lease? Apply(string namespaceName, string name, Func<Lease?, LeaseChange> decide)
    {
        lock (_gate)
        {
            var key = (namespaceName, name);
            var current = _leases.GetValueOrDefault(key);
            var change = decide(current);
            switch (change.Kind)
            {
                case LeaseChangeKind.Write:
                    var revision = ++_revision;
                    var metadata = change.Next!.Metadata with
                    {
                        Namespace = namespaceName,
                        Name = name,
                        Uid = current?.Metadata.Uid ?? Guid.NewGuid().ToString(),
                        ResourceVersion = revision.ToString(CultureInfo.InvariantCulture),
                        CreationTimestamp = current?.Metadata.CreationTimestamp ?? WholeSeconds(_time.GetUtcNow()),
                    };
                    var written = new Lease(metadata, MicroTime.Truncate(change.Next.Spec));
                    _leases[key] = written;
                    Record(new WatchEvent(current is null ? WatchEventType.Added : WatchEventType.Modified, written));
                    return written;

                case LeaseChangeKind.Remove when current is not null:
                    var deleted = current with
                    {
                        Metadata = current.Metadata with
                        {
                            ResourceVersion = (++_revision).ToString(CultureInfo.InvariantCulture),
                        },
                    };
                    _leases.Remove(key);
                    Record(new WatchEvent(WatchEventType.Deleted, deleted));
                    return deleted;

                default:
                    return current;
            }
        }
    }

    /// <summary>
    /// Opens a watch on a namespace. Without a revision (or with 0) the current Leases come first as ADDED,
    /// as kube-apiserver does; with one, every later change is replayed from history, or the watch is
    /// refused as expired when the history no longer reaches back that far.
    /// </summary>
    internal WatchStart Watch(string namespaceName, long? sinceRevision)
    {
        lock (_gate)
        {
            List<WatchEvent> initial;
            if (sinceRevision is null or 0)
            {
                initial = _leases.Values
                    .Where(lease => lease.Metadata.Namespace == namespaceName)
                    .OrderBy(lease => lease.Metadata.Name, StringComparer.Ordinal)
                    .Select(lease => new WatchEvent(WatchEventType.Added, lease))
                    .ToList();
            }
            else if (sinceRevision < _compactedRevision)
            {
                return new WatchStart(null, [], sinceRevision.Value, _compactedRevision);
            }
            else
            {
                initial = _history
                    .Where(e => e.Revision > sinceRevision && e.Lease.Metadata.Namespace == namespaceName)
                    .ToList();
            }

            var start = Math.Max(_revision, sinceRevision ?? 0);
            var subscription = new WatchSubscription(namespaceName, start, Unsubscribe);
            _subscriptions.Add(subscription);
            return new WatchStart(subscription, initial, sinceRevision ?? 0, _compactedRevision);
        }
    }

    internal void Broadcast(WatchSignal signal)
    {
        lock (_gate)
        {
            foreach (var subscription in _subscriptions)
            {
                subscription.Post(signal);
            }
        }
    }

    private void Record(WatchEvent change)
    {
        _history.Enqueue(change);
        while (_history.Count > _historyLimit)
        {
            _compactedRevision = _history.Dequeue().Revision;
        }

        var signal = new WatchSignal.Change(change);
        foreach (var subscription in _subscriptions)
        {
            if (subscription.Namespace == change.Lease.Metadata.Namespace)
            {
                subscription.Post(signal);
            }
        }
    }

    private void Unsubscribe(WatchSubscription subscription)
    {
        lock (_gate)
        {
            _subscriptions.Remove(subscription);
        }
    }

    private static DateTimeOffset WholeSeconds(DateTimeOffset time) =>
        new(time.UtcTicks - (time.UtcTicks % TimeSpan.TicksPerSecond), TimeSpan.Zero);
}

internal enum LeaseChangeKind
{
    None,
    Write,
    Remove,
}

/// <summary>The decision a write makes about the current Lease.</summary>
internal sealed record LeaseChange(LeaseChangeKind Kind, Lease? Next)
{
    public static LeaseChange None { get; } = new(LeaseChangeKind.None, null);

    public static LeaseChange Remove { get; } = new(LeaseChangeKind.Remove, null);

    public static LeaseChange Write(Lease next) => new(LeaseChangeKind.Write, next);
}
