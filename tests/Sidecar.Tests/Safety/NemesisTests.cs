using System.Diagnostics;
using System.Globalization;
using System.Text;
using LeaderSidecar.Tests.Deploy;
using Xunit.Abstractions;

namespace LeaderSidecar.Tests.Safety;

/// <summary>
/// Three real daemons on one store under a seeded random schedule of faults, judged by the merged
/// history of every process: one fact per store, each a few rounds by default.
/// <c>SAFETY_SEED</c> replays a run (a new seed is drawn otherwise), <c>SAFETY_ROUNDS</c> sets the
/// length, <c>SAFETY_BACKEND</c> runs only that store's fact (the others return at once, saying so);
/// <c>scripts/safety</c> runs long ones.
/// </summary>
[Collection(Alone.Name)]
public sealed class NemesisTests(ITestOutputHelper output)
{
    /// <summary>
    /// The liveness bound: after the faults heal, a leader within a lease duration plus a retry
    /// period (with its 20 % jitter), plus 500 ms for the requests and for scheduling three daemons,
    /// the store and the nemesis on a shared two-core machine.
    /// </summary>
    private static readonly TimeSpan LivenessBound =
        SafetyCluster.LeaseDuration + (SafetyCluster.RetryPeriod * 1.2) + TimeSpan.FromMilliseconds(500);

    [Fact]
    public Task On_kubernetes_no_two_replicas_ever_lead_at_once() => RunAsync("kubernetes", defaultRounds: 12);

    [Fact]
    public Task On_etcd_no_two_replicas_ever_lead_at_once() => RunAsync("etcd", defaultRounds: 6);

    [Fact]
    public Task On_the_file_store_no_two_replicas_ever_lead_at_once() => RunAsync("file", defaultRounds: 4);

    [Fact]
    public Task On_postgres_no_two_replicas_ever_lead_at_once() => RunAsync("postgres", defaultRounds: 3);

    [Fact]
    public Task On_mysql_no_two_replicas_ever_lead_at_once() => RunAsync("mysql", defaultRounds: 2);

    [Fact]
    public Task On_redis_no_two_replicas_ever_lead_at_once() => RunAsync("redis", defaultRounds: 3);

    private async Task RunAsync(string backend, int defaultRounds)
    {
        if (Environment.GetEnvironmentVariable("SAFETY_BACKEND") is { Length: > 0 } only && only != backend)
        {
            Assert.Contains(only, ISafetyBackend.Names);
            output.WriteLine($"SAFETY_BACKEND={only}: not running on {backend}");
            return;
        }

        var seed = int.TryParse(Environment.GetEnvironmentVariable("SAFETY_SEED"), CultureInfo.InvariantCulture, out var s) ? s : Random.Shared.Next(1_000_000);
        var rounds = int.TryParse(Environment.GetEnvironmentVariable("SAFETY_ROUNDS"), CultureInfo.InvariantCulture, out var r) ? r : defaultRounds;
        output.WriteLine($"{backend}: seed {seed}, {rounds} rounds, binary {EndToEnd.DaemonProcess.BinaryPath}");

        await using var cluster = await SafetyCluster.StartAsync(backend, replicas: 3);
        var nemesis = new Nemesis(cluster, seed);
        var runStart = Stopwatch.GetTimestamp();
        Exception? failure = null;
        try
        {
            await cluster.WaitForLeaderAsync(TimeSpan.FromSeconds(30), "a first leader");

            for (var round = 1; round <= rounds; round++)
            {
                await nemesis.RunRoundAsync(round, nemesis.Choose());
            }
        }
        catch (Exception e)
        {
            failure = e;
        }

        var runEnd = Stopwatch.GetTimestamp();
        var report = HistoryChecker.Check(cluster.Histories(), nemesis.Heals, nemesis.Events, runStart, runEnd);
        var summary = Summary(backend, seed, rounds, nemesis, report, runEnd - runStart, cluster.Crashes);
        output.WriteLine(summary);
        var problems = new List<string>();
        if (failure is not null)
        {
            problems.Add($"the run stopped: {failure.Message}");
        }

        problems.AddRange(cluster.Crashes.Select(c => "CRASH: " + c));
        problems.AddRange(report.DescribeOverlaps(runStart).Select(o => "OVERLAP: " + o));
        problems.AddRange(report.TermProblems.Select(t => "TERM: " + t));
        problems.AddRange(report.Gaps.Where(g => g.Gap > LivenessBound).Select(g =>
            $"LIVENESS: after round {g.Round} healed, nobody led for {g.Gap.TotalMilliseconds:0} ms (bound {LivenessBound.TotalMilliseconds:0} ms)"));

        var written = Write(backend, seed, summary, report, cluster, problems.Count > 0);
        output.WriteLine($"summary and timeline: {written}");
        if (problems.Count > 0)
        {
            Assert.Fail($"{backend}, seed {seed} (replay: scripts/safety --backend {backend} --seed {seed} --rounds {rounds}):\n{string.Join('\n', problems)}\n\nmerged timeline:\n{report.Timeline}");
        }
    }

    private static string Summary(string backend, int seed, int rounds, Nemesis nemesis, SafetyReport report, long elapsed, IReadOnlyList<string> crashes)
    {
        var gaps = report.Gaps.Select(g => g.Gap.TotalMilliseconds).Order().ToList();
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"| store | seed | rounds | run | leadership terms | overlaps | term problems | median gap after heal | worst gap after heal |\n");
        text.Append("|---|---|---|---|---|---|---|---|---|\n");
        text.Append(CultureInfo.InvariantCulture,
            $"| {backend} | {seed} | {nemesis.Heals.Count}/{rounds} | {Stopwatch.GetElapsedTime(0, elapsed).TotalSeconds:0} s | {report.Intervals.Count} | {report.Overlaps.Count} | {report.TermProblems.Count} | " +
            $"{(gaps.Count > 0 ? gaps[gaps.Count / 2] : 0):0} ms | {(gaps.Count > 0 ? gaps[^1] : 0):0} ms |\n\n");
        if (crashes.Count > 0)
        {
            text.Append(CultureInfo.InvariantCulture, $"**{crashes.Count} daemon process(es) exited by themselves** (a crash; each ends its history when it exited):\n\n");
            text.AppendJoin(string.Empty, crashes.Select(c => $"- {c}\n")).Append('\n');
        }

        text.Append("| fault | injected |\n|---|---|\n");
        foreach (var (kind, count) in nemesis.Injected)
        {
            text.Append(CultureInfo.InvariantCulture, $"| {kind} | {count} |\n");
        }

        return text.ToString();
    }

    private static string Write(string backend, int seed, string summary, SafetyReport report, SafetyCluster cluster, bool failed)
    {
        var directory = Repository.PathOf("artifacts/safety");
        Directory.CreateDirectory(directory);
        var path = Path.Combine(directory, $"{backend}-seed-{seed}.md");
        var text = new StringBuilder(summary);
        text.Append("\n## Merged timeline\n\n```\n").Append(report.Timeline).Append("```\n");
        if (failed)
        {
            foreach (var (process, lines) in cluster.Logs())
            {
                text.Append(CultureInfo.InvariantCulture, $"\n## Log of {process}\n\n```\n{string.Join('\n', lines)}\n```\n");
            }
        }

        File.WriteAllText(path, text.ToString());
        File.WriteAllText(Path.Combine(directory, $"{backend}-summary.md"), summary);
        return path;
    }
}

/// <summary>
/// Runs its classes after every other test class, one at a time: the liveness bound is about the
/// daemons, not about how many other tests share the two cores.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class Alone
{
    public const string Name = "Alone";
}
