using LeaderSidecar.Election;
using Microsoft.Extensions.Time.Testing;

namespace LeaderSidecar.Tests.Election;

/// <summary>
/// The compare-and-swap step and its timing rules, one step at a time on a fake clock: no loop, no
/// sleeps, no real time.
/// </summary>
public sealed class LeaderElectorTests : IDisposable
{
    private static readonly DateTimeOffset Start = new(2026, 11, 25, 12, 0, 0, TimeSpan.Zero);
    private readonly FakeTimeProvider _time = new(Start);
    private readonly InMemoryLeaseStore _store = new();
    private readonly List<Candidate> _candidates = [];

    [Fact]
    public async Task First_candidate_creates_the_lease_and_leads()
    {
        var a = Candidate("a");

        Assert.True(await a.StepAsync());

        var lease = _store.Lease!;
        Assert.Equal(new LeaseRecord("a", 15, Start, Start, 0), lease.Record);
        Assert.Equal(Role.Leader, a.Status.Role);
        Assert.Equal("a", a.Status.Holder);
        Assert.Equal(0, a.Status.Term);
        Assert.Equal(lease.Uid, a.Status.LeaseUid);
        Assert.Equal(Start.AddSeconds(10), a.Status.ValidUntil);
    }

    [Fact]
    public async Task Leader_renews_on_the_fast_path_without_reading()
    {
        var a = Candidate("a");
        await a.StepAsync();
        var gets = _store.Requests("get");

        _time.Advance(TimeSpan.FromSeconds(2));
        Assert.True(await a.StepAsync());

        Assert.Equal(gets, _store.Requests("get"));
        Assert.Equal(new LeaseRecord("a", 15, Start, Start.AddSeconds(2), 0), _store.Lease!.Record);
        Assert.Equal(Start.AddSeconds(12), a.Status.ValidUntil);
        Assert.Equal(0, a.Metrics.SlowPathCount);
    }

    [Fact]
    public async Task A_follower_does_not_take_a_lease_whose_holder_keeps_renewing()
    {
        var a = Candidate("a");
        var b = Candidate("b");
        await a.StepAsync();

        for (var i = 0; i < 30; i++)
        {
            _time.Advance(TimeSpan.FromSeconds(2));
            Assert.True(await a.StepAsync());
            Assert.False(await b.StepAsync());
        }

        Assert.Equal(Role.Follower, b.Status.Role);
        Assert.Equal("a", b.Status.Holder);
        Assert.Equal(0, b.Status.Term);
        Assert.Equal("a", _store.Lease!.Record.HolderIdentity);
    }

    [Fact]
    public async Task Expiry_is_judged_from_when_the_follower_saw_the_record_change_not_from_renewTime()
    {
        var a = Candidate("a");
        var b = Candidate("b");
        await a.StepAsync();

        // b first looks 10 s after a's last renew; it must still wait a full lease duration from then,
        // although renewTime + 15 s has long passed by then on everybody's wall clock.
        _time.Advance(TimeSpan.FromSeconds(10));
        Assert.False(await b.StepAsync());
        _time.Advance(TimeSpan.FromSeconds(14.9));
        Assert.False(await b.StepAsync());
        Assert.Equal("a", _store.Lease!.Record.HolderIdentity);

        _time.Advance(TimeSpan.FromSeconds(0.1));
        Assert.True(await b.StepAsync());

        Assert.Equal("b", _store.Lease!.Record.HolderIdentity);
        Assert.Equal(1, _store.Lease.Record.LeaseTransitions);
        Assert.Equal(1, b.Status.Term);
        Assert.Equal(Role.Leader, b.Status.Role);
    }

    [Fact]
    public async Task A_follower_waits_for_the_duration_in_the_record_not_its_own()
    {
        var a = Candidate("a", new ElectionOptions
        {
            Identity = "a",
            LeaseName = "app",
            LeaseDuration = TimeSpan.FromSeconds(40),
            RenewDeadline = TimeSpan.FromSeconds(30),
        });
        var b = Candidate("b");
        await a.StepAsync();
        Assert.False(await b.StepAsync());

        _time.Advance(TimeSpan.FromSeconds(39));
        Assert.False(await b.StepAsync());

        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.True(await b.StepAsync());
    }

    [Fact]
    public async Task Wall_clock_jumps_on_either_side_do_not_matter()
    {
        var a = Candidate("a");
        var b = Candidate("b");
        a.Clock.WallClockOffset = TimeSpan.FromHours(-3);
        b.Clock.WallClockOffset = TimeSpan.FromDays(2);
        await a.StepAsync();
        Assert.False(await b.StepAsync());

        for (var i = 0; i < 10; i++)
        {
            // Both wall clocks lurch around between steps; renewTime goes backwards and forwards.
            a.Clock.WallClockOffset = TimeSpan.FromHours(i % 2 == 0 ? 5 : -5);
            b.Clock.WallClockOffset = TimeSpan.FromMinutes(i % 2 == 0 ? -30 : 30);
            _time.Advance(TimeSpan.FromSeconds(2));
            Assert.True(await a.StepAsync());
            Assert.False(await b.StepAsync());
        }

        // a goes quiet: b takes over exactly one lease duration after the last change it saw.
        _time.Advance(TimeSpan.FromSeconds(14));
        Assert.False(await b.StepAsync());
        Assert.Equal(Role.Follower, b.Status.Role);
        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.True(await b.StepAsync());
    }

    [Fact]
    public async Task A_conflicting_write_sends_the_leader_down_the_slow_path_once()
    {
        var a = Candidate("a");
        await a.StepAsync();

        // The store moves the version without changing the record (a label edit on a Kubernetes
        // Lease does): a's cached version is stale, the record is still exactly a's last write.
        var current = _store.Lease!;
        _store.Overwrite(current.Record);
        var gets = _store.Requests("get");
        _time.Advance(TimeSpan.FromSeconds(2));

        Assert.True(await a.StepAsync());

        Assert.Equal(1, a.Metrics.SlowPathCount);
        Assert.Equal(gets + 1, _store.Requests("get"));
        Assert.Equal(new LeaseRecord("a", 15, Start, Start.AddSeconds(2), 0), _store.Lease!.Record);
    }

    [Fact]
    public async Task Losing_the_update_race_is_not_leadership_and_is_not_retried_blindly()
    {
        var a = Candidate("a");
        var b = Candidate("b");
        await a.StepAsync();
        await a.Elector.ReleaseAsync(CancellationToken.None);
        var updates = _store.Requests("update");

        // b reads the released lease, then c writes first.
        _store.BeforeWrite = _ =>
        {
            _store.BeforeWrite = null;
            _store.Overwrite(new LeaseRecord("c", 15, Start, Start, 1));
        };
        Assert.False(await b.StepAsync());

        Assert.Equal(updates + 1, _store.Requests("update"));
        Assert.Equal("c", _store.Lease!.Record.HolderIdentity);
        Assert.NotEqual(Role.Leader, b.Status.Role);

        Assert.False(await b.StepAsync());
        Assert.Equal("c", b.Status.Holder);
    }

    [Fact]
    public async Task Losing_the_create_race_is_not_leadership()
    {
        var b = Candidate("b");
        _store.BeforeWrite = _ =>
        {
            _store.BeforeWrite = null;
            _store.Overwrite(new LeaseRecord("c", 15, Start, Start, 0));
        };

        Assert.False(await b.StepAsync());

        Assert.Equal("c", _store.Lease!.Record.HolderIdentity);
        Assert.NotEqual(Role.Leader, b.Status.Role);
    }

    [Fact]
    public async Task Leader_stops_claiming_at_the_renew_deadline_from_the_start_of_its_last_successful_renew()
    {
        var a = Candidate("a");
        await a.StepAsync();
        _time.Advance(TimeSpan.FromSeconds(3));
        Assert.True(await a.StepAsync());

        _store.FailWith = LeaseStoreFailure.ServerError;
        for (var i = 0; i < 4; i++)
        {
            _time.Advance(TimeSpan.FromSeconds(2));
            Assert.False(await a.StepAsync());
            Assert.Equal(Role.Leader, a.Status.Role);
        }

        // Last success started at t=3 s; the claim ends at t=13 s even if nobody calls the elector.
        _time.Advance(TimeSpan.FromSeconds(1.999));
        Assert.Equal(Role.Leader, a.Status.Role);
        _time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(Role.Unknown, a.Status.Role);
        Assert.Null(a.Status.ValidUntil);

        Assert.False(await a.StepAsync());
        Assert.Equal(Role.Unknown, a.Status.Role);
    }

    [Fact]
    public async Task An_in_flight_renew_is_cancelled_when_the_claim_runs_out()
    {
        var a = Candidate("a");
        await a.StepAsync();
        _store.Hang = true;

        // The first hung renew gives up after the request timeout (5 s), the next one at the deadline.
        _time.Advance(TimeSpan.FromSeconds(2));
        var renew = a.Elector.TryAcquireOrRenewAsync(CancellationToken.None);
        _time.Advance(TimeSpan.FromSeconds(4.999));
        Assert.False(renew.IsCompleted);
        _time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.False(await renew);

        renew = a.Elector.TryAcquireOrRenewAsync(CancellationToken.None);
        _time.Advance(TimeSpan.FromSeconds(2.999));
        Assert.False(renew.IsCompleted);
        Assert.Equal(Role.Leader, a.Status.Role);
        _time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.False(await renew);
        Assert.Equal(Role.Unknown, a.Status.Role);
    }

    [Fact]
    public async Task Release_writes_what_client_go_writes_and_a_follower_takes_over_at_once()
    {
        var a = Candidate("a");
        var b = Candidate("b");
        await a.StepAsync();
        Assert.False(await b.StepAsync());
        _time.Advance(TimeSpan.FromSeconds(1));

        await a.Elector.ReleaseAsync(CancellationToken.None);

        Assert.Equal(new LeaseRecord("", 1, Start.AddSeconds(1), Start.AddSeconds(1), 0), _store.Lease!.Record);
        Assert.True(await b.StepAsync());
        Assert.Equal(new LeaseRecord("b", 15, Start.AddSeconds(1), Start.AddSeconds(1), 1), _store.Lease!.Record);
    }

    [Fact]
    public async Task A_release_after_a_renew_whose_answer_was_lost_releases_over_that_renew()
    {
        var a = Candidate("a");
        var b = Candidate("b");
        await a.StepAsync();
        Assert.False(await b.StepAsync());

        // The last renew landed, but a never heard back (a shutdown cancelled it, or a timeout).
        _time.Advance(TimeSpan.FromSeconds(2));
        _store.LoseAnswers = true;
        Assert.False(await a.StepAsync());
        _store.LoseAnswers = false;

        await a.Elector.ReleaseAsync(CancellationToken.None);
        Assert.Equal("", _store.Lease!.Record.HolderIdentity);
        b.See(_store.Lease);
        Assert.True(await b.StepAsync());
    }

    [Fact]
    public async Task A_release_never_overwrites_another_holder()
    {
        var a = Candidate("a");
        await a.StepAsync();
        _store.Overwrite(new LeaseRecord("intruder", 15, Start, Start, 1));

        await a.Elector.ReleaseAsync(CancellationToken.None);
        Assert.Equal("intruder", _store.Lease!.Record.HolderIdentity);
    }

    [Fact]
    public async Task Transitions_count_only_changes_of_holder()
    {
        var a = Candidate("a");
        var b = Candidate("b");
        await a.StepAsync();
        for (var i = 0; i < 3; i++)
        {
            _time.Advance(TimeSpan.FromSeconds(2));
            await a.StepAsync();
        }

        Assert.Equal(0, _store.Lease!.Record.LeaseTransitions);

        await a.Elector.ReleaseAsync(CancellationToken.None);
        Assert.Equal(0, _store.Lease!.Record.LeaseTransitions);

        Assert.True(await a.StepAsync());
        Assert.Equal(1, _store.Lease!.Record.LeaseTransitions);
        Assert.Equal(1, a.Status.Term);

        Assert.False(await b.StepAsync());
        _time.Advance(TimeSpan.FromSeconds(15));
        Assert.True(await b.StepAsync());
        Assert.Equal(2, _store.Lease!.Record.LeaseTransitions);
        Assert.Equal(2, b.Status.Term);
    }

    [Fact]
    public async Task Leader_that_sees_another_holder_verifies_with_a_renew_and_steps_down()
    {
        var a = Candidate("a");
        await a.StepAsync();

        a.See(_store.Overwrite(new LeaseRecord("intruder", 15, Start, Start, 7)));
        Assert.Equal(Role.Leader, a.Status.Role);

        // The renew it does at once fails its compare-and-swap; the fresh read shows the intruder.
        Assert.False(await a.StepAsync());
        Assert.Equal(Role.Follower, a.Status.Role);
        Assert.Equal("intruder", a.Status.Holder);
        Assert.Equal(7, a.Status.Term);
    }

    [Fact]
    public async Task A_stale_watch_event_does_not_unseat_the_leader()
    {
        // The watch's first list began before a's create and arrives after it: "no lease".
        var a = Candidate("a");
        await a.StepAsync();
        var term = a.Status.Term;

        a.See(null);
        Assert.Equal(Role.Leader, a.Status.Role);
        Assert.True(await a.StepAsync());
        Assert.Equal(Role.Leader, a.Status.Role);
        Assert.Equal(term, a.Status.Term);
        Assert.Equal("a", _store.Lease!.Record.HolderIdentity);
    }

    [Fact]
    public async Task A_replayed_older_record_of_our_own_never_takes_the_leaders_term_back()
    {
        // A watch resumed from an old version replays a's earlier records before the newest.
        var a = Candidate("a");
        await a.StepAsync();
        var older = _store.Lease!;
        await a.Elector.ReleaseAsync(CancellationToken.None);
        Assert.True(await a.StepAsync());
        Assert.Equal(1, a.Status.Term);

        a.See(older);
        Assert.Equal(Role.Leader, a.Status.Role);
        Assert.Equal(1, a.Status.Term);
        Assert.True(await a.StepAsync());
        Assert.Equal(1, a.Status.Term);
        Assert.Equal(1, _store.Lease!.Record.LeaseTransitions);
    }

    [Fact]
    public async Task A_deleted_lease_is_created_again_under_a_new_uid()
    {
        var a = Candidate("a");
        await a.StepAsync();
        var firstUid = a.Status.LeaseUid;

        _store.Delete();
        a.See(null);
        await a.StepAsync();
        Assert.NotEqual(firstUid, a.Status.LeaseUid);
        Assert.NotEqual(firstUid, _store.Lease?.Uid);
    }

    [Fact]
    public async Task A_follower_that_saw_the_lease_held_waits_out_the_holder_after_a_deletion()
    {
        var a = Candidate("a");
        var b = Candidate("b");
        await a.StepAsync();
        Assert.False(await b.StepAsync());

        // Deleted by hand 5 s later: a may claim until 10 s. b must not create it before a full
        // lease duration from when it saw the deletion, or both would say "leader".
        _time.Advance(TimeSpan.FromSeconds(5));
        _store.Delete();
        b.See(null);
        Assert.False(await b.StepAsync());
        _time.Advance(TimeSpan.FromSeconds(14.9));
        Assert.False(await b.StepAsync());
        Assert.Null(_store.Lease);

        _time.Advance(TimeSpan.FromSeconds(0.2));
        Assert.True(await b.StepAsync());
        Assert.Equal("b", _store.Lease!.Record.HolderIdentity);
    }

    [Fact]
    public async Task A_record_naming_this_identity_that_it_did_not_write_is_waited_out_and_starts_a_new_term()
    {
        var a = Candidate("a");
        await a.StepAsync();

        // Rewritten by hand to b while a still leads: b must wait as for anyone else's claim.
        var b = Candidate("b");
        _store.Overwrite(new LeaseRecord("b", 15, Start, Start, 0));
        Assert.False(await b.StepAsync());
        Assert.Equal(Role.Follower, b.Status.Role);

        _time.Advance(TimeSpan.FromSeconds(14.9));
        Assert.False(await b.StepAsync());
        _time.Advance(TimeSpan.FromSeconds(0.2));
        Assert.True(await b.StepAsync());
        Assert.Equal(1, b.Status.Term);
        Assert.Equal(new LeaseRecord("b", 15, _time.GetUtcNow(), _time.GetUtcNow(), 1), _store.Lease!.Record);
    }

    [Fact]
    public async Task A_write_whose_answer_was_lost_is_recognised_as_ours_by_its_record()
    {
        var a = Candidate("a");
        _store.LoseAnswers = true;
        Assert.False(await a.StepAsync());
        Assert.Equal("a", _store.Lease!.Record.HolderIdentity);
        Assert.NotEqual(Role.Leader, a.Status.Role);

        // The record is exactly a's last attempt, so nobody wrote after it: a takes it at once.
        _store.LoseAnswers = false;
        _time.Advance(TimeSpan.FromSeconds(2));
        Assert.True(await a.StepAsync());
        Assert.Equal(0, a.Status.Term);
    }

    [Fact]
    public async Task A_restarted_process_waits_out_the_claim_its_previous_incarnation_left()
    {
        var first = Candidate("a");
        await first.StepAsync();

        // The same identity again, in a new process: the old one might still be running (a paused
        // process, a duplicated pod name), so the record it left is not taken at once.
        var again = Candidate("a");
        Assert.False(await again.StepAsync());
        _time.Advance(TimeSpan.FromSeconds(15.1));
        Assert.True(await again.StepAsync());
        Assert.Equal(1, again.Status.Term);
    }

    [Theory]
    [InlineData(-5)]
    [InlineData(0)]
    public async Task A_record_with_a_non_positive_duration_is_waited_out_for_our_own_lease_duration(int seconds)
    {
        var b = Candidate("b");
        _store.Overwrite(new LeaseRecord("ghost", seconds, null, null, -3));

        Assert.False(await b.StepAsync());
        _time.Advance(TimeSpan.FromSeconds(14.9));
        Assert.False(await b.StepAsync());
        _time.Advance(TimeSpan.FromSeconds(0.2));
        Assert.True(await b.StepAsync());
        Assert.Equal(-2, _store.Lease!.Record.LeaseTransitions);
    }

    [Theory]
    [InlineData(-5)]
    [InlineData(0)]
    public async Task A_held_lease_edited_to_a_non_positive_duration_is_not_taken_while_its_holder_may_still_claim(int seconds)
    {
        var a = Candidate("a");
        var b = Candidate("b");
        await a.StepAsync();
        Assert.False(await b.StepAsync());

        // Edited by hand 1 s after a renewed (the safety run on Redis, seed 707002: `HSET
        // leaseDurationSeconds -5` and `0`): a has not seen it and may claim until 10 s. b sees it
        // at once; taking it as expired made both say "leader" until a's next renew failed.
        _time.Advance(TimeSpan.FromSeconds(1));
        b.See(_store.Overwrite(_store.Lease!.Record with { LeaseDurationSeconds = seconds }));
        Assert.False(await b.StepAsync());
        Assert.Equal(Role.Leader, a.Status.Role);
        Assert.NotEqual(Role.Leader, b.Status.Role);

        // Waited out like a deletion: a full lease duration of b's from when it saw the edit.
        _time.Advance(TimeSpan.FromSeconds(14.9));
        Assert.False(await b.StepAsync());
        _time.Advance(TimeSpan.FromSeconds(0.2));
        Assert.True(await b.StepAsync());
        Assert.Equal(1, b.Status.Term);
    }

    [Fact]
    public async Task Absurd_records_never_crash_the_elector()
    {
        var b = Candidate("b");
        _store.Overwrite(new LeaseRecord(new string('x', 100_000), int.MaxValue, DateTimeOffset.MinValue, DateTimeOffset.MaxValue, int.MaxValue));

        Assert.False(await b.StepAsync());
        _time.Advance(TimeSpan.FromDays(3650));
        Assert.False(await b.StepAsync());
        Assert.Equal(Role.Follower, b.Status.Role);
        Assert.Equal(int.MaxValue, b.Status.Term);
    }

    [Fact]
    public async Task A_candidate_that_cannot_produce_a_new_term_does_not_lead()
    {
        var a = Candidate("a");
        var b = Candidate("b");
        var exhausted = _store.Overwrite(new LeaseRecord("", 1, null, null, int.MaxValue));

        Assert.False(await b.StepAsync());
        Assert.False(await a.StepAsync());

        // Two holders of term 2147483647 would share a fence; nobody takes the lease, loudly.
        Assert.Equal(exhausted, _store.Lease);
        Assert.Equal(1, b.Metrics.TermExhaustedCount);
        Assert.Equal(1, a.Metrics.TermExhaustedCount);
        Assert.False(b.Status.IsLeader);

        // Deleting the lease starts a new fencing domain: a new uid, term 0.
        _store.Delete();
        _time.Advance(TimeSpan.FromSeconds(16));
        Assert.True(await b.StepAsync());
        Assert.Equal(0, b.Status.Term);
        Assert.NotEqual(exhausted.Uid, b.Status.LeaseUid);
    }

    [Fact]
    public async Task A_leader_keeps_its_term_at_the_maximum()
    {
        var a = Candidate("a");
        _store.Overwrite(new LeaseRecord("", 1, null, null, int.MaxValue - 1));
        Assert.True(await a.StepAsync());
        _time.Advance(TimeSpan.FromSeconds(2));

        Assert.True(await a.StepAsync());
        Assert.Equal(int.MaxValue, a.Status.Term);
        Assert.Equal(0, a.Metrics.TermExhaustedCount);
    }

    [Fact]
    public async Task A_follower_that_cannot_read_the_lease_says_unknown()
    {
        var a = Candidate("a");
        var b = Candidate("b");
        await a.StepAsync();
        Assert.False(await b.StepAsync());
        Assert.Equal(Role.Follower, b.Status.Role);

        _store.FailWith = LeaseStoreFailure.Unavailable;
        Assert.False(await b.StepAsync());
        Assert.Equal(Role.Unknown, b.Status.Role);
        Assert.Equal("", b.Status.Holder);

        _store.FailWith = null;
        Assert.False(await b.StepAsync());
        Assert.Equal(Role.Follower, b.Status.Role);
    }

    [Fact]
    public void Status_revisions_grow_only_when_something_changes()
    {
        var a = Candidate("a");
        var first = a.Status.Revision;

        a.See(null);
        var second = a.Status.Revision;
        a.See(null);

        Assert.Equal(first + 1, second);
        Assert.Equal(second, a.Status.Revision);
    }

    [Fact]
    public async Task A_follower_never_releases_a_record_that_names_it_but_that_it_did_not_write()
    {
        // a leads; a hand edit names follower b; b (correctly) waits it out, then is stopped.
        var a = Candidate("a");
        var b = Candidate("b");
        Assert.True(await a.StepAsync());
        var edited = _store.Overwrite(_store.Lease!.Record with { HolderIdentity = "b" });
        Assert.False(await b.StepAsync());

        await b.Elector.ReleaseAsync(CancellationToken.None);

        // Releasing it would let a third candidate take the lease at once while a still claims.
        Assert.Equal(edited, _store.Lease);
    }

    [Fact]
    public async Task A_leader_releases_its_own_record()
    {
        var a = Candidate("a");
        Assert.True(await a.StepAsync());
        a.Elector.PublishView();

        await a.Elector.ReleaseAsync(CancellationToken.None);

        Assert.True(_store.Lease!.Record.IsReleased);
    }

    [Fact]
    public async Task A_leader_whose_wall_clock_is_frozen_still_renews_in_the_followers_eyes()
    {
        // Every renew writes an identical record; only the version says it was renewed.
        var a = Candidate("a");
        var b = Candidate("b");
        Assert.True(await a.StepAsync());
        Assert.False(await b.StepAsync());

        for (var i = 0; i < 15; i++)
        {
            _time.Advance(TimeSpan.FromSeconds(2));
            a.Clock.WallClockOffset -= TimeSpan.FromSeconds(2);
            Assert.True(await a.StepAsync());
            Assert.Equal(new LeaseRecord("a", 15, Start, Start, 0), _store.Lease!.Record);
            Assert.False(await b.StepAsync(), $"b took the lease {2 * (i + 1)} s in, while a renews");
        }
    }

    [Fact]
    public async Task A_record_with_an_oversized_holder_is_waited_out_and_never_echoed()
    {
        var b = Candidate("b");
        var huge = new string('x', 5_000_000);
        _store.Overwrite(new LeaseRecord(huge, 15, Start, Start, 4));

        Assert.False(await b.StepAsync());
        Assert.Equal(Role.Follower, b.Status.Role);
        Assert.True(b.Status.Holder.Length <= LeaseRecord.MaxHolderIdentityLength, $"holder of {b.Status.Holder.Length} characters");
        Assert.Equal("<invalid holderIdentity of 5000000 characters>", b.Status.Holder);

        _time.Advance(TimeSpan.FromSeconds(15));
        Assert.True(await b.StepAsync());
        Assert.Equal(5, b.Status.Term);
    }

    private Candidate Candidate(string identity, ElectionOptions? options = null)
    {
        var candidate = new Candidate(identity, _store, _time, options);
        _candidates.Add(candidate);
        return candidate;
    }

    public void Dispose()
    {
        foreach (var candidate in _candidates)
        {
            candidate.Dispose();
        }
    }
}
