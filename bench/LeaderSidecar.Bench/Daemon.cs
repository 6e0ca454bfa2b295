using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using Grpc.Core;
using Grpc.Net.Client;
using Leadership.V1;

namespace LeaderSidecar.Bench;

/// <summary>
/// One real <c>leader-sidecar</c> process on ephemeral ports (learnt from its "listening" log
/// lines), with a gRPC <c>Watch</c> on it that stamps every role it reports.
/// </summary>
internal sealed partial class Daemon : IAsyncDisposable
{
    public const int SigTerm = 15;
    public const int SigKill = 9;

    private static readonly ConcurrentDictionary<int, Process> Running = new();
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _output = new();
    private readonly TaskCompletionSource<Uri> _http = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<Uri> _grpc = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _stop = new();
    private GrpcChannel? _channel;
    private Task _watching = Task.CompletedTask;
    private int _disposed;

    private Daemon(Process process, string identity)
    {
        _process = process;
        Identity = identity;
    }

    public string Identity { get; }

    public int ProcessId => _process.Id;

    /// <summary>Null while running; else how it ended and its last log lines, for the report.</summary>
    public string? Ended => _process.HasExited
        ? $"daemon {Identity} (pid {_process.Id}) exited with {_process.ExitCode}; its last lines:\n{string.Join('\n', _output.TakeLast(12))}"
        : null;

    public Uri HttpAddress { get; private set; } = null!;

    public Uri GrpcAddress { get; private set; } = null!;

    /// <summary>Every role this daemon's own gRPC <c>Watch</c> stream reported, stamped on arrival.</summary>
    public RoleTimeline Roles { get; } = new();

    public string Output => string.Join('\n', _output);

    public GrpcChannel Channel => _channel ??= GrpcChannel.ForAddress(GrpcAddress);

    /// <summary>Every daemon still running, so that an interrupted run can kill them all.</summary>
    public static IEnumerable<Process> All => Running.Values;

    public static ProcessStartInfo StartInfo(string binary, IEnumerable<string> args)
    {
        var info = new ProcessStartInfo(binary)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        // Every setting is explicit; nothing leaks in from the machine.
        foreach (var name in new[] { "KUBECONFIG", "KUBERNETES_SERVICE_HOST", "POD_NAME", "POD_NAMESPACE" })
        {
            info.Environment.Remove(name);
        }

        foreach (var name in info.Environment.Keys.Where(k => k.StartsWith("LEADER_SIDECAR_", StringComparison.Ordinal)).ToList())
        {
            info.Environment.Remove(name);
        }

        return info;
    }

    public static Process Track(Process process)
    {
        Running[process.Id] = process;
        return process;
    }

    public static void Untrack(Process process) => Running.TryRemove(process.Id, out _);

    /// <summary>
    /// Starts a daemon, waits until both surfaces listen and opens a <c>Watch</c> on it. With
    /// <paramref name="descriptorLimit"/> it runs under that file-descriptor limit, soft and hard
    /// (through <c>sh</c>'s <c>ulimit -n</c>, which sets both).
    /// </summary>
    public static async Task<Daemon> StartAsync(string binary, string identity, IEnumerable<string> args, bool watch = true, int? descriptorLimit = null)
    {
        string[] daemonArgs = ["--identity", identity, "--http-address", "127.0.0.1:0", "--grpc-address", "127.0.0.1:0", "--log-format", "json", .. args];
        var info = descriptorLimit is { } limit
            ? StartInfo("/bin/sh", ["-c", $"ulimit -n {limit} && exec \"$0\" \"$@\"", binary, .. daemonArgs])
            : StartInfo(binary, daemonArgs);
        var daemon = new Daemon(Track(Process.Start(info)!), identity);
        daemon._process.OutputDataReceived += (_, e) => daemon.OnLine(e.Data);
        daemon._process.ErrorDataReceived += (_, e) => daemon.OnLine(e.Data);
        daemon._process.BeginOutputReadLine();
        daemon._process.BeginErrorReadLine();
        try
        {
            var exited = daemon._process.WaitForExitAsync();
            var listening = Task.WhenAll(daemon._http.Task, daemon._grpc.Task);
            if (await Task.WhenAny(listening, exited, Task.Delay(TimeSpan.FromSeconds(30))) != listening)
            {
                throw new InvalidOperationException($"daemon {identity} did not start listening:\n{daemon.Output}");
            }

            daemon.HttpAddress = await daemon._http.Task;
            daemon.GrpcAddress = await daemon._grpc.Task;
        }
        catch
        {
            await daemon.DisposeAsync();
            throw;
        }

        if (watch)
        {
            daemon._watching = daemon.WatchAsync(daemon.Roles, daemon._stop.Token);
        }

        return daemon;
    }

    /// <summary>Reads one <c>Watch</c> stream into <paramref name="roles"/> until it ends; returns when it ends.</summary>
    public async Task WatchAsync(RoleTimeline roles, CancellationToken cancellationToken, GrpcChannel? channel = null, TaskCompletionSource? opened = null)
    {
        try
        {
            var client = new Leadership.V1.Leadership.LeadershipClient(channel ?? Channel);
            using var call = client.Watch(new WatchRequest(), cancellationToken: cancellationToken);
            while (await call.ResponseStream.MoveNext(cancellationToken))
            {
                roles.Add(RoleName(call.ResponseStream.Current.Role));
                opened?.TrySetResult();
            }
        }
        catch (RpcException)
        {
            // The daemon went away or the stream was cancelled.
        }
        catch (OperationCanceledException)
        {
        }
        finally
        {
            roles.Add("GONE");
            opened?.TrySetResult();
        }
    }

    public static string RoleName(Role role) => role switch
    {
        Role.Leader => "LEADER",
        Role.Follower => "FOLLOWER",
        _ => "UNKNOWN",
    };

    /// <summary>Sends a signal: <see cref="SigTerm"/> as the kubelet does, <see cref="SigKill"/> as a crash or OOM kill.</summary>
    public void Signal(int signal)
    {
        if (Kill(_process.Id, signal) != 0)
        {
            throw new InvalidOperationException($"kill({_process.Id}, {signal}) failed: errno {Marshal.GetLastWin32Error()}");
        }
    }

    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var deadline = new CancellationTokenSource(timeout);
        await _process.WaitForExitAsync(deadline.Token);
        return _process.ExitCode;
    }

    /// <summary>Resident set size in KiB, from <c>/proc/PID/status</c>.</summary>
    public long ResidentKiB() => ReadStatusKiB(_process.Id, "VmRSS:");

    public static long ReadStatusKiB(int pid, string field)
    {
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
        {
            if (line.StartsWith(field, StringComparison.Ordinal))
            {
                return long.Parse(line[field.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
            }
        }

        throw new InvalidOperationException($"{field} not in /proc/{pid}/status");
    }

    /// <summary>The daemon's own count of lease-store requests by verb (<c>leader_sidecar_lease_requests_total</c>, all results).</summary>
    public async Task<Dictionary<string, long>> RequestCountsAsync(HttpClient http)
    {
        var text = await http.GetStringAsync(new Uri(HttpAddress, "/metrics"));
        var counts = new Dictionary<string, long>();
        foreach (Match match in RequestsMetric().Matches(text))
        {
            var verb = match.Groups["verb"].Value;
            counts[verb] = counts.GetValueOrDefault(verb) + (long)double.Parse(match.Groups["value"].Value, CultureInfo.InvariantCulture);
        }

        return counts;
    }

    /// <summary>A metric's value summed over its label sets, or null when absent.</summary>
    public async Task<double?> MetricAsync(HttpClient http, string name)
    {
        var text = await http.GetStringAsync(new Uri(HttpAddress, "/metrics"));
        double? sum = null;
        foreach (var line in text.Split('\n'))
        {
            if (line.StartsWith(name, StringComparison.Ordinal) && (line.Length > name.Length && (line[name.Length] == '{' || line[name.Length] == ' ')))
            {
                sum = (sum ?? 0) + double.Parse(line[(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture);
            }
        }

        return sum;
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }

        await _stop.CancelAsync();
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        await _watching;
        Untrack(_process);
        _channel?.Dispose();
        _process.Dispose();
        _stop.Dispose();
    }

    private void OnLine(string? line)
    {
        if (line is null)
        {
            return;
        }

        if (_output.Count < 2000)
        {
            _output.Enqueue(line);
        }

        if (HttpListening().Match(line) is { Success: true } http)
        {
            _http.TrySetResult(new Uri(http.Groups["url"].Value));
        }

        if (GrpcListening().Match(line) is { Success: true } grpc)
        {
            _grpc.TrySetResult(new Uri(grpc.Groups["url"].Value));
        }
    }

    [GeneratedRegex(@"http surface listening on (?<url>http://[0-9.]+:\d+)")]
    private static partial Regex HttpListening();

    [GeneratedRegex(@"grpc surface listening on (?<url>http://[0-9.]+:\d+)")]
    private static partial Regex GrpcListening();

    [GeneratedRegex(@"^leader_sidecar_lease_requests_total\{[^}]*verb=""(?<verb>[a-z]+)""[^}]*\} (?<value>[0-9.e+]+)", RegexOptions.Multiline)]
    private static partial Regex RequestsMetric();

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);
}
