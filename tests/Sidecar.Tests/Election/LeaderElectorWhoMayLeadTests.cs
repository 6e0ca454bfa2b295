using LeaderSidecar.Election;
using Microsoft.Extensions.Time.Testing;

namespace LeaderSidecar.Tests.Election;

/// <summary>
/// Who may lead: a closed <see cref="CampaignGate"/> (the app's health check fails), an observer
/// (<see cref="ElectionOptions.Campaign"/> false) and a <see cref="ElectionOptions.CampaignDelay"/>.
/// Whole loops on one store; the fake clock moves only where a test says so (defaults: lease
/// duration 15 s, retry period 2 s, stand-aside interval 60 s).
/// </summary>
public sealed class LeaderElectorWhoMayLeadTests : IDisposable
{
    private static readonly TimeSpan Step = TimeSpan.FromMilliseconds(250);
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 1, 12, 0, 0, TimeSpan.Zero));
    private readonly InMemoryLeaseStore _store = new();
    private readonly List<Candidate> _candidates = [];

    [Fact]
    public async Task An_unfit_candidate_never_takes_the_lease_from_a_fit_one_even_when_it_came_first()
    {
        var a = Start("a", gate: new CampaignGate(open: false, "app health check failing"));
        await Eventually.Holds(() => a.Status.Role == Role.Follower, "a has seen the lease absent");
        await Eventually.HoldsWhileAdvancing(_time, TimeSpan.FromSeconds(10), Step, () => Assert.False(a.Status.IsLeader));
        Assert.Null(_store.Lease);

        var b = Start("b");
        await Eventually.Holds(() => b.Status.IsLeader, "b, fit, takes the free lease at once");

        await Eventually.HoldsWhileAdvancing(_time, TimeSpan.FromMinutes(1), Step, () => Assert.False(a.Status.IsLeader));
        Assert.Equal("b", _store.Lease!.Record.HolderIdentity);
        Assert.Equal(0, _store.Lease.Record.LeaseTransitions);
        Assert.Equal("b", a.Status.Holder);
    }

    [Fact]
    public async Task An_observer_never_writes_the_lease_and_reports_its_holder()
    {
        var observer = Start("o", new ElectionOptions { Identity = "o", LeaseName = "app", Campaign = false });
        await Eventually.Holds(() => observer.Status.Role == Role.Follower, "the observer has seen the lease absent");
        await Eventually.HoldsWhileAdvancing(_time, TimeSpan.FromMinutes(1), Step, () => Assert.False(observer.Status.IsLeader));
        Assert.Null(_store.Lease);
        Assert.Equal(0, _store.Requests("create") + _store.Requests("update"));

        var b = Start("b");
        await Eventually.Holds(() => b.Status.IsLeader && observer.Status.Holder == "b", "b leads and the observer says so");
        Assert.Equal(0, observer.Status.Term);

        await b.Elector.StopAsync(CancellationToken.None);
        await Eventually.Holds(() => observer.Status is { Role: Role.Follower, Holder: "" }, "the observer sees the release");
        await Eventually.HoldsWhileAdvancing(_time, TimeSpan.FromMinutes(2), Step, () => Assert.False(observer.Status.IsLeader));
        Assert.Equal("", _store.Lease!.Record.HolderIdentity);
    }

    [Fact]
    public async Task An_unfit_leader_stands_aside_and_a_fit_follower_takes_over()
    {
        var all = new[] { Start("a", gate: new CampaignGate()), Start("b", gate: new CampaignGate()) };
        var leader = await SingleLeaderAsync(all);
        var follower = all.Single(c => c != leader);

        var statusAtRelease = (LeadershipStatus?)null;
        _store.BeforeWrite = _ => statusAtRelease ??= leader.Status;
        leader.Gate!.Close("app health check failing");

        // The clock does not move: the release and the watch hand it over.
        await Eventually.Holds(() => follower.Status.IsLeader, "the fit follower leads");
        Assert.False(statusAtRelease!.IsLeader);
        Assert.Equal(Role.Follower, leader.Status.Role);
        Assert.Equal(1, leader.Metrics.StoodAsideCount);
        Assert.Equal(1, _store.Lease!.Record.LeaseTransitions);
    }

    [Fact]
    public async Task With_nobody_fit_the_unfit_candidate_leads_again_after_a_lease_duration_and_keeps_leading()
    {
        var a = Start("a", gate: new CampaignGate());
        await Eventually.Holds(() => a.Status.IsLeader, "a leads");

        a.Gate!.Close("app health check failing");
        await Eventually.Holds(() => _store.Lease!.Record.IsReleased && a.Status.Role == Role.Follower, "a stood aside");

        // Nobody takes it; for a lease duration a leaves it to a fit replica that might.
        await Eventually.HoldsWhileAdvancing(_time, TimeSpan.FromSeconds(14.5), Step, () => Assert.False(a.Status.IsLeader));
        Assert.True(_store.Lease!.Record.IsReleased);

        await Eventually.Holds(() => a.Status.IsLeader, "a, still unfit, leads again: an unfit leader beats none", _time, Step);
        Assert.Equal(1, a.Status.Term);

        // And keeps leading while unfit: standing aside again would only empty the lease again.
        await Eventually.HoldsWhileAdvancing(_time, TimeSpan.FromMinutes(2), Step, () => Assert.True(a.Status.IsLeader));
        Assert.Equal(1, a.Metrics.StoodAsideCount);
        Assert.Equal(1, _store.Lease!.Record.LeaseTransitions);
    }

    [Fact]
    public async Task A_flapping_gate_does_not_make_leadership_flap()
    {
        var all = new[] { Start("a", gate: new CampaignGate()), Start("b", gate: new CampaignGate()) };
        var first = await SingleLeaderAsync(all);
        var second = all.Single(c => c != first);

        // Each stands aside once: first hands over to second, then second back to first.
        first.Gate!.Close("flapping");
        await Eventually.Holds(() => second.Status.IsLeader, "second leads");
        first.Gate.Open();
        second.Gate!.Close("flapping");
        await Eventually.Holds(() => first.Status.IsLeader, "first leads again");
        second.Gate.Open();
        var term = first.Status.Term;

        // Now both checks flap for most of the stand-aside interval: nobody stands aside again.
        for (var i = 0; i < 25; i++)
        {
            first.Gate.Close("flapping");
            second.Gate.Close("flapping");
            await Eventually.HoldsWhileAdvancing(_time, TimeSpan.FromSeconds(1), Step, () => Assert.True(first.Status.IsLeader && first.Status.Term == term));
            first.Gate.Open();
            second.Gate.Open();
            await Eventually.HoldsWhileAdvancing(_time, TimeSpan.FromSeconds(1), Step, () => Assert.True(first.Status.IsLeader && first.Status.Term == term));
        }

        Assert.Equal(1, first.Metrics.StoodAsideCount);
        Assert.Equal(1, second.Metrics.StoodAsideCount);
        Assert.Equal(2, _store.Lease!.Record.LeaseTransitions);

        // Past the interval, a leader that is unfit again may stand aside once more.
        first.Gate.Close("unfit for good");
        await Eventually.Holds(() => second.Status.IsLeader, "second leads once the interval has passed", _time, Step);
        Assert.Equal(2, first.Metrics.StoodAsideCount);
    }

    [Fact]
    public async Task A_delayed_candidate_loses_an_expired_lease_to_an_undelayed_one()
    {
        var old = Start("old");
        await Eventually.Holds(() => old.Status.IsLeader, "old leads");
        var delayed = Start("delayed", Delayed("delayed", TimeSpan.FromSeconds(5)));
        var prompt = Start("prompt");
        await Eventually.Holds(() => delayed.Status.Holder == "old" && prompt.Status.Holder == "old", "both follow old");

        await old.CrashAsync();
        await Eventually.Holds(() => prompt.Status.IsLeader, "the undelayed candidate takes the expired lease", _time, Step);
        Assert.False(delayed.Status.IsLeader);
        Assert.Equal("prompt", _store.Lease!.Record.HolderIdentity);
        Assert.Equal(1, _store.Lease.Record.LeaseTransitions);
        await Eventually.HoldsWhileAdvancing(_time, TimeSpan.FromMinutes(1), Step, () => Assert.False(delayed.Status.IsLeader));
    }

    [Fact]
    public async Task A_delayed_candidate_takes_a_lease_nobody_else_takes_after_its_delay()
    {
        var old = Start("old");
        await Eventually.Holds(() => old.Status.IsLeader, "old leads");
        var delayed = Start("delayed", Delayed("delayed", TimeSpan.FromSeconds(5)));
        await Eventually.Holds(() => delayed.Status.Holder == "old", "delayed follows old");

        // Released: the others would take it at once; the delayed one waits its delay first.
        await old.Elector.StopAsync(CancellationToken.None);
        await Eventually.Holds(() => delayed.Status is { Role: Role.Follower, Holder: "" }, "delayed sees the release");
        await Eventually.HoldsWhileAdvancing(_time, TimeSpan.FromSeconds(4.5), Step, () => Assert.False(delayed.Status.IsLeader));
        await Eventually.Holds(() => delayed.Status.IsLeader, "delayed takes the released lease after its delay", _time, Step);
        Assert.Equal(1, delayed.Status.Term);

        // Crashed: after the lease duration and its delay.
        var prompt = Start("prompt");
        await Eventually.Holds(() => prompt.Status.Holder == "delayed", "prompt follows delayed");
        await delayed.CrashAsync();
        await Eventually.Holds(() => prompt.Status.IsLeader, "prompt takes the expired lease", _time, Step);
        await prompt.CrashAsync();
        var last = Start("last-delayed", Delayed("last-delayed", TimeSpan.FromSeconds(5)));
        await Eventually.Holds(() => last.Status.Holder == "prompt", "last-delayed has seen prompt's claim");
        var seen = _time.GetTimestamp();
        await Eventually.Holds(() => last.Status.IsLeader, "the delayed candidate takes the lease nobody else takes", _time, Step);
        Assert.True(_time.GetElapsedTime(seen) >= TimeSpan.FromSeconds(20), $"took it {_time.GetElapsedTime(seen)} after seeing it, before lease duration + delay");
    }

    private static ElectionOptions Delayed(string identity, TimeSpan delay) =>
        new() { Identity = identity, LeaseName = "app", CampaignDelay = delay };

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
