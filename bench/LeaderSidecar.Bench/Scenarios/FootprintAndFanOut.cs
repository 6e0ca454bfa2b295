using System.Diagnostics;
using Google.Protobuf.WellKnownTypes;
using Grpc.Net.Client;
using Leadership.V1;

namespace LeaderSidecar.Bench.Scenarios;

/// <summary>
/// Binary size; resident memory of an idle leader and follower on the backend and of an idle
/// file-backend leader; the same leader with 1,000 gRPC <c>Watch</c> streams open; then transitions
/// between that leader and the follower, each timed from the trigger to every one of the 1,000
/// streams receiving the new role.
/// </summary>
internal static class FootprintAndFanOut
{
    private const int Streams = 1000;

    // The daemon allows 32 concurrent streams per HTTP/2 connection; 40 channels (each its own
    // connection) of 25 streams stay under it.
    private const int Channels = 40;

    public static async Task RunAsync(Harness h)
    {
        var binary = new FileInfo(h.Options.Binary).Length / 1024.0 / 1024.0;
        h.Report.Rows.Add(new Row("binary size", Report.F($"{binary:0.0} MiB"), "—", "—", "< 25 MB", Report.Verdict(binary * 1.048576 < 25)));

        var lease = h.Backend.NewLease("fanout");
        var samples = h.Options.Quick ? 3 : 10;
        var name = h.Backend.Name;
        Harness.Log($"footprint: idle leader and follower ({name} backend), idle leader (file backend)");
        await using var leader = await h.StartDaemonAsync(lease, "x", "--allow-tcp-control");
        await h.SingleLeaderAsync([leader.Roles]);
        await using var follower = await h.StartDaemonAsync(lease, "y", "--allow-tcp-control");
        var leaseDir = Directory.CreateDirectory(Path.Combine(h.Scratch, "footprint")).FullName;
        var fileBinary = h.Options.FileBinary ?? h.Options.Binary;
        await using var fileLeader = await Daemon.StartAsync(fileBinary, "f", ["--backend", "file", "--lease-dir", leaseDir, "--lease-name", "footprint"]);
        await h.SingleLeaderAsync([leader.Roles, follower.Roles]);
        await h.SingleLeaderAsync([fileLeader.Roles]);
        await Task.Delay(TimeSpan.FromSeconds(10));
        var sampled = await Task.WhenAll(RssAsync(leader, samples), RssAsync(follower, samples), RssAsync(fileLeader, samples));
        var (idle, idleFollower, idleFile) = (sampled[0], sampled[1], sampled[2]);
        var idleBreakdown = Breakdown(leader);
        var idleFollowerBreakdown = Breakdown(follower);
        var idleFileBreakdown = Breakdown(fileLeader);
        h.Report.Rows.Add(new Row($"idle RSS, leader, {name} backend (after 10 s)", Mib(idle), "—", "—", "< 30 MB", Report.Verdict(idle.Median / 1024 * 1.048576 < 30)));
        h.Report.Rows.Add(new Row($"idle RSS, follower, {name} backend (after 10 s)", Mib(idleFollower), "—", "—", "< 30 MB", Report.Verdict(idleFollower.Median / 1024 * 1.048576 < 30)));
        h.Report.Rows.Add(new Row("idle RSS, leader, file backend (after 10 s)", Mib(idleFile), "—", "—", "< 30 MB", Report.Verdict(idleFile.Median / 1024 * 1.048576 < 30)));
        await fileLeader.DisposeAsync();

        Harness.Log($"footprint: {Streams} watch streams");
        var channels = Enumerable.Range(0, Channels).Select(_ => GrpcChannel.ForAddress(leader.GrpcAddress)).ToList();
        using var stop = new CancellationTokenSource();
        var timelines = Enumerable.Range(0, Streams).Select(_ => new RoleTimeline()).ToList();
        var opened = timelines.Select(_ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).ToList();
        var readers = Enumerable.Range(0, Streams).Select(i => Task.Run(() => leader.WatchAsync(timelines[i], stop.Token, channels[i % Channels], opened[i]))).ToList();
        try
        {
            await Task.WhenAll(opened.Select(o => o.Task)).WaitAsync(TimeSpan.FromSeconds(60));
            var broken = timelines.Count(t => t.Current is null or "GONE");
            await Task.Delay(TimeSpan.FromSeconds(3));
            var watched = await leader.MetricAsync(Harness.Http, "leader_sidecar_grpc_watch_streams");
            var loaded = await RssAsync(leader, samples);
            var loadedBreakdown = Breakdown(leader);
            h.Report.Rows.Add(new Row(Report.F($"RSS with {Streams} Watch streams ({Channels} HTTP/2 connections)"), Mib(loaded), "—", "—", "report", Report.Verdict(null)));
            h.Report.Details.Add(("Footprint", Report.F($"""
                Binary: {new FileInfo(h.Options.Binary).Length:N0} bytes ({h.Options.Binary}){(fileBinary == h.Options.Binary ? "" : Report.F($"; the file-backend leader's: {new FileInfo(fileBinary).Length:N0} bytes ({fileBinary})"))}. RSS is VmRSS from /proc/PID/status, {samples} samples 1 s apart (MiB = 1,048,576 bytes).
                Last sample split into anonymous memory and pages of the binary (RssAnon + RssFile + RssShmem): idle {name} leader {idleBreakdown}; idle {name} follower {idleFollowerBreakdown}; idle file leader {idleFileBreakdown}; with the streams {loadedBreakdown}.
                With the streams open the daemon's `leader_sidecar_grpc_watch_streams` said {watched}; {broken} of {Streams} streams had failed to open.
                """)));

            await FanOutAsync(h, leader, follower, timelines);
        }
        finally
        {
            await stop.CancelAsync();
            await Task.WhenAll(readers);
            foreach (var channel in channels)
            {
                channel.Dispose();
            }
        }
    }

    private static async Task FanOutAsync(Harness h, Daemon x, Daemon y, List<RoleTimeline> streams)
    {
        var transitions = h.Options.Quick ? 4 : 20;
        Harness.Log($"watch fan-out: {transitions} transitions of a leader with {Streams} streams");
        var holdOff = TimeSpan.FromSeconds(1);
        var stepDowns = new List<double>();
        var takeOvers = new List<double>();
        var perStream = new List<double>();
        var missed = 0;
        var lost = 0;
        for (var i = 0; i < transitions; i++)
        {
            var leaderIndex = await h.SingleLeaderAsync([x.Roles, y.Roles]);
            await Task.Delay(h.Settle);

            // x steps down (its streams must see a role other than LEADER), or y resigns and x takes over.
            var stepDown = leaderIndex == 0;
            var resigning = stepDown ? x : y;
            Func<string, bool> match = stepDown ? r => r is "FOLLOWER" or "UNKNOWN" : r => r == "LEADER";
            using var cancel = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            var t0 = Stopwatch.GetTimestamp();
            var resign = new Leadership.V1.Leadership.LeadershipClient(resigning.Channel)
                .ResignAsync(new ResignRequest { HoldOff = Duration.FromTimeSpan(holdOff) }).ResponseAsync;
            var seen = await Task.WhenAll(streams.Select(async s =>
            {
                try
                {
                    return Stopwatch.GetElapsedTime(t0, await s.FirstAsync(match, t0, cancel.Token)).TotalMilliseconds;
                }
                catch (OperationCanceledException)
                {
                    return double.NaN;
                }
            }));
            await resign;
            if (seen.All(double.IsNaN))
            {
                // No stream saw it because the transition did not happen (see the report).
                lost++;
                Harness.Log(Report.F($"  transition {i + 1} did not happen within 10 s; roles now x {x.Roles.Current}, y {y.Roles.Current}; {resigning.Identity}'s last lines:"));
                foreach (var line in resigning.Output.Split('\n').TakeLast(4))
                {
                    Harness.Log("    " + line);
                }

                await Task.Delay(holdOff + TimeSpan.FromMilliseconds(500));
                continue;
            }

            missed += seen.Count(double.IsNaN);
            var notified = seen.Where(v => !double.IsNaN(v)).ToList();
            perStream.AddRange(notified);
            var last = notified.Count == 0 ? double.NaN : notified.Max();
            (stepDown ? stepDowns : takeOvers).Add(last);
            Harness.Log(Report.F($"  {(stepDown ? "step-down" : "take-over")} {i + 1}: first stream {notified.DefaultIfEmpty(double.NaN).Min():0.0} ms, last {last:0.0} ms"));

            // Let the hold-off pass, so that the resigned one is a follower again.
            await Task.Delay(holdOff + TimeSpan.FromMilliseconds(500));
        }

        var down = new Sample(stepDowns);
        var over = new Sample(takeOvers);
        var all = new Sample(stepDowns.Concat(takeOvers));
        var streamsSample = new Sample(perStream);
        h.Report.Rows.Add(new Row(
            Report.F($"watch fan-out: trigger → last of {Streams} streams notified"),
            Report.F($"{all.Median:0.0} / {all.P95:0.0} ms, p99 {all.P99:0.0}, max {all.Max:0.0} (n={all.Count})"),
            "—",
            "—",
            "p99 < 100 ms",
            Report.Verdict(all.P99 < 100 && missed == 0) + (lost > 0 ? Report.F($"; {lost} of {transitions} transitions did not happen (see below)") : "")));
        h.Report.Details.Add(("Watch fan-out", Report.F($"""
            {Streams} `Watch` streams on one daemon (x) over {Channels} HTTP/2 connections, a second daemon (y) on the same Lease.
            A transition is triggered by a gRPC `Resign` (hold-off {holdOff.TotalSeconds:0} s) sent to the leader, timed from just before the call:

            - x resigns, its streams must report a role other than LEADER (step-down): last stream {Report.Ms(down)}
            - y resigns, x takes over through its watch of the lease, its streams must report LEADER (take-over, includes the hand-over): last stream {Report.Ms(over)}
            - every stream of every transition: p50 {streamsSample.Median:0.0} ms, p99 {streamsSample.P99:0.0} ms, max {streamsSample.Max:0.0} ms (n={streamsSample.Count}); streams that missed a transition within 10 s: {missed}
            - transitions that did not happen within 10 s (the resigning daemon's release failed, see the log excerpt in the run's output): {lost} of {transitions}

            The stream readers run in the harness process on the same two cores, so reader scheduling is part of every figure.
            """)));
    }

    private static async Task<Sample> RssAsync(Daemon daemon, int samples)
    {
        var values = new List<double>();
        for (var i = 0; i < samples; i++)
        {
            values.Add(daemon.ResidentKiB());
            await Task.Delay(TimeSpan.FromSeconds(1));
        }

        return new Sample(values);
    }

    private static string Breakdown(Daemon daemon) => Report.F(
        $"{Daemon.ReadStatusKiB(daemon.ProcessId, "RssAnon:") / 1024.0:0.0} + {Daemon.ReadStatusKiB(daemon.ProcessId, "RssFile:") / 1024.0:0.0} + {Daemon.ReadStatusKiB(daemon.ProcessId, "RssShmem:") / 1024.0:0.0} MiB");

    private static string Mib(Sample kib) =>
        Report.F($"{kib.Median / 1024:0.0} / {kib.P95 / 1024:0.0} MiB (n={kib.Count})");
}
