using System.Diagnostics;

namespace LeaderSidecar.Bench;

/// <summary>
/// The roles one observer saw, each stamped with <see cref="Stopwatch.GetTimestamp"/> the moment it
/// arrived, so a trial can ask "when did this one first say LEADER after the signal?".
/// </summary>
internal sealed class RoleTimeline
{
    private readonly Lock _lock = new();
    private readonly List<(long At, string Role)> _entries = [];
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public string? Current
    {
        get
        {
            lock (_lock)
            {
                return _entries.Count == 0 ? null : _entries[^1].Role;
            }
        }
    }

    public void Add(string role)
    {
        var at = Stopwatch.GetTimestamp();
        TaskCompletionSource changed;
        lock (_lock)
        {
            _entries.Add((at, role));
            changed = _changed;
            _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        changed.TrySetResult();
    }

    /// <summary>The time stamp of the first entry at or after <paramref name="since"/> that matches.</summary>
    public async Task<long> FirstAsync(Func<string, bool> match, long since, CancellationToken cancellationToken)
    {
        while (true)
        {
            Task changed;
            lock (_lock)
            {
                foreach (var (at, role) in _entries)
                {
                    if (at >= since && match(role))
                    {
                        return at;
                    }
                }

                changed = _changed.Task;
            }

            await changed.WaitAsync(cancellationToken);
        }
    }

    public Task<long> FirstAsync(string role, long since, CancellationToken cancellationToken) =>
        FirstAsync(r => r == role, since, cancellationToken);
}
