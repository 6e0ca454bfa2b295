using System.Diagnostics;

namespace LeaderSidecar.Tests.Safety;

/// <summary>The checker on hand-made histories: it must find what it is there to find.</summary>
public sealed class HistoryCheckerTests
{
    private static readonly long Second = Stopwatch.Frequency;

    [Fact]
    public void A_daemons_log_lines_become_its_history()
    {
        string[] log =
        [
            """{"Timestamp":"2026-11-30T10:19:55.648Z","EventId":301,"LogLevel":"Information","Category":"LeaderSidecar","Message":"http surface listening on http://127.0.0.1:4999","State":{}}""",
            """{"Timestamp":"2026-11-30T10:19:56.161Z","EventId":100,"LogLevel":"Information","Category":"LeaderSidecar.Election.LeadershipState","Message":"Role changed","State":{"From":"Unknown","To":"Leader","Holder":"r0","Term":4,"LeaseUid":"u-1","Revision":2,"MonotonicTimestamp":531049663720,"{OriginalFormat}":"..."}}""",
            """{"Timestamp":"2026-11-30T10:19:57.161Z","EventId":100,"LogLevel":"Information","Category":"LeaderSidecar.Election.LeadershipState","Message":"Role changed","State":{"From":"Leader","To":"Unknown","Holder":"","Term":null,"LeaseUid":"","Revision":3,"MonotonicTimestamp":531049999999,"{OriginalFormat}":"..."}}""",
            "not json at all",
        ];

        var history = LeadershipHistory.Parse("r0#1", "r0", log, endedAt: null);

        Assert.Equal(
            [
                new RoleChange(531049663720, "Unknown", "Leader", "r0", 4, "u-1", 2),
                new RoleChange(531049999999, "Leader", "Unknown", "", null, "", 3),
            ],
            history.Changes);
        Assert.Equal([new LeaderInterval("r0#1", "r0", 531049663720, 531049999999, 4, "u-1")], history.LeaderIntervals(long.MaxValue));
    }

    [Fact]
    public void A_leader_that_re_created_the_lease_has_a_new_claim_from_then_on()
    {
        var history = History("a#1", Change(0, "Follower", "Leader", 7, "old"), Change(5, "Leader", "Leader", 0, "new"), Change(9, "Leader", "Unknown", 0, "new"));

        Assert.Equal(
            [new LeaderInterval("a#1", "a", 0, 5 * Second, 7, "old"), new LeaderInterval("a#1", "a", 5 * Second, 9 * Second, 0, "new")],
            history.LeaderIntervals(long.MaxValue));
    }

    [Fact]
    public void Two_processes_leading_at_one_instant_are_an_overlap()
    {
        var report = Check(
            History("a#1", Lead(0, 10, term: 1)),
            History("b#1", Lead(9.999, 20, term: 2)));

        var overlap = Assert.Single(report.Overlaps);
        Assert.Equal(("a#1", "b#1"), (overlap.First.Process, overlap.Second.Process));
        Assert.Contains("both led for 1.000 ms", Assert.Single(report.DescribeOverlaps(0)));
    }

    [Fact]
    public void A_hand_over_with_no_common_instant_is_not_an_overlap()
    {
        var report = Check(
            History("a#1", Lead(0, 10, term: 1)),
            History("b#1", Lead(10, 20, term: 2)),
            History("a#1", Lead(30, 40, term: 3)));

        Assert.Empty(report.Overlaps);
        Assert.Empty(report.TermProblems);
    }

    [Fact]
    public void Two_processes_of_one_identity_count_as_two_claimants()
    {
        var report = Check(
            History("a#1", Lead(0, 10, term: 1)),
            History("a#2", Lead(5, 20, term: 2)));

        Assert.Single(report.Overlaps);
    }

    [Fact]
    public void A_killed_leader_leads_until_it_was_reaped()
    {
        var killed = new LeadershipHistory("a#1", "a", [Change(0, "Unknown", "Leader", 1)], endedAt: 12 * Second);
        var report = Check(killed, History("b#1", Lead(11, 20, term: 2)));

        Assert.Single(report.Overlaps);
    }

    [Fact]
    public void Terms_that_go_back_or_repeat_for_a_new_process_are_reported()
    {
        var report = Check(
            History("a#1", Lead(0, 10, term: 5)),
            History("b#1", Lead(11, 20, term: 4)),
            History("c#1", Lead(21, 30, term: 4)));

        Assert.Equal(2, report.TermProblems.Count);
        Assert.Contains("term went back from 5 (a#1) to 4 (b#1)", report.TermProblems[0], StringComparison.Ordinal);
        Assert.Contains("a new holder must have a new term", report.TermProblems[1], StringComparison.Ordinal);
    }

    [Fact]
    public void A_recreated_lease_starts_its_terms_again()
    {
        var report = Check(
            History("a#1", Lead(0, 10, term: 5, uid: "old")),
            History("b#1", Lead(11, 20, term: 0, uid: "new")));

        Assert.Empty(report.TermProblems);
    }

    [Fact]
    public void The_longest_leaderless_stretch_after_a_heal_is_measured()
    {
        var intervals = new[]
        {
            new LeaderInterval("a#1", "a", 0, 10 * Second, 1, "u"),
            new LeaderInterval("b#1", "b", 13 * Second, 14 * Second, 2, "u"),
            new LeaderInterval("c#1", "c", 14 * Second, 30 * Second, 3, "u"),
        };

        Assert.Equal(TimeSpan.FromSeconds(3), HistoryChecker.LongestGap(intervals, 5 * Second, 20 * Second));
        Assert.Equal(TimeSpan.FromSeconds(2), HistoryChecker.LongestGap(intervals, 11 * Second, 20 * Second));
        Assert.Equal(TimeSpan.FromSeconds(5), HistoryChecker.LongestGap(intervals, 25 * Second, 35 * Second));
    }

    private static SafetyReport Check(params LeadershipHistory[] histories) =>
        HistoryChecker.Check(histories, [], [], 0, 100 * Second);

    private static LeadershipHistory History(string process, params RoleChange[] changes) =>
        new(process, process.Split('#')[0], changes, endedAt: null);

    private static RoleChange[] Lead(double from, double to, long term, string uid = "u") =>
        [Change(from, "Follower", "Leader", term, uid), Change(to, "Leader", "Follower", term, uid)];

    private static RoleChange Change(double seconds, string from, string to, long term, string uid = "u") =>
        new((long)(seconds * Second), from, to, "", term, uid, 0);
}
