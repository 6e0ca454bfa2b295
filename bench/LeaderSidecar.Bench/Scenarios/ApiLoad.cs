using System.Text;

namespace LeaderSidecar.Bench.Scenarios;

/// <summary>
/// Three sidecars on one lease and, where the backend has a polling reference, three reference
/// electors on another, side by side on the same server for the same steady-state window; requests
/// per minute per replica. The counts are the backend's per replica (<see cref="Backend.ServerCountsAsync"/>:
/// the test server's per token, a counting proxy per daemon in front of etcd); each daemon's
/// <c>leader_sidecar_lease_requests_total</c> is shown beside them as a cross-check, and is the only
/// source on a real cluster.
/// </summary>
internal static class ApiLoad
{
    private static readonly string[] Identities = ["a", "b", "c"];

    public static async Task RunAsync(Harness h)
    {
        var minutes = h.Options.Load;
        var withPolling = h.Backend.PollingApi is not null;
        Harness.Log(Report.F($"lease-store load: 3 sidecars{(withPolling ? " and 3 polling electors" : "")}, {minutes} min of steady state"));
        var sidecarLease = h.Backend.NewLease("load");
        var pollingLease = h.Backend.NewLease("load-poll");
        var daemons = new List<Daemon>();
        var electors = new List<PollingElector>();
        try
        {
            foreach (var id in Identities)
            {
                daemons.Add(await h.StartCountedDaemonAsync(sidecarLease, id));
                if (withPolling)
                {
                    electors.Add(h.StartElector(pollingLease, id));
                }
            }

            var leader = await h.SingleLeaderAsync([.. daemons.Select(d => d.Roles)]);
            var pollingLeader = withPolling ? await h.SingleLeaderAsync([.. electors.Select(e => e.Roles)]) : -1;

            // Start-up (create, first read and watch) is over; count only what steady state costs.
            await Task.Delay(h.Options.Quick ? TimeSpan.FromSeconds(3) : TimeSpan.FromSeconds(10));
            var before = await SnapshotAsync(h, sidecarLease, pollingLease, daemons, electors);
            await Task.Delay(TimeSpan.FromMinutes(minutes));
            var after = await SnapshotAsync(h, sidecarLease, pollingLease, daemons, electors);
            var stable = leader == await h.SingleLeaderAsync([.. daemons.Select(d => d.Roles)])
                && (!withPolling || pollingLeader == await h.SingleLeaderAsync([.. electors.Select(e => e.Roles)]))
                && daemons.All(d => d.Roles.Current is "LEADER" or "FOLLOWER");

            var columns = h.Backend.RequestColumns;
            Rate PerMinute(Dictionary<string, long> a, Dictionary<string, long> b) =>
                new(a.Keys.Union(b.Keys).ToDictionary(k => k, k => (b.GetValueOrDefault(k) - a.GetValueOrDefault(k)) / minutes), columns);

            var sidecar = Enumerable.Range(0, daemons.Count)
                .Select(i => new Replica(Identities[i], i == leader, PerMinute(before.Sidecar[i], after.Sidecar[i]), PerMinute(before.SidecarOwn[i], after.SidecarOwn[i])))
                .ToList();
            var polling = Enumerable.Range(0, electors.Count)
                .Select(i => new Replica(Identities[i], i == pollingLeader, PerMinute(before.Polling[i], after.Polling[i]), PerMinute(before.PollingOwn[i], after.PollingOwn[i])))
                .ToList();

            var writesAllowed = 60 / h.Timing.RetryPeriod.TotalSeconds;
            var sLeader = sidecar.Single(r => r.Leader).Rate;
            var pLeader = polling.SingleOrDefault(r => r.Leader)?.Rate;
            var sFollowers = sidecar.Where(r => !r.Leader).Select(r => r.Rate.Total).ToList();
            var pFollowers = polling.Where(r => !r.Leader).Select(r => r.Rate.Total).ToList();
            // A polling store's reads are its poll; the target allows them (and 1 % of slack), nothing more.
            var polls = h.Backend.PollsPerMinute;
            var leaderPass = sLeader.Writes <= writesAllowed * 1.01 && sLeader.Reads <= polls * 1.01;
            var followerPass = sFollowers.All(t => t <= 2 + (polls * 1.01));
            var pollTarget = Report.F($"{polls:0} polls/min");

            h.Report.Rows.Add(new Row(
                "API load, leader (requests/min: writes, reads)",
                Report.F($"{sLeader.Writes:0.0} writes, {sLeader.Reads:0.0} reads"),
                pLeader is null ? "—" : Report.F($"{pLeader.Writes:0.0} writes, {pLeader.Reads:0.0} reads"),
                pLeader is null ? "—" : Report.Ratio(pLeader.Total, sLeader.Total),
                Report.F($"≤ 1 write per retry period ({writesAllowed:0}/min), {(polls > 0 ? $"≤ {pollTarget}" : "no reads")}"),
                Report.Verdict(leaderPass && stable)));
            h.Report.Rows.Add(new Row(
                "API load, each follower (requests/min, all verbs)",
                string.Join(", ", sFollowers.Select(t => Report.F($"{t:0.0}"))),
                pFollowers.Count == 0 ? "—" : string.Join(", ", pFollowers.Select(t => Report.F($"{t:0.0}"))),
                pFollowers.Count == 0 ? "—" : Report.Ratio(pFollowers.Average(), Math.Max(sFollowers.Average(), 1 / minutes)),
                polls > 0 ? $"≤ {pollTarget} + 2 requests/min" : "≤ 2 requests/min",
                Report.Verdict(followerPass && stable)));

            var counted = before.OnServer;
            var notRequests = columns.Any(c => c.Kind == RequestKind.NotARequest) ? " Columns in italics are not requests and are not in the total." : "";
            var table = new StringBuilder();
            table.AppendLine(Report.F($"Steady state of {minutes} min (after 10 s of settling), {h.Timing}. Requests per minute per replica; source: {(counted ? $"{h.Backend.CountSource}; in brackets the daemon's own `leader_sidecar_lease_requests_total` (all results) where it has the same verb{(withPolling ? ", or the reference elector's own count" : "")}; the last column is the daemon's own count of all its requests" : "each daemon's own `leader_sidecar_lease_requests_total` (all results) and the reference elector's own count")}.{notRequests}{(withPolling ? " The ratio of the follower row compares the mean, with a sidecar follower's 0 taken as 1 request per window." : "")}"));
            table.AppendLine();
            table.AppendLine($"| elector | replica | role | {string.Join(" | ", columns.Select(c => c.Kind == RequestKind.NotARequest ? $"*{c.Header}*" : c.Header))} | total | own count |");
            table.AppendLine($"|---|---|---|{string.Concat(columns.Select(_ => "---|"))}---|---|");
            void Add(string elector, Replica replica)
            {
                var cells = columns.Select(c => counted && c.OwnVerb is { } verb
                    ? Report.F($"{replica.Rate[c.Key]:0.0} ({replica.Own[verb]:0.0})")
                    : Report.F($"{replica.Rate[c.Key]:0.0}"));
                table.AppendLine(Report.F($"| {elector} | {replica.Identity} | {(replica.Leader ? "leader" : "follower")} | {string.Join(" | ", cells)} | {replica.Rate.Total:0.0} | {replica.Own.Verbs.Values.Sum():0.0} |"));
            }

            foreach (var replica in sidecar)
            {
                Add("leader-sidecar", replica);
            }

            foreach (var replica in polling)
            {
                Add("polling reference", replica);
            }

            if (before.ServerTotals is { } totalsBefore && after.ServerTotals is { } totalsAfter)
            {
                // The store's own counters cover every client: here, only the three daemons.
                var server = totalsAfter.Keys.Select(k => (Method: k, PerMinute: (totalsAfter[k] - totalsBefore.GetValueOrDefault(k)) / minutes))
                    .Where(m => m.PerMinute > 0).OrderBy(m => m.Method, StringComparer.Ordinal).ToList();
                var proxies = columns.Where(c => c.Kind != RequestKind.NotARequest).Sum(c => sidecar.Sum(r => r.Rate[c.Key]));
                table.AppendLine().AppendLine(Report.F(
                    $"The server's own count over the same window, every client together (only these three daemons used it): {(server.Count == 0 ? "no calls" : string.Join(", ", server.Select(m => Report.F($"{m.Method} {m.PerMinute:0.0}"))))} per minute, {server.Sum(m => m.PerMinute):0.0} in all; the three replicas' columns above add up to {proxies:0.0}."));
            }

            if (counted)
            {
                // Start-up included, so the reader sees what the counters catch when there is something to catch.
                string SinceStart(int i) => string.Join(", ", columns
                    .Select(c => (c.Header, Count: after.Sidecar[i].GetValueOrDefault(c.Key)))
                    .Where(c => c.Count > 0)
                    .Select(c => Report.F($"{c.Header} {c.Count}")));
                table.AppendLine().AppendLine(Report.F(
                    $"From each daemon's start to the end of the window (start-up and settling included), in all: {string.Join("; ", daemons.Select((d, i) => $"{d.Identity}: {SinceStart(i)}"))}."));
            }

            if (!stable)
            {
                table.AppendLine().AppendLine("**Leadership changed during the window: the figures are not steady state.**");
            }

            h.Report.Details.Add(("Lease-store load by request", table.ToString()));
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
        var server = new List<Dictionary<string, long>?>();
        foreach (var daemon in daemons)
        {
            server.Add(await h.Backend.ServerCountsAsync(sidecarLease, daemon.Identity));
        }

        var pollingServer = new List<Dictionary<string, long>?>();
        foreach (var elector in electors)
        {
            pollingServer.Add(await h.Backend.ServerCountsAsync(pollingLease, elector.Identity));
        }
        if (server.Any(c => c is null) || pollingServer.Any(c => c is null))
        {
            // The store cannot tell replicas apart: their own counts are all there is.
            return new Snapshot(false, own, own, pollingOwn, pollingOwn, null);
        }

        return new Snapshot(true, [.. server.Select(c => c!)], own, [.. pollingServer.Select(c => c!)], pollingOwn, await h.Backend.ServerTotalsAsync());
    }

    /// <param name="OnServer">True when the counts are the store's per replica, false when they are the replicas' own.</param>
    private sealed record Snapshot(
        bool OnServer,
        List<Dictionary<string, long>> Sidecar,
        List<Dictionary<string, long>> SidecarOwn,
        List<Dictionary<string, long>> Polling,
        List<Dictionary<string, long>> PollingOwn,
        Dictionary<string, long>? ServerTotals);

    private sealed record Replica(string Identity, bool Leader, Rate Rate, Rate Own);

    /// <summary>Counts per minute by key; reads, writes and the total follow the backend's columns.</summary>
    private sealed record Rate(Dictionary<string, double> Verbs, IReadOnlyList<RequestColumn> Columns)
    {
        public double this[string key] => Verbs.GetValueOrDefault(key);

        public double Writes => Sum(RequestKind.Write);

        public double Reads => Sum(RequestKind.Read);

        public double Total => Writes + Reads;

        private double Sum(RequestKind kind) => Columns.Where(c => c.Kind == kind).Sum(c => this[c.Key]);
    }
}
