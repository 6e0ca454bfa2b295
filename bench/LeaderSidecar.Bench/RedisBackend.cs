using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace LeaderSidecar.Bench;

/// <summary>
/// The Redis backend (<c>bench/run --backend redis</c>): Debian's <c>redis-server</c>, one server on
/// a free loopback port with its append-only file in the run's scratch directory. A counted replica
/// logs in as its own ACL user <c>bench_ID</c>; the server's <c>MONITOR</c> stream (read by a
/// <c>redis-cli monitor</c> started with the server) names each command's connection, and
/// <c>CLIENT LIST</c>, read every half second, names each connection's user. The others connect as
/// the default user.
/// </summary>
internal sealed partial class RedisBackend : ServerBackend
{
    private const string Other = "other";

    private static readonly RequestColumn[] Columns =
    [
        new("evalsha", "EVALSHA (acquire, renew, release)", RequestKind.Write),
        new("hgetall", "HGETALL", RequestKind.Read),
        new("subscribe", "SUBSCRIBE (opened)", RequestKind.Read),
        new(Other, "other commands", RequestKind.Read),
        new("ping", "PING on the subscription", RequestKind.NotARequest),
    ];

    private readonly int _port = Harness.FreePort();
    private readonly ConcurrentDictionary<(string Address, string Command), long> _seen = new();
    private readonly ConcurrentDictionary<string, string> _users = new();
    private readonly CancellationTokenSource _stop = new();
    private Process? _monitor;
    private Task _listing = Task.CompletedTask;

    private RedisBackend(string directory)
        : base(directory)
    {
    }

    public override string Section => "redis";

    public override string Title => "Redis backend, on a real Redis";

    public override string Name => "Redis";

    public override string Description => Report.F(
        $"a real Redis {Version} (Debian `redis-server`) on 127.0.0.1:{_port}, append-only file (fsync every second), data in a temporary directory; started and stopped by the harness");

    public override IReadOnlyList<RequestColumn> RequestColumns => Columns;

    public override string CountSource =>
        "the server's `MONITOR` stream, each command counted by its connection and each connection by its ACL user (`CLIENT LIST`), each counted replica logging in as its own user; scripts' own calls (`[0 lua]`) are not counted";

    private string PasswordFile => Path.Combine(Directory, "password");

    public static async Task<RedisBackend> StartAsync(string scratch)
    {
        return await StartedAsync(new RedisBackend(System.IO.Directory.CreateDirectory(Path.Combine(scratch, "redis")).FullName), async redis =>
        {
            await redis.ReadVersionAsync("redis-server");
            var log = Path.Combine(redis.Directory, "redis.log");
            await redis.LaunchAsync(
                "redis-server",
                ["--port", redis._port.ToString(CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--dir", redis.Directory, "--appendonly", "yes", "--save", "", "--logfile", log, "--daemonize", "no"],
                log,
                async () => (await redis.CliAsync("PING")).Trim() == "PONG");
            await File.WriteAllTextAsync(redis.PasswordFile, "bench\n");
            redis.StartCounting();
        });
    }

    public override Task PrepareCountedAsync(string identity) =>
        CliAsync("ACL", "SETUSER", User(identity), "reset", "on", ">bench", "~*", "&*", "+@all");

    public override string[] DaemonArgs(string lease, string identity, bool counted) =>
    [
        "--backend", "redis", "--redis", Report.F($"redis://{(counted ? User(identity) + "@" : "")}127.0.0.1:{_port}/0"),
        .. counted ? ["--redis-password-file", PasswordFile] : Array.Empty<string>(),
        "--namespace", "bench", "--lease-name", lease,
    ];

    public override async Task<Dictionary<string, long>?> ServerCountsAsync(string lease, string identity)
    {
        await ListClientsAsync();
        var counts = Columns.ToDictionary(c => c.Key, _ => 0L);
        foreach (var ((address, command), count) in _seen)
        {
            if (_users.GetValueOrDefault(address) == User(identity))
            {
                counts[counts.ContainsKey(command) ? command : Other] += count;
            }
        }

        return counts;
    }

    public override async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _listing;
        if (_monitor is { } monitor)
        {
            if (!monitor.HasExited)
            {
                monitor.Kill();
                await monitor.WaitForExitAsync();
            }

            Daemon.Untrack(monitor);
            monitor.Dispose();
        }

        await base.DisposeAsync();
        _stop.Dispose();
    }

    private static string User(string identity) => $"bench_{identity}";

    /// <summary>Starts <c>redis-cli monitor</c>, and the loop that learns each connection's user.</summary>
    private void StartCounting()
    {
        var monitor = Daemon.Track(Process.Start(Daemon.StartInfo("redis-cli", ["-p", _port.ToString(CultureInfo.InvariantCulture), "monitor"]))!);
        _monitor = monitor;
        monitor.OutputDataReceived += (_, e) =>
        {
            // 1700000000.123456 [0 127.0.0.1:50464] "evalsha" "…" …; a script's own calls say [0 lua].
            if (e.Data is { } line && MonitorLine().Match(line) is { Success: true } match)
            {
                _seen.AddOrUpdate((match.Groups["address"].Value, match.Groups["command"].Value.ToLowerInvariant()), 1, (_, n) => n + 1);
            }
        };
        monitor.ErrorDataReceived += (_, _) => { };
        monitor.BeginOutputReadLine();
        monitor.BeginErrorReadLine();
        _listing = Task.Run(async () =>
        {
            while (!_stop.IsCancellationRequested)
            {
                try
                {
                    await ListClientsAsync();
                    await Task.Delay(500, _stop.Token);
                }
                catch (OperationCanceledException)
                {
                }
                catch (InvalidOperationException e)
                {
                    Harness.Log($"redis CLIENT LIST failed: {e.Message}");
                }
            }
        });
    }

    /// <summary>Notes the user of every connection open now (<c>CLIENT LIST</c> is not in the MONITOR stream).</summary>
    private async Task ListClientsAsync()
    {
        foreach (Match client in ClientLine().Matches(await CliAsync("CLIENT", "LIST")))
        {
            _users[client.Groups["address"].Value] = client.Groups["user"].Value;
        }
    }

    private Task<string> CliAsync(params string[] args) =>
        RunAsync("redis-cli", ["-p", _port.ToString(CultureInfo.InvariantCulture), .. args]);

    [GeneratedRegex(@"^\+?[0-9.]+ \[[0-9]+ (?<address>[0-9.]+:[0-9]+)\] ""(?<command>[^""]+)""")]
    private static partial Regex MonitorLine();

    [GeneratedRegex(@"\baddr=(?<address>\S+) .*\buser=(?<user>\S+)", RegexOptions.Multiline)]
    private static partial Regex ClientLine();
}
