using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using LeaderSidecar.Tests.Safety;

namespace LeaderSidecar.Tests.EndToEnd;

/// <summary>
/// The daemons of one end-to-end test on one lease: started with the same arguments, stopped by
/// signal, and judged together at the end from their logged role changes (at no instant did two
/// say "leader"; under one lease uid the term never went back).
/// </summary>
internal sealed partial class DaemonGroup(params string[] sharedArgs) : IAsyncDisposable
{
    // What a promised bound leaves to the test itself: polling /status, process start, a loaded machine.
    public static readonly TimeSpan ObservationMargin = TimeSpan.FromSeconds(2);

    // The log events "acquired the lease" and "released the lease", as a JSON log line carries them.
    private const string Acquired = "\"EventId\":1,";
    private const string Released = "\"EventId\":3,";

    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(5) };
    private readonly long _runStart = Stopwatch.GetTimestamp();
    private readonly List<(DaemonProcess Daemon, string Identity)> _daemons = [];
    private readonly Dictionary<DaemonProcess, long> _endedAt = [];

    /// <summary>Daemons of the given identities, started together.</summary>
    public async Task<List<DaemonProcess>> StartAsync(params string[] identities) =>
        [.. await Task.WhenAll(identities.Select(id => StartOneAsync(id)))];

    /// <summary>One daemon of <paramref name="identity"/> with the shared arguments and <paramref name="extra"/> ones.</summary>
    public async Task<DaemonProcess> StartOneAsync(string identity, string[]? extra = null, IReadOnlyDictionary<string, string>? environment = null)
    {
        var daemon = await DaemonProcess.StartAsync(environment ?? new Dictionary<string, string>(), [.. sharedArgs, "--identity", identity, .. extra ?? []]);
        lock (_daemons)
        {
            _daemons.Add((daemon, identity));
        }

        return daemon;
    }

    /// <summary>SIGTERM, and a clean exit (0) after releasing.</summary>
    public async Task TerminateAsync(DaemonProcess daemon)
    {
        daemon.Terminate();
        Assert.Equal(0, await daemon.WaitForExitAsync(TimeSpan.FromSeconds(15)));
        _endedAt[daemon] = Stopwatch.GetTimestamp();
    }

    /// <summary>
    /// SIGTERM to <paramref name="leader"/>, then waits until <paramref name="successor"/> leads, and
    /// returns the time from the leader's logged release to the successor's logged acquisition: the
    /// daemons' own timestamps, so the leader's shutdown and the test's polling do not count.
    /// </summary>
    public async Task<TimeSpan> TerminateAndTimeTakeOverAsync(DaemonProcess leader, DaemonProcess successor)
    {
        var logged = successor.OutputLines.Count;
        await TerminateAsync(leader);
        await DaemonProcess.SingleLeaderAsync([successor]);
        return await successor.LoggedAtAsync(Acquired, logged) - await leader.LoggedAtAsync(Released);
    }

    /// <summary>SIGKILL: nothing is released; the others wait the lease out.</summary>
    public async Task KillAsync(DaemonProcess daemon)
    {
        await daemon.KillAsync();
        _endedAt[daemon] = Stopwatch.GetTimestamp();
    }

    public static async Task<long> TermAsync(DaemonProcess daemon) =>
        (await daemon.RoleAndTermAsync()).Term ?? throw new InvalidOperationException("the leader reports no term");

    /// <summary>Waits until every one of <paramref name="daemons"/> reports a role <paramref name="matches"/> accepts.</summary>
    public static Task AllAsync(IEnumerable<DaemonProcess> daemons, Func<string?, bool> matches, TimeSpan deadline, string what) =>
        Poll.UntilAsync(async () => (await Task.WhenAll(daemons.Select(d => d.RoleAsync()))).All(matches), deadline, what);

    /// <summary>Exactly one leader among <paramref name="daemons"/> within <paramref name="bound"/> (plus what observing it costs).</summary>
    public static async Task LeaderWithinAsync(IReadOnlyList<DaemonProcess> daemons, TimeSpan bound, string when)
    {
        await Poll.UntilAsync(async () => (await Task.WhenAll(daemons.Select(d => d.RoleAsync()))).Count(r => r == "LEADER") == 1, bound + ObservationMargin, $"a leader within {bound.TotalSeconds} s {when}");
        await DaemonProcess.SingleLeaderAsync(daemons);
    }

    /// <summary>How many lease-store requests of <paramref name="verb"/> failed with <paramref name="result"/>, from /metrics.</summary>
    public static async Task<double> FailedRequestsAsync(DaemonProcess daemon, string verb, string result)
    {
        var metrics = await Http.GetStringAsync(new Uri(daemon.BaseAddress, "/metrics"));
        return RequestsLine().Matches(metrics)
            .Where(m => m.Groups["labels"].Value.Contains($"verb=\"{verb}\"", StringComparison.Ordinal) && m.Groups["labels"].Value.Contains($"result=\"{result}\"", StringComparison.Ordinal))
            .Sum(m => double.Parse(m.Groups["value"].Value, CultureInfo.InvariantCulture));
    }

    /// <summary>Whether <paramref name="daemon"/> ever logged a change to leader.</summary>
    public static bool HasLed(DaemonProcess daemon) =>
        LeadershipHistory.Parse("", "", daemon.OutputLines, null).Changes.Any(c => c.To == "Leader");

    /// <summary>
    /// Judges the role changes every daemon of this group logged (CLOCK_MONOTONIC, shared by every
    /// process on the host): no two processes said "leader" at one instant, and under one lease
    /// uid the term never went back and a new holder always had a new term. A daemon's lines reach
    /// the test a little after it answers /status, so this first waits for every daemon's first
    /// logged change.
    /// </summary>
    public async Task AssertOneLeaderAtATimeAsync()
    {
        List<LeadershipHistory> histories = [];
        await Poll.UntilAsync(
            () =>
            {
                histories = [.. _daemons.Select((d, i) => LeadershipHistory.Parse($"{d.Identity}#{i}", d.Identity, d.Daemon.OutputLines, _endedAt.TryGetValue(d.Daemon, out var at) ? at : null))];
                return Task.FromResult(histories.All(h => h.Changes.Count > 0));
            },
            TimeSpan.FromSeconds(10),
            "every daemon's first logged role change");
        var report = HistoryChecker.Check(histories, [], [], _runStart, Stopwatch.GetTimestamp());
        Assert.True(report.Overlaps.Count == 0, string.Join('\n', report.DescribeOverlaps(_runStart)) + "\n" + report.Timeline);
        Assert.True(report.TermProblems.Count == 0, string.Join('\n', report.TermProblems) + "\n" + report.Timeline);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var (daemon, _) in _daemons)
        {
            await daemon.DisposeAsync();
        }
    }

    [GeneratedRegex(@"^leader_sidecar_lease_requests_total\{(?<labels>[^}]*)\} (?<value>[0-9.e+]+)", RegexOptions.Multiline)]
    private static partial Regex RequestsLine();
}
