using System.Text;

namespace LeaderSidecar.Bench.Scenarios;

/// <summary>
/// Three sidecars on one Lease and three polling reference electors on another, side by side on the
/// same server for the same steady-state window; requests per minute per replica by verb. On the
/// test server the counts are the server's own, per token (a watch counts once, when it opens);
/// each daemon's <c>leader_sidecar_lease_requests_total</c> is shown beside them as a cross-check,
/// and is the only source on a real cluster.
/// </summary>
internal static class ApiLoad
{
    private static readonly string[] Identities = ["a", "b", "c"];
    private static readonly string[] Verbs = ["get", "list", "watch", "create", "update"];

    public static async Task RunAsync(Harness h)
    {
        var minutes = h.Options.Load;
        Harness.Log(Report.F($"API-server load: 3 sidecars and 3 polling electors, {minutes} min of steady state"));
        var sidecarLease = h.Api.NewLease("load");
        var pollingLease = h.Api.NewLease("load-poll");
        var daemons = new List<Daemon>();
        var electors = new List<PollingElector>();
        try
        {
            foreach (var id in Identities)
            {
                daemons.Add(await h.StartDaemonAsync(sidecarLease, id));
                electors.Add(h.StartElector(pollingLease, id));
            }

            var leader = await h.SingleLeaderAsync([.. daemons.Select(d => d.Roles)]);
            var pollingLeader = await h.SingleLeaderAsync([.. electors.Select(e => e.Roles)]);

            // Start-up (create, first list and watch) is over; count only what steady state costs.
            await Task.Delay(h.Options.Quick ? TimeSpan.FromSeconds(3) : TimeSpan.FromSeconds(10));
            var before = await SnapshotAsync(h, sidecarLease, pollingLease, daemons, electors);
            await Task.Delay(TimeSpan.FromMinutes(minutes));
            var after = await SnapshotAsync(h, sidecarLease, pollingLease, daemons, electors);
            var stable = leader == await h.SingleLeaderAsync([.. daemons.Select(d => d.Roles)])
                && pollingLeader == await h.SingleLeaderAsync([.. electors.Select(e => e.Roles)])
                && daemons.All(d => d.Roles.Current is "LEADER" or "FOLLOWER");

            Rate PerMinute(Dictionary<string, long> a, Dictionary<string, long> b) =>
                new(Verbs.ToDictionary(v => v, v => (b.GetValueOrDefault(v) - a.GetValueOrDefault(v)) / minutes));

            var sidecar = Enumerable.Range(0, 3).Select(i => (Leader: i == leader, Rate: PerMinute(before.Sidecar[i], after.Sidecar[i]), Own: PerMinute(before.SidecarOwn[i], after.SidecarOwn[i]))).ToList();
            var polling = Enumerable.Range(0, 3).Select(i => (Leader: i == pollingLeader, Rate: PerMinute(before.Polling[i], after.Polling[i]), Own: PerMinute(before.PollingOwn[i], after.PollingOwn[i]))).ToList();

            var writesAllowed = 60 / h.Timing.RetryPeriod.TotalSeconds;
            var sLeader = sidecar.Single(r => r.Leader).Rate;
            var pLeader = polling.Single(r => r.Leader).Rate;
            var sFollowers = sidecar.Where(r => !r.Leader).Select(r => r.Rate.Total).ToList();
            var pFollowers = polling.Where(r => !r.Leader).Select(r => r.Rate.Total).ToList();
            var leaderPass = sLeader.Writes <= writesAllowed * 1.01 && sLeader.Reads == 0;
            var followerPass = sFollowers.All(t => t <= 2);

            h.Report.Rows.Add(new Row(
                "API load, leader (requests/min: writes, reads)",
                Report.F($"{sLeader.Writes:0.0} writes, {sLeader.Reads:0.0} reads"),
                Report.F($"{pLeader.Writes:0.0} writes, {pLeader.Reads:0.0} reads"),
                Report.Ratio(pLeader.Total, sLeader.Total),
                Report.F($"≤ 1 write per retry period ({writesAllowed:0}/min), no reads"),
                Report.Verdict(leaderPass && stable)));
            h.Report.Rows.Add(new Row(
                "API load, each follower (requests/min, all verbs)",
                string.Join(", ", sFollowers.Select(t => Report.F($"{t:0.0}"))),
                string.Join(", ", pFollowers.Select(t => Report.F($"{t:0.0}"))),
                Report.Ratio(pFollowers.Average(), Math.Max(sFollowers.Average(), 1 / minutes)),
                "≤ 2 requests/min",
                Report.Verdict(followerPass && stable)));

            var table = new StringBuilder();
            table.AppendLine(Report.F($"Steady state of {minutes} min (after 10 s of settling), {h.Timing}. Requests per minute per replica; source: {(h.Api.CountsOnServer ? "the test server's per-token counters; in brackets the daemon's own `leader_sidecar_lease_requests_total` (all results), or the reference elector's own count" : "each daemon's own `leader_sidecar_lease_requests_total` (all results) and the reference elector's own count")}. A watch counts once, when it opens; the ratio of the follower row compares the mean, with a sidecar follower's 0 taken as 1 request per window."));
            table.AppendLine();
            table.AppendLine("| elector | replica | role | get | list | watch | create | update | total |");
            table.AppendLine("|---|---|---|---|---|---|---|---|---|");
            void Add(string elector, int i, bool isLeader, Rate rate, Rate own)
            {
                var cells = Verbs.Select(v => h.Api.CountsOnServer ? Report.F($"{rate.Verbs[v]:0.0} ({own.Verbs[v]:0.0})") : Report.F($"{own.Verbs[v]:0.0}"));
                table.AppendLine(Report.F($"| {elector} | {Identities[i]} | {(isLeader ? "leader" : "follower")} | {string.Join(" | ", cells)} | {(h.Api.CountsOnServer ? rate.Total : own.Total):0.0} |"));
            }

            for (var i = 0; i < 3; i++)
            {
                Add("leader-sidecar", i, sidecar[i].Leader, sidecar[i].Rate, sidecar[i].Own);
            }

            for (var i = 0; i < 3; i++)
            {
                Add("polling reference", i, polling[i].Leader, polling[i].Rate, polling[i].Own);
            }

            if (!stable)
            {
                table.AppendLine().AppendLine("**Leadership changed during the window: the figures are not steady state.**");
            }

            h.Report.Details.Add(("API-server load by verb", table.ToString()));
        }
        finally
        {
            foreach (var daemon in daemons)
            {
                await daemon.DisposeAsync();
            }

            foreach (var elector in electors)
            {
                await elector.DisposeAsync();
            }
        }
    }

    private static async Task<Snapshot> SnapshotAsync(Harness h, string sidecarLease, string pollingLease, List<Daemon> daemons, List<PollingElector> electors)
    {
        var own = new List<Dictionary<string, long>>();
        foreach (var daemon in daemons)
        {
            if (daemon.Ended is { } ended)
            {
                Harness.Log(ended);
                throw new InvalidOperationException(ended.Split('\n')[0]);
            }

            own.Add(await daemon.RequestCountsAsync(Harness.Http));
        }

        var pollingOwn = electors.Select(e => e.Requests.ToDictionary(p => p.Key, p => p.Value)).ToList();
        if (!h.Api.CountsOnServer)
        {
            return new Snapshot(own, own, pollingOwn, pollingOwn);
        }

        return new Snapshot(
            [.. daemons.Select(d => h.Api.ServerCounts(h.Api.Candidate(sidecarLease, d.Identity)))],
            own,
            [.. electors.Select(e => h.Api.ServerCounts(h.Api.Candidate(pollingLease, e.Identity)))],
            pollingOwn);
    }

    private sealed record Snapshot(
        List<Dictionary<string, long>> Sidecar,
        List<Dictionary<string, long>> SidecarOwn,
        List<Dictionary<string, long>> Polling,
        List<Dictionary<string, long>> PollingOwn);

    private sealed record Rate(Dictionary<string, double> Verbs)
    {
        public double Writes => Verbs["create"] + Verbs["update"];

        public double Reads => Verbs["get"] + Verbs["list"] + Verbs["watch"];

        public double Total => Verbs.Values.Sum();
    }
}
