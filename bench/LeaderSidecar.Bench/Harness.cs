using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace LeaderSidecar.Bench;

/// <summary>What every scenario needs: the binary, the backend, the timing, a scratch directory and the report.</summary>
internal sealed class Harness(BenchOptions options, Backend backend, string scratch, Report report)
{
    public BenchOptions Options => options;

    public Backend Backend => backend;

    public Timing Timing => options.Timing;

    public string Scratch => scratch;

    public Report Report => report;

    public static HttpClient Http { get; } = new(new SocketsHttpHandler { ConnectTimeout = TimeSpan.FromSeconds(2) }) { Timeout = TimeSpan.FromSeconds(10) };

    /// <summary>How long to wait before each trial so that every replica is watching and idle.</summary>
    public TimeSpan Settle => options.Quick ? TimeSpan.FromMilliseconds(500) : TimeSpan.FromSeconds(1);

    public static void Log(string line) => Console.Error.WriteLine($"[{DateTime.Now:HH:mm:ss}] {line}");

    /// <summary>A loopback port nobody listens on (bound and released at once).</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>A daemon on the backend for <paramref name="lease"/>, with its own credentials.</summary>
    public Task<Daemon> StartDaemonAsync(string lease, string identity, params string[] extra) =>
        Daemon.StartAsync(options.Binary, identity, [.. backend.DaemonArgs(lease, identity, counted: false), .. Timing.Args, .. extra]);

    /// <summary>A daemon whose requests the backend counts per replica (<see cref="Backend.ServerCountsAsync"/>).</summary>
    public async Task<Daemon> StartCountedDaemonAsync(string lease, string identity)
    {
        await backend.PrepareCountedAsync(identity);
        return await Daemon.StartAsync(options.Binary, identity, [.. backend.DaemonArgs(lease, identity, counted: true), .. Timing.Args]);
    }

    /// <summary>A polling reference elector; only on a backend with a <see cref="Backend.PollingApi"/>.</summary>
    public PollingElector StartElector(string lease, string identity)
    {
        var api = backend.PollingApi ?? throw new InvalidOperationException($"no polling reference on the {backend.Name} backend");
        var candidate = api.Candidate(lease, identity);
        var elector = new PollingElector(api.CreateClient(candidate), api.BaseAddress, api.Namespace, lease, identity, Timing);
        elector.Start();
        return elector;
    }

    /// <summary>Waits until exactly one of the timelines says LEADER and every other one FOLLOWER; returns its index.</summary>
    public async Task<int> SingleLeaderAsync(IReadOnlyList<RoleTimeline> roles)
    {
        var deadline = Stopwatch.StartNew();
        var limit = (Timing.LeaseDuration * 3) + TimeSpan.FromSeconds(30);
        while (true)
        {
            var current = roles.Select(r => r.Current).ToList();
            if (current.Count(r => r == "LEADER") == 1 && current.Count(r => r == "FOLLOWER") == roles.Count - 1)
            {
                return current.IndexOf("LEADER");
            }

            if (deadline.Elapsed > limit)
            {
                throw new TimeoutException($"no single leader after {limit}: {string.Join(", ", current)}");
            }

            await Task.Delay(10);
        }
    }
}
