using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using LeaderSidecar.Bench;
using LeaderSidecar.Bench.Scenarios;

BenchOptions options;
try
{
    options = BenchOptions.Parse(args);
}
catch (Exception e) when (e is ArgumentException or FormatException)
{
    Console.Error.WriteLine($"leader-sidecar-bench: {e.Message}");
    return 2;
}

// Whatever happens, no daemon outlives the harness.
static void KillAll()
{
    foreach (var process in Daemon.All)
    {
        try
        {
            process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
        }
    }
}

AppDomain.CurrentDomain.ProcessExit += (_, _) => KillAll();
using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, _ => KillAll());
using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, _ => KillAll());

var scratch = Directory.CreateTempSubdirectory("leader-sidecar-bench-").FullName;
var report = new Report();
var startedAt = DateTime.UtcNow;
var loadBefore = File.ReadAllText("/proc/loadavg").Trim();
var clock = Stopwatch.StartNew();
try
{
    await using var backend = await StartBackendAsync(options, scratch);
    var h = new Harness(options, backend, scratch, report);
    Harness.Log($"binary {options.Binary}; {backend.Description}; {options.Timing}");

    var scenarios = new (string Name, Func<Task> Run)[]
    {
        ("footprint", () => FootprintAndFanOut.RunAsync(h)),
        ("startup", () => Startup.RunAsync(h)),
        ("http", () => LocalHttp.RunAsync(h)),
        ("flood", () => ConnectionFlood.RunAsync(h)),
        ("failover", () => Failover.RunAsync(h, crash: false)),
        ("crash", () => Failover.RunAsync(h, crash: true)),
        ("load", () => ApiLoad.RunAsync(h)),
    };
    foreach (var (name, run) in scenarios.Where(s => options.Runs(s.Name)))
    {
        try
        {
            await run();
        }
        catch (Exception e)
        {
            Harness.Log($"{name} failed: {e}");
            report.Failures.Add($"{name}: {e.GetType().Name}: {e.Message.Split('\n')[0]}");
        }
    }

    // Only this backend's section (and the notes) are rewritten; the rest of the file stays.
    var existing = File.Exists(options.Out) ? await File.ReadAllTextAsync(options.Out) : "";
    (string, Func<string, string?>)? compare = backend.CompareWith is { } other
        ? (other.Name, BenchmarksDocument.Figures(BenchmarksDocument.Section(existing, other.Section)))
        : null;
    var markdown = report.ToMarkdown(Header(options, backend, startedAt, clock.Elapsed, loadBefore), backend.Name, compare);
    var sections = new List<(string, string)> { (backend.Section, markdown) };
    if (File.Exists("bench/NOTES.md"))
    {
        sections.Add((BenchmarksDocument.Notes, await File.ReadAllTextAsync("bench/NOTES.md")));
    }

    await BenchmarksDocument.WriteAsync(options.Out, sections);
    Harness.Log($"wrote the {backend.Section} section of {options.Out}");
    Console.WriteLine(markdown);
    return report.Failures.Count == 0 ? 0 : 1;
}
finally
{
    KillAll();
    Directory.Delete(scratch, recursive: true);
}

static async Task<Backend> StartBackendAsync(BenchOptions options, string scratch) => options.Backend switch
{
    "etcd" => await EtcdBackend.StartAsync(scratch),
    "postgres" => await PostgresBackend.StartAsync(),
    "mysql" => await MySqlBackend.StartAsync(scratch),
    "redis" => await RedisBackend.StartAsync(scratch),
    _ => new KubernetesBackend(options.Kubeconfig is { } kubeconfig
        ? new ClusterApi(kubeconfig, options.Namespace)
        : await TestServerApi.StartAsync(scratch)),
};

static string Header(BenchOptions options, Backend backend, DateTime startedAt, TimeSpan took, string loadBefore)
{
    string Env(string name) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } value ? value : "unknown";
    var cpu = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "unknown";
    var os = File.ReadLines("/etc/os-release").FirstOrDefault(l => l.StartsWith("PRETTY_NAME=", StringComparison.Ordinal))?.Split('=', 2)[1].Trim('"') ?? "unknown";
    var memory = File.ReadLines("/proc/meminfo").First().Split(':', 2)[1].Trim();
    var md = new StringBuilder();
    md.AppendLine(Report.F($"## {backend.Title}")).AppendLine();
    md.AppendLine("Written by this command:").AppendLine();
    md.AppendLine("```sh").AppendLine(options.Command).AppendLine("```").AppendLine();
    if (options.Quick)
    {
        md.AppendLine(Report.F($"> **This is a `--quick` smoke run**: fast timing ({options.Timing}), few trials, {options.Load} min of load. Its figures are not the published ones.")).AppendLine();
    }

    md.AppendLine("| machine | |").AppendLine("|---|---|");
    md.AppendLine(Report.F($"| CPU | {cpu}, {Environment.ProcessorCount} cores visible |"));
    md.AppendLine(Report.F($"| memory | {memory} |"));
    md.AppendLine(Report.F($"| OS, kernel | {os}, Linux {File.ReadAllText("/proc/sys/kernel/osrelease").Trim()} |"));
    md.AppendLine(Report.F($"| .NET | SDK {Env("BENCH_DOTNET_SDK")}; harness on {RuntimeInformation.FrameworkDescription} |"));
    md.AppendLine(Report.F($"| binary | `{options.Binary}`, native AOT, {new FileInfo(options.Binary).Length:N0} bytes |"));
    md.AppendLine(Report.F($"| commit | {Env("BENCH_GIT_COMMIT")} |"));
    md.AppendLine(Report.F($"| date | {startedAt:yyyy-MM-dd HH:mm} UTC, took {took.TotalMinutes:0.0} min |"));
    md.AppendLine(Report.F($"| load average (1, 5, 15 min; running/total; last pid) | before: {loadBefore}; after: {File.ReadAllText("/proc/loadavg").Trim()} |"));
    md.AppendLine(Report.F($"| lease store | {backend.Description} |"));
    md.AppendLine(Report.F($"| timing | {options.Timing} |"));
    md.AppendLine();
    md.Append("Figures are median / p95 (nearest rank) over n trials unless said otherwise. The machine is shared: other jobs run beside the benchmark (see the load average), so tails are noisy.");
    if (backend.CompareWith is { } other)
    {
        md.Append(Report.F($" There is no polling reference on {backend.Name}; beside each figure is the same row of the {other.Name} section, taken by its own run (see that section's header)."));
    }

    md.AppendLine().AppendLine();
    return md.ToString();
}
