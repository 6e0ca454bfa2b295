using LeaderSidecar.Election;
using Microsoft.Extensions.Time.Testing;

namespace LeaderSidecar.Tests.Election;

/// <summary>
/// The whole loop: several candidates on one store, driven by the watch. The fake clock only moves
/// where a test says so; waits are on conditions with a deadline.
/// </summary>
public sealed class LeaderElectorLoopTests : IDisposable
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 25, 12, 0, 0, TimeSpan.Zero));
    private readonly InMemoryLeaseStore _store = new();
    private readonly List<Candidate> _candidates = [];

    [Fact]
    public async Task Three_candidates_elect_exactly_one_leader()
    {
        var all = StartCandidates("a", "b", "c");

        await Eventually.Holds(() => all.Count(c => c.Status.IsLeader) == 1 && all.Count(c => c.Status.Role == Role.Follower) == 2, "one leader and two followers");

        var leader = all.Single(c => c.Status.IsLeader);
        Assert.All(all, c => Assert.Equal(leader.Options.Identity, c.Status.Holder));
        Assert.All(all, c => Assert.Equal(0, c.Status.Term));
    }

    [Fact]
    public async Task A_stopped_leader_releases_after_its_surfaces_stop_and_a_follower_takes_over_through_the_watch()
    {
        var all = StartCandidates("a", "b", "c");
        await Eventually.Holds(() => all.Count(c => c.Status.IsLeader) == 1 && all.All(c => c.Status.Role != Role.Unknown), "a leader is elected");
        var leader = all.Single(c => c.Status.IsLeader);
        var followers = all.Where(c => c != leader).ToList();

        var statusAtRelease = (LeadershipStatus?)null;
        _store.BeforeWrite = _ => statusAtRelease ??= leader.Status;
        await leader.Elector.StopAsync(CancellationToken.None);
        await leader.Loop!;

        Assert.NotNull(statusAtRelease);
        Assert.False(statusAtRelease.IsLeader);
        _store.BeforeWrite = null;

        // The clock does not move: only the watch can tell the followers.
        await Eventually.Holds(() => followers.Count(c => c.Status.IsLeader) == 1, "a follower leads");
        Assert.False(leader.Status.IsLeader);
        Assert.Equal(1, followers.Single(c => c.Status.IsLeader).Status.Term);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Stop_and_resign_run_their_hook_between_stepping_down_and_releasing(bool resign)
    {
        var a = StartCandidates("a")[0];
        await Eventually.Holds(() => a.Status.IsLeader, "a leads");
        var during = ((LeadershipStatus?)null, (string?)null);
        Task BeforeRelease(CancellationToken _)
        {
            during = (a.Status, _store.Lease!.Record.HolderIdentity);
            return Task.CompletedTask;
        }

        await (resign
            ? a.Elector.ResignAsync(TimeSpan.FromMinutes(1), BeforeRelease, CancellationToken.None)
            : a.Elector.StopAsync(BeforeRelease, CancellationToken.None));

        Assert.False(during.Item1!.IsLeader);
        Assert.Equal("a", during.Item2);
        Assert.Equal("", _store.Lease!.Record.HolderIdentity);
        Assert.NotEqual(Role.Leader, a.Status.Role);
    }

    [Fact]
    public async Task A_resigned_leader_holds_off_and_then_campaigns_again()
    {
        var a = StartCandidates("a")[0];
        await Eventually.Holds(() => a.Status.IsLeader, "a leads");

        await a.Elector.ResignAsync(TimeSpan.FromSeconds(30), CancellationToken.None);
        Assert.False(a.Status.IsLeader);
        Assert.Equal("", _store.Lease!.Record.HolderIdentity);

        _time.Advance(TimeSpan.FromSeconds(29));
        await Eventually.Holds(() => a.Status.Role == Role.Follower, "a follows");
        Assert.Equal("", _store.Lease!.Record.HolderIdentity);

        await Eventually.Holds(() => a.Status.IsLeader, "a leads again after its hold-off", _time, TimeSpan.FromMilliseconds(200));
        Assert.Equal(1, a.Status.Term);
    }

    [Fact]
    public async Task A_crashed_leader_is_replaced_after_the_lease_duration()
    {
        var all = StartCandidates("a", "b");
        await Eventually.Holds(() => all.Count(c => c.Status.IsLeader) == 1 && all.All(c => c.Status.Role != Role.Unknown), "a leader is elected");
        var leader = all.Single(c => c.Status.IsLeader);
        var follower = all.Single(c => c != leader);

        await leader.CrashAsync();
        Assert.Equal(leader.Options.Identity, _store.Lease!.Record.HolderIdentity);

        await Eventually.Holds(() => follower.Status.IsLeader, "the follower takes the expired lease", _time, TimeSpan.FromMilliseconds(250));
        Assert.Equal(1, follower.Status.Term);
    }

    [Fact]
    public async Task A_candidate_that_lost_the_race_to_create_the_lease_takes_it_at_once_when_the_winner_releases()
    {
        // The watch is not up yet, so b reads, finds nothing, and loses the race to create the lease.
        _store.WatchBroken = true;
        _store.BeforeWrite = verb =>
        {
            if (verb == "create" && _store.Lease is null)
            {
                _store.Overwrite(new LeaseRecord("x", 15, _time.GetUtcNow(), _time.GetUtcNow(), 0));
            }
        };
        var b = StartCandidates("b")[0];
        await Eventually.Holds(() => b.Status.Holder == "x", "b lost the race and follows x");
        _store.BeforeWrite = null;
        _store.WatchBroken = false;

        // Far less than a retry period: the watch comes back and tells b that x holds the lease.
        await Eventually.Holds(() => _store.Requests("watch") > 1 && b.Elector.BusyFor == TimeSpan.Zero, "b watches again", _time, TimeSpan.FromMilliseconds(50));
        Assert.True(_time.GetUtcNow() - _store.Lease!.Record.RenewTime < b.Options.RetryPeriod);
        _store.Overwrite(new LeaseRecord("", 15, null, null, 0));

        // The clock stands still: b takes the release it watched now, not after its retry period.
        await Eventually.Holds(() => b.Status.IsLeader, "b takes the released lease");
        Assert.Equal(1, b.Status.Term);
    }

    [Fact]
    public async Task Without_a_watch_followers_poll_and_still_take_over()
    {
        _store.WatchBroken = true;
        var all = StartCandidates("a", "b");
        await Eventually.Holds(() => all.Count(c => c.Status.IsLeader) == 1 && all.All(c => c.Status.Role != Role.Unknown), "a leader is elected", _time);
        var leader = all.Single(c => c.Status.IsLeader);
        var follower = all.Single(c => c != leader);

        await leader.Elector.StopAsync(CancellationToken.None);

        await Eventually.Holds(() => follower.Status.IsLeader, "the polling follower takes the released lease", _time, TimeSpan.FromMilliseconds(250));
        Assert.True(_store.Requests("get") > 2);
    }

    [Fact]
    public async Task A_follower_that_loses_the_store_says_unknown_and_recovers()
    {
        var all = StartCandidates("a", "b");
        await Eventually.Holds(() => all.Count(c => c.Status.IsLeader) == 1 && all.All(c => c.Status.Role != Role.Unknown), "a leader is elected");
        var follower = all.Single(c => !c.Status.IsLeader);

        _store.FailWith = LeaseStoreFailure.Unavailable;
        _store.WatchBroken = true;
        _store.DropWatches();

        await Eventually.Holds(() => all.All(c => c.Status.Role == Role.Unknown), "nobody can claim anything", _time, TimeSpan.FromMilliseconds(250));

        _store.FailWith = null;
        _store.WatchBroken = false;
        await Eventually.Holds(() => all.Count(c => c.Status.IsLeader) == 1 && all.All(c => c.Status.Role != Role.Unknown), "a leader again", _time, TimeSpan.FromMilliseconds(250));
    }

    [Fact]
    public async Task A_leader_whose_requests_hang_stops_claiming_at_its_deadline()
    {
        var a = StartCandidates("a")[0];
        await Eventually.Holds(() => a.Status.IsLeader, "a leads");
        var deadline = a.Status.ValidUntil!.Value;

        _store.Hang = true;
        await Eventually.Holds(() => !a.Status.IsLeader, "a stops claiming", _time, TimeSpan.FromMilliseconds(100));

        Assert.True(_time.GetUtcNow() >= deadline);
        Assert.True(_time.GetUtcNow() <= deadline.AddSeconds(2.5), "the claim ended within one renew period of its deadline");
    }

    [Fact]
    public async Task A_leader_cut_off_past_its_claim_waits_out_a_takeover_it_missed_when_the_lease_is_then_deleted()
    {
        var a = StartCandidates("a")[0];
        await Eventually.Holds(() => a.Status.IsLeader, "a leads");

        // a is cut off (requests hang, no watch) until its claim has run out, and misses b taking
        // over and the lease then being deleted by hand while b, cut off as well (or blinded by
        // garbage at the key), still claims. Found by the etcd nemesis, seed 606001.
        _store.WatchBroken = true;
        _store.DropWatches();
        _store.Hang = true;
        await Eventually.Holds(() => !a.Status.IsLeader, "a stops claiming", _time, TimeSpan.FromMilliseconds(100));
        var now = _time.GetUtcNow();
        _store.Overwrite(new LeaseRecord("b", 15, now, now, 1));
        _store.Delete();

        // a reads the lease gone. The last record it saw was its own, but its claim had ended, so
        // someone else may hold the lease it missed: it waits a full lease duration, as for anyone.
        var gets = _store.Requests("get");
        _store.Hang = false;
        await Eventually.Holds(() => _store.Requests("get") > gets, "a reads again", _time, TimeSpan.FromMilliseconds(100));
        var sawItGone = _time.GetTimestamp();
        while (_time.GetElapsedTime(sawItGone) < TimeSpan.FromSeconds(14.5))
        {
            await Eventually.Holds(() => a.Status.Role != Role.Unknown, "a has seen the lease gone");
            Assert.NotEqual(Role.Leader, a.Status.Role);
            Assert.Null(_store.Lease);
            _time.Advance(TimeSpan.FromMilliseconds(500));
        }

        await Eventually.Holds(() => a.Status.IsLeader, "a creates the lease after a lease duration", _time, TimeSpan.FromMilliseconds(100));
    }

    private List<Candidate> StartCandidates(params string[] identities)
    {
        var started = identities.Select(id => new Candidate(id, _store, _time)).ToList();
        _candidates.AddRange(started);
        started.ForEach(c => c.Start());
        return started;
    }

    public void Dispose()
    {
        foreach (var candidate in _candidates)
        {
            candidate.Dispose();
        }
    }
}
