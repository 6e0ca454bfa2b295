using System.Diagnostics;

namespace LeaderSidecar.Bench.Scenarios;

/// <summary>
/// Three candidates; the leader is stopped (SIGTERM) or killed (SIGKILL); the time from the signal
/// to the first other candidate reporting LEADER on its surface (its gRPC <c>Watch</c> stream) is
/// one trial. The stopped replica is started again and the next trial waits for steady state.
/// </summary>
internal static class Failover
{
    private static readonly string[] Identities = ["a", "b", "c"];
    private static int _sidecarFailedReleases;

    public static async Task RunAsync(Harness h, bool crash)
    {
        var trials = crash ? h.Options.Crash : h.Options.Graceful;
        var name = crash ? "crash failover (SIGKILL → a follower reports LEADER)" : "graceful failover (SIGTERM → a follower reports LEADER)";
        var withPolling = h.Backend.PollingApi is not null;
        Harness.Log($"{name}: {trials} trials {(withPolling ? "each for the sidecar and the polling reference" : "of the sidecar")}");
        var sidecarFailedBefore = _sidecarFailedReleases;
        var sidecar = new Sample(await SidecarAsync(h, crash ? Daemon.SigKill : Daemon.SigTerm, trials));
        var sidecarFailedReleases = _sidecarFailedReleases - sidecarFailedBefore;
        Harness.Log($"  sidecar: {Report.Ms(sidecar)}");
        var failedBefore = PollingElector.FailedReleases;
        var polling = new Sample(withPolling ? await PollingAsync(h, crash, trials) : []);
        var failedReleases = PollingElector.FailedReleases - failedBefore;
        if (withPolling)
        {
            Harness.Log($"  polling: {Report.Ms(polling)}");
        }

        string target;
        bool pass;
        if (crash)
        {
            var limit = h.Timing.LeaseDuration.TotalMilliseconds + 250;
            target = Report.F($"≤ lease duration + 250 ms = {limit:0} ms (p95 and max)");
            pass = sidecar.P95 <= limit && sidecar.Max <= limit;
        }
        else
        {
            target = "p50 < 100 ms";
            pass = sidecar.Median < 100;
        }

        var format = crash ? (Func<Sample, string>)Report.Seconds : Report.Ms;
        h.Report.Rows.Add(new Row(name, format(sidecar), format(polling), Report.Ratio(polling.Median, sidecar.Median), target, Report.Verdict(pass)));
        var sidecarReleases = Report.F($" Trials in which the stopped sidecar logged \"Could not release the lease\" (followers then wait for expiry): {sidecarFailedReleases}.");
        var pollingReleases = Report.F($" Releases of the polling reference that were not written (client-go logs them and followers wait for expiry): {failedReleases}.");
        h.Report.Details.Add((name, Report.F($"""
            Every trial, ms: sidecar min {sidecar.Min:0.0}, median {sidecar.Median:0.0}, p95 {sidecar.P95:0.0}, max {sidecar.Max:0.0}{(withPolling ? Report.F($";\npolling reference min {polling.Min:0.0}, median {polling.Median:0.0}, p95 {polling.P95:0.0}, max {polling.Max:0.0}") : "")}.
            Timing: {h.Timing}.{(crash ? "" : sidecarReleases + (withPolling ? pollingReleases : ""))}
            """)));
    }

    /// <summary>
    /// A random share of a retry period, so that the signal falls at a random point between two
    /// renews (and polls) instead of always at the same distance from the last one.
    /// </summary>
#pragma warning disable CA5394 // Not security: only spreads the trials over the renew cycle.
    private static TimeSpan RandomPhase(Harness h) => h.Timing.RetryPeriod * Random.Shared.NextDouble();
#pragma warning restore CA5394

    private static async Task<List<double>> SidecarAsync(Harness h, int signal, int trials)
    {
        var lease = h.Backend.NewLease(signal == Daemon.SigKill ? "kill" : "term");
        var daemons = new List<Daemon>();
        var latencies = new List<double>();
        try
        {
            foreach (var id in Identities)
            {
                daemons.Add(await h.StartDaemonAsync(lease, id));
            }

            for (var trial = 0; trial < trials; trial++)
            {
                var leader = daemons[await h.SingleLeaderAsync([.. daemons.Select(d => d.Roles)])];
                await Task.Delay(h.Settle + RandomPhase(h));
                using var cancel = new CancellationTokenSource(h.Timing.LeaseDuration * 4);
                var t0 = Stopwatch.GetTimestamp();
                leader.Signal(signal);
                var first = await Task.WhenAny(daemons.Where(d => d != leader).Select(d => d.Roles.FirstAsync("LEADER", t0, cancel.Token)));
                var latency = Stopwatch.GetElapsedTime(t0, await first).TotalMilliseconds;
                await cancel.CancelAsync();
                latencies.Add(latency);
                Harness.Log(Report.F($"  sidecar trial {trial + 1}: {latency:0.0} ms"));

                var exit = await leader.WaitForExitAsync(TimeSpan.FromSeconds(30));
                if (signal == Daemon.SigTerm && exit != 0)
                {
                    h.Report.Failures.Add(Report.F($"graceful failover: the stopped leader exited with {exit}"));
                }

                if (leader.Output.Contains("Could not release the lease", StringComparison.Ordinal))
                {
                    Harness.Log("  the stopped leader could not release the lease: " + leader.Output.Split('\n').Last(l => l.Contains("Could not release", StringComparison.Ordinal)));
                    Interlocked.Increment(ref _sidecarFailedReleases);
                }

                await leader.DisposeAsync();
                daemons[daemons.IndexOf(leader)] = await h.StartDaemonAsync(lease, leader.Identity);
            }
        }
        finally
        {
            foreach (var daemon in daemons)
            {
                await daemon.DisposeAsync();
            }
        }

        return latencies;
    }

    private static async Task<List<double>> PollingAsync(Harness h, bool crash, int trials)
    {
        var lease = h.Backend.NewLease(crash ? "kill-poll" : "term-poll");
        var electors = Identities.Select(id => h.StartElector(lease, id)).ToList();
        var latencies = new List<double>();
        try
        {
            for (var trial = 0; trial < trials; trial++)
            {
                var leader = electors[await h.SingleLeaderAsync([.. electors.Select(e => e.Roles)])];
                await Task.Delay(h.Settle + RandomPhase(h));
                using var cancel = new CancellationTokenSource(h.Timing.LeaseDuration * 4);
                var t0 = Stopwatch.GetTimestamp();
                var stopping = crash ? leader.CrashAsync() : leader.StopAsync();
                var first = await Task.WhenAny(electors.Where(e => e != leader).Select(e => e.Roles.FirstAsync("LEADER", t0, cancel.Token)));
                var latency = Stopwatch.GetElapsedTime(t0, await first).TotalMilliseconds;
                await cancel.CancelAsync();
                latencies.Add(latency);
                Harness.Log(Report.F($"  polling trial {trial + 1}: {latency:0.0} ms"));
                await stopping;
                await leader.DisposeAsync();
                electors[electors.IndexOf(leader)] = h.StartElector(lease, leader.Identity);
            }
        }
        finally
        {
            foreach (var elector in electors)
            {
                await elector.DisposeAsync();
            }
        }

        return latencies;
    }
}
