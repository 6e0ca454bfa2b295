using LeaderSidecar.Election;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace LeaderSidecar.Tests.Election;

public sealed class LeadershipStateTests : IDisposable
{
    private readonly FakeTimeProvider _time = new();
    private readonly LeadershipState _state;

    public LeadershipStateTests()
    {
        _state = new LeadershipState(new ElectionOptions { Identity = "me", LeaseName = "app" }, _time, NullLogger<LeadershipState>.Instance);
    }

    [Fact]
    public void Starts_unknown_at_revision_one()
    {
        Assert.Equal(Role.Unknown, _state.Current.Role);
        Assert.Equal(1, _state.Current.Revision);
        Assert.Equal("me", _state.Current.Identity);
    }

    [Fact]
    public void A_leader_status_is_demoted_at_its_claim_deadline_by_itself()
    {
        _state.Publish(Leader(TimeSpan.FromSeconds(10)));
        Assert.True(_state.Current.IsLeader);

        _time.Advance(TimeSpan.FromSeconds(9.999));
        Assert.True(_state.Current.IsLeader);
        _time.Advance(TimeSpan.FromMilliseconds(1));

        Assert.Equal(Role.Unknown, _state.Current.Role);
        Assert.Equal(3, _state.Current.Revision);
    }

    [Fact]
    public void A_claim_timer_that_fires_early_is_armed_again_so_push_surfaces_are_demoted()
    {
        // Timers run on a coarser clock than the deadline and fire up to a few ms early.
        var time = new EarlyTimers(_time);
        using var state = new LeadershipState(new ElectionOptions { Identity = "me", LeaseName = "app" }, time, NullLogger<LeadershipState>.Instance);
        var pushed = new List<LeadershipStatus>();
        state.Subscribe(pushed.Add);
        state.Publish(Leader(TimeSpan.FromSeconds(10)));

        _time.Advance(TimeSpan.FromSeconds(9.998));
        Assert.Equal(Role.Leader, pushed[^1].Role);

        // Nobody reads Current (the elector's loop is wedged): only the timer can demote.
        _time.Advance(TimeSpan.FromMilliseconds(2));
        Assert.Equal(Role.Unknown, pushed[^1].Role);
    }

    /// <summary>Timers that fire 2 ms early (at most half their due time).</summary>
    private sealed class EarlyTimers(FakeTimeProvider inner) : TimeProvider
    {
        public override long GetTimestamp() => inner.GetTimestamp();

        public override long TimestampFrequency => inner.TimestampFrequency;

        public override DateTimeOffset GetUtcNow() => inner.GetUtcNow();

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period) =>
            inner.CreateTimer(callback, state, dueTime - TimeSpan.FromTicks(Math.Min(TimeSpan.FromMilliseconds(2).Ticks, dueTime.Ticks / 2)), period);
    }

    [Fact]
    public void An_already_expired_leader_status_is_never_shown()
    {
        _state.Publish(Leader(TimeSpan.Zero));

        Assert.False(_state.Current.IsLeader);
    }

    [Fact]
    public async Task A_slow_watcher_skips_to_the_newest_status_in_revision_order()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await using var watch = _state.WatchAsync(cts.Token).GetAsyncEnumerator(cts.Token);
        Assert.True(await watch.MoveNextAsync());
        Assert.Equal(1, watch.Current.Revision);

        for (var i = 0; i < 100; i++)
        {
            _state.Publish(_state.Current with { Role = Role.Follower, Holder = $"h{i}" });
        }

        Assert.True(await watch.MoveNextAsync());
        Assert.Equal(101, watch.Current.Revision);
        Assert.Equal("h99", watch.Current.Holder);

        _state.Publish(_state.Current with { Holder = "last" });
        Assert.True(await watch.MoveNextAsync());
        Assert.Equal(102, watch.Current.Revision);
    }

    [Fact]
    public void The_role_history_never_understates_leadership_and_ends_an_expired_claim_at_its_deadline()
    {
        var log = new RoleChangeLog();
        using var state = new LeadershipState(new ElectionOptions { Identity = "me", LeaseName = "app" }, _time, log);
        _time.Advance(TimeSpan.FromSeconds(1));
        var start = _time.GetTimestamp();

        state.Publish(state.Current with { Role = Role.Leader, Holder = "me", Term = 4, ClaimDeadline = start + (10 * _time.TimestampFrequency) });
        _time.Advance(TimeSpan.FromSeconds(25));
        Assert.Equal(Role.Unknown, state.Current.Role);

        Assert.Equal([("Unknown", "Leader", start), ("Leader", "Unknown", start + (10 * _time.TimestampFrequency))], log.Changes);
    }

    [Fact]
    public void A_leader_under_a_new_term_or_lease_is_a_new_claim_in_the_history()
    {
        var log = new RoleChangeLog();
        using var state = new LeadershipState(new ElectionOptions { Identity = "me", LeaseName = "app" }, _time, log);
        var deadline = _time.GetTimestamp() + (10 * _time.TimestampFrequency);

        state.Publish(state.Current with { Role = Role.Leader, Holder = "me", Term = 4, LeaseUid = "old", ClaimDeadline = deadline });
        state.Publish(state.Current with { ClaimDeadline = deadline + 1 });
        state.Publish(state.Current with { Term = 0, LeaseUid = "new" });

        Assert.Equal(["Unknown->Leader", "Leader->Leader"], log.Changes.Select(c => $"{c.From}->{c.To}"));
    }

    /// <summary>Keeps the RoleChanged events' from, to and monotonic timestamp.</summary>
    private sealed class RoleChangeLog : Microsoft.Extensions.Logging.ILogger<LeadershipState>
    {
        public List<(string From, string To, long Monotonic)> Changes { get; } = [];

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(Microsoft.Extensions.Logging.LogLevel logLevel) => true;

        public void Log<TState>(Microsoft.Extensions.Logging.LogLevel logLevel, Microsoft.Extensions.Logging.EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (eventId.Id == 100 && state is IReadOnlyList<KeyValuePair<string, object?>> fields)
            {
                var values = fields.ToDictionary(f => f.Key, f => f.Value);
                Changes.Add((values["From"]!.ToString()!, values["To"]!.ToString()!, (long)values["MonotonicTimestamp"]!));
            }
        }
    }

    private LeadershipStatus Leader(TimeSpan remaining) => _state.Current with
    {
        Role = Role.Leader,
        Holder = "me",
        Term = 4,
        ClaimDeadline = _time.GetTimestamp() + (long)(remaining.TotalSeconds * _time.TimestampFrequency),
    };

    public void Dispose() => _state.Dispose();
}
