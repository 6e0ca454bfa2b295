using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using LeaderSidecar.Tests.EndToEnd;

namespace LeaderSidecar.Tests.Safety;

/// <summary>
/// Real daemon processes competing for one lease in the store an <see cref="ISafetyBackend"/>
/// runs, each with its own wall clock (libfaketime, so the nemesis can make it jump), and the
/// histories of every process that ran.
/// </summary>
internal sealed class SafetyCluster : IAsyncDisposable
{
    public const string Namespace = "safety";
    public const string LeaseName = "singleton";

    /// <summary>Short timings so a round takes seconds; the margin rules are the same as the defaults'.</summary>
    public static readonly TimeSpan LeaseDuration = Timing.LeaseDuration;
    public static readonly TimeSpan RenewDeadline = Timing.RenewDeadline;
    public static readonly TimeSpan RetryPeriod = Timing.RetryPeriod;

    /// <summary>libfaketime's thread-safe build, from Debian's <c>libfaketime</c> package.</summary>
    public const string FakeTimeLibrary = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(1) };
    private readonly TempDirectory _dir = new();
    private readonly List<LeadershipHistory> _ended = [];
    private readonly List<(string, IReadOnlyList<string>)> _logs = [];
    private readonly List<string> _crashes = [];
    private ISafetyBackend _backend = null!;

    private SafetyCluster(IReadOnlyList<Replica> replicas)
    {
        Replicas = replicas;
    }

    public ISafetyBackend Backend => _backend;

    public IReadOnlyList<Replica> Replicas { get; }

    /// <summary>Starts the store named <paramref name="backend"/> and a daemon per replica on it.</summary>
    public static async Task<SafetyCluster> StartAsync(string backend, int replicas)
    {
        if (!File.Exists(FakeTimeLibrary))
        {
            throw new InvalidOperationException($"{FakeTimeLibrary} is missing: install Debian's libfaketime (.ci/run does)");
        }

        var cluster = new SafetyCluster([.. Enumerable.Range(0, replicas).Select(i => new Replica($"r{i}"))]);
        try
        {
            cluster._backend = await ISafetyBackend.StartAsync(backend, cluster.Replicas);
            foreach (var replica in cluster.Replicas)
            {
                cluster.SetWallClockOffset(replica, TimeSpan.Zero);
            }

            await Task.WhenAll(cluster.Replicas.Select(cluster.StartProcessAsync));
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    /// <summary>Starts a new process for a replica whose previous one has ended.</summary>
    public async Task StartProcessAsync(Replica replica)
    {
        var environment = new Dictionary<string, string>
        {
            ["LD_PRELOAD"] = FakeTimeLibrary,
            ["FAKETIME_TIMESTAMP_FILE"] = ClockFile(replica),
            // Re-read the offset every second; CLOCK_MONOTONIC stays real, as the election and the
            // merged history rely on it.
            ["FAKETIME_CACHE_DURATION"] = "1",
            ["DONT_FAKE_MONOTONIC"] = "1",
            // Without this, libfaketime 0.9.10 turns the runtime's monotonic condition-variable
            // waits into a busy loop (half a core per idle daemon), which starves the machine.
            ["FAKETIME_FORCE_MONOTONIC_FIX"] = "0",
        };
        replica.Incarnation++;
        replica.Process = await DaemonProcess.StartAsync(
            environment,
            [
                .. _backend.Arguments(replica),
                "--lease-name", LeaseName,
                "--namespace", Namespace,
                "--identity", replica.Identity,
                "--lease-duration", Go(LeaseDuration),
                "--renew-deadline", Go(RenewDeadline),
                "--retry-period", Go(RetryPeriod),
            ]);
        replica.Paused = false;
    }

    /// <summary>SIGKILL, then waits until the process is reaped: its leadership ends no later than that.</summary>
    public async Task KillAsync(Replica replica)
    {
        var process = replica.Process!;
        await process.KillAsync();
        EndProcess(replica, Stopwatch.GetTimestamp());
    }

    /// <summary>SIGTERM, then waits for the graceful exit (step down, release).</summary>
    public async Task TerminateAsync(Replica replica)
    {
        var process = replica.Process!;
        process.Terminate();
        try
        {
            await process.WaitForExitAsync(RenewDeadline * 3);
        }
        catch (OperationCanceledException)
        {
            await process.KillAsync();
        }

        EndProcess(replica, Stopwatch.GetTimestamp());
    }

    /// <summary>Every process that exited by itself, each a line for the report.</summary>
    public IReadOnlyList<string> Crashes => _crashes;

    /// <summary>
    /// Ends the history of every process that exited by itself (a crash) at the moment it exited,
    /// so a leader that died is not counted as leading on, and returns those replicas.
    /// </summary>
    public IReadOnlyList<Replica> EndCrashed()
    {
        var crashed = new List<Replica>();
        foreach (var replica in Replicas.Where(r => r.Process is { HasExited: true }))
        {
            var process = replica.Process!;
            var ago = DateTime.Now - process.ExitTime;
            var exitedAt = Stopwatch.GetTimestamp() - (long)(Math.Max(0, ago.TotalSeconds) * Stopwatch.Frequency);
            var last = process.OutputLines.LastOrDefault(l => l.Contains("exception", StringComparison.OrdinalIgnoreCase)) ?? (process.OutputLines is [.., var final] ? final : "");
            _crashes.Add($"{replica.Label} exited by itself (code {process.ExitCode}): {last}");
            EndProcess(replica, exitedAt);
            crashed.Add(replica);
        }

        return crashed;
    }

    /// <summary>Sets how far this replica's wall clock is from the real one (libfaketime reads it within a second).</summary>
    public void SetWallClockOffset(Replica replica, TimeSpan offset)
    {
        var seconds = (long)offset.TotalSeconds;
        File.WriteAllText(ClockFile(replica), (seconds >= 0 ? "+" : "") + seconds.ToString(CultureInfo.InvariantCulture) + "\n");
    }

    /// <summary>The replica whose running, unpaused process says LEADER on <c>/status</c> now, if any.</summary>
    public async Task<Replica?> LeaderAsync()
    {
        foreach (var replica in Replicas.Where(r => r.Process is not null && !r.Paused))
        {
            if (await RoleAsync(replica) == "LEADER")
            {
                return replica;
            }
        }

        return null;
    }

    /// <summary>Waits until some replica says LEADER; fails after <paramref name="deadline"/>.</summary>
    public Task WaitForLeaderAsync(TimeSpan deadline, string what) =>
        Poll.UntilAsync(async () => await LeaderAsync() is not null, deadline, what);

    /// <summary>The histories of every process so far; running ones are read as they stand.</summary>
    public IReadOnlyList<LeadershipHistory> Histories()
    {
        EndCrashed();
        var running = Replicas
            .Where(r => r.Process is not null)
            .Select(r => LeadershipHistory.Parse(r.Label, r.Identity, r.Process!.OutputLines, endedAt: null));
        return [.. _ended, .. running];
    }

    /// <summary>Every process's log, for a failure report.</summary>
    public IEnumerable<(string Process, IReadOnlyList<string> Lines)> Logs() =>
        _logs.Concat(Replicas.Where(r => r.Process is not null).Select(r => (r.Label, r.Process!.OutputLines)));

    public async ValueTask DisposeAsync()
    {
        foreach (var replica in Replicas)
        {
            if (replica.Process is { } process)
            {
                if (replica.Paused)
                {
                    process.Resume();
                }

                await process.DisposeAsync();
            }
        }

        if (_backend is not null)
        {
            await _backend.DisposeAsync();
        }

        _dir.Dispose();
    }

    private void EndProcess(Replica replica, long endedAt)
    {
        var process = replica.Process!;
        _ended.Add(LeadershipHistory.Parse(replica.Label, replica.Identity, process.OutputLines, endedAt));
        _logs.Add((replica.Label, process.OutputLines));
        replica.Process = null;
        replica.Paused = false;
        _ = process.DisposeAsync().AsTask();
    }

    private static async Task<string?> RoleAsync(Replica replica)
    {
        try
        {
            var body = await Http.GetStringAsync(new Uri(replica.Process!.BaseAddress, "/status"));
            using var json = JsonDocument.Parse(body);
            return json.RootElement.GetProperty("role").GetString();
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            return null;
        }
    }

    private string ClockFile(Replica replica) => _dir.File($"{replica.Identity}.faketime");

    private static string Go(TimeSpan span) =>
        span.TotalMilliseconds % 1000 == 0
            ? string.Create(CultureInfo.InvariantCulture, $"{(int)span.TotalSeconds}s")
            : string.Create(CultureInfo.InvariantCulture, $"{(int)span.TotalMilliseconds}ms");

    /// <summary>One candidate identity; a restart is a new process (incarnation) of the same identity.</summary>
    internal sealed class Replica(string identity)
    {
        public string Identity { get; } = identity;

        public int Incarnation { get; set; }

        public string Label => $"{Identity}#{Incarnation}";

        public DaemonProcess? Process { get; set; }

        public bool Paused { get; set; }
    }
}
