using LeaderSidecar.Election;
using Microsoft.Extensions.Time.Testing;

namespace LeaderSidecar.Tests.Election;

/// <summary>
/// A targeted hand-over: a <see cref="HandOverRequest"/> beside the record (the Kubernetes store's
/// <c>leader-sidecar.io/hand-over-to</c> annotation) makes the leader of that term release to the
/// named candidate, which takes it at once, while everyone else leaves it to that candidate for a
/// lease duration. Whole loops on one store; the fake clock moves only where a test says so
/// (lease duration 15 s).
/// </summary>
public sealed class LeaderElectorHandOverTests : IDisposable
{
    private static readonly TimeSpan Step = TimeSpan.FromMilliseconds(250);
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 1, 12, 0, 0, TimeSpan.Zero));
    private readonly InMemoryLeaseStore _store = new();
    private readonly List<Candidate> _candidates = [];

    [Fact]
    public async Task The_leader_releases_to_the_named_candidate_which_takes_it_at_once_and_clears_the_request()
    {
        var all = new[] { Start("a"), Start("b"), Start("c") };
        var leader = await SingleLeaderAsync(all);
        var named = all.First(c => c != leader);
        var term = leader.Status.Term!.Value;

        var statusAtRelease = (LeadershipStatus?)null;
        _store.BeforeWrite = _ => statusAtRelease ??= leader.Status;
        _store.Annotate(new HandOverRequest(named.Options.Identity, (int)term));

        // The clock does not move: the release and the watch hand it over.
        await Eventually.Holds(() => named.Status.IsLeader, "the named candidate leads");
        Assert.False(statusAtRelease!.IsLeader);
        Assert.Equal(Role.Follower, leader.Status.Role);
        Assert.Equal(named.Options.Identity, _store.Lease!.Record.HolderIdentity);
        Assert.Equal(term + 1, _store.Lease.Record.LeaseTransitions);
        Assert.Null(_store.Lease.HandOver);
        await Eventually.HoldsWhileAdvancing(_time, TimeSpan.FromSeconds(30), Step, () => Assert.Equal(1, all.Count(c => c.Status.IsLeader)));
        Assert.True(named.Status.IsLeader);
    }

    [Fact]
    public async Task Without_a_watch_the_leader_notices_the_request_when_its_renew_conflicts_and_the_named_candidate_at_its_next_poll()
    {
        _store.WatchBroken = true;
        var all = new[] { Start("a"), Start("b"), Start("c") };
        await Eventually.Holds(() => all.Count(c => c.Status.IsLeader) == 1 && all.All(c => c.Status.Role != Role.Unknown), "one leader, by polling", _time, Step);
        var leader = all.Single(c => c.Status.IsLeader);
        var named = all.First(c => c != leader);
        var term = leader.Status.Term!.Value;

        _store.Annotate(new HandOverRequest(named.Options.Identity, (int)term));

        await Eventually.Holds(() => named.Status.IsLeader, "the named candidate leads", _time, Step);
        Assert.True(leader.Metrics.SlowPathCount >= 1, "the leader found the annotation through a conflicting renew");
        Assert.Equal(term + 1, _store.Lease!.Record.LeaseTransitions);
        Assert.Equal(named.Options.Identity, _store.Lease.Record.HolderIdentity);
    }

    [Fact]
    public async Task An_unfit_named_candidate_does_not_take_it_at_once_and_someone_leads_after_the_grace()
    {
        var a = Start("a");
        await Eventually.Holds(() => a.Status.IsLeader, "a leads");
        var unfit = Start("unfit", gate: new CampaignGate(open: false, "app health check failing"));
        var b = Start("b");
        await Eventually.Holds(() => unfit.Status.Holder == "a" && b.Status.Holder == "a", "both follow a");

        _store.Annotate(new HandOverRequest("unfit", (int)a.Status.Term!.Value));
        await Eventually.Holds(() => _store.Lease!.Record.IsReleased, "a released");
        await Eventually.HoldsWhileAdvancing(_time, TimeSpan.FromSeconds(14.5), Step, () => Assert.DoesNotContain(new[] { a, unfit, b }, c => c.Status.IsLeader));

        // Then the unfit candidate's own wait (a lease duration) and everyone else's grace end together.
        await Eventually.Holds(() => new[] { a, unfit, b }.Any(c => c.Status.IsLeader), "someone leads after the grace", _time, Step);
    }

    [Fact]
    public async Task The_released_lease_still_names_the_candidate_it_was_handed_to()
    {
        var leader = Start("a");
        await Eventually.Holds(() => leader.Status.IsLeader, "a leads");

        _store.Annotate(new HandOverRequest("ghost", 0));
        await Eventually.Holds(() => _store.Lease!.Record.IsReleased, "a released");
        Assert.Equal(new HandOverRequest("ghost", 0), _store.Lease!.HandOver);
        Assert.Equal(Role.Follower, leader.Status.Role);
    }

    [Theory]
    [InlineData("b", -1, "a request for an earlier term is void")]
    [InlineData("b", 1, "a request for a later term is void")]
    [InlineData("a", 0, "a request naming the leader itself changes nothing")]
    public async Task The_leader_ignores_a_request_that_is_not_for_its_term_or_names_itself(string identity, int termOffset, string why)
    {
        var a = Start("a");
        await Eventually.Holds(() => a.Status.IsLeader, "a leads");
        var b = Start("b");
        await Eventually.Holds(() => b.Status.Holder == "a", "b follows a");
        var term = (int)a.Status.Term!.Value;

        _store.Annotate(new HandOverRequest(identity, term + termOffset));
        await Eventually.HoldsWhileAdvancing(_time, TimeSpan.FromSeconds(30), Step, () => Assert.True(a.Status.IsLeader, why));
        Assert.False(b.Status.IsLeader);
        Assert.Equal("a", _store.Lease!.Record.HolderIdentity);
        Assert.Equal(term, _store.Lease.Record.LeaseTransitions);
    }

    [Fact]
    public async Task Others_leave_a_lease_handed_to_a_missing_candidate_alone_for_a_lease_duration_then_take_it()
    {
        var all = new[] { Start("a"), Start("b"), Start("c") };
        var leader = await SingleLeaderAsync(all);
        var term = leader.Status.Term!.Value;

        _store.Annotate(new HandOverRequest("ghost", (int)term));
        await Eventually.Holds(() => _store.Lease!.Record.IsReleased && all.All(c => c.Status is { Role: Role.Follower, Holder: "" }), "the leader released and everyone saw it");

        // Nobody takes it for a lease duration: it is ghost's to take.
        await Eventually.HoldsWhileAdvancing(_time, TimeSpan.FromSeconds(14.5), Step, () => Assert.DoesNotContain(all, c => c.Status.IsLeader));
        Assert.True(_store.Lease!.Record.IsReleased);

        // Ghost never comes: someone else leads, and the request is gone with the term.
        await Eventually.Holds(() => all.Any(c => c.Status.IsLeader), "someone leads after the grace", _time, Step);
        var next = all.Single(c => c.Status.IsLeader);
        Assert.Equal(next.Options.Identity, _store.Lease!.Record.HolderIdentity);
        Assert.Equal(term + 1, _store.Lease.Record.LeaseTransitions);
        Assert.Null(_store.Lease.HandOver);
    }

    [Fact]
    public async Task The_named_candidate_takes_it_at_once_despite_its_campaign_delay()
    {
        var a = Start("a");
        await Eventually.Holds(() => a.Status.IsLeader, "a leads");
        var prompt = Start("prompt");
        var delayed = Start("delayed", new ElectionOptions { Identity = "delayed", LeaseName = "app", CampaignDelay = TimeSpan.FromSeconds(5) });
        await Eventually.Holds(() => prompt.Status.Holder == "a" && delayed.Status.Holder == "a", "both follow a");

        _store.Annotate(new HandOverRequest("delayed", (int)a.Status.Term!.Value));
        await Eventually.Holds(() => delayed.Status.IsLeader, "the delayed candidate, named, leads without the clock moving");
        Assert.False(prompt.Status.IsLeader);
    }

    [Fact]
    public async Task A_void_request_on_a_released_lease_delays_nobody_and_is_cleared_by_the_next_holder()
    {
        var a = Start("a");
        await Eventually.Holds(() => a.Status.IsLeader, "a leads");
        var b = Start("b");
        await Eventually.Holds(() => b.Status.Holder == "a", "b follows a");

        // A request left over from an earlier term, then a plain shutdown.
        _store.Annotate(new HandOverRequest("ghost", 7));
        await Eventually.HoldsWhileAdvancing(_time, TimeSpan.FromSeconds(2), Step, () => Assert.True(a.Status.IsLeader));
        await a.Elector.StopAsync(CancellationToken.None);

        await Eventually.Holds(() => b.Status.IsLeader, "b takes the released lease without waiting");
        Assert.Equal(1, _store.Lease!.Record.LeaseTransitions);
        Assert.Null(_store.Lease.HandOver);
    }

    private Candidate Start(string identity, ElectionOptions? options = null, CampaignGate? gate = null)
    {
        var candidate = new Candidate(identity, _store, _time, options, gate);
        _candidates.Add(candidate);
        candidate.Start();
        return candidate;
    }

    private static async Task<Candidate> SingleLeaderAsync(IReadOnlyList<Candidate> all)
    {
        await Eventually.Holds(() => all.Count(c => c.Status.IsLeader) == 1 && all.All(c => c.Status.Role != Role.Unknown), "one leader");
        return all.Single(c => c.Status.IsLeader);
    }


    public void Dispose()
    {
        foreach (var candidate in _candidates)
        {
            candidate.Dispose();
        }
    }
}
