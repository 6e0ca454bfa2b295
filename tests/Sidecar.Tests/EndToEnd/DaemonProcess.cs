using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace LeaderSidecar.Tests.EndToEnd;

/// <summary>
/// A real <c>leader-sidecar</c> process. By default the JIT build next to the sources; set
/// <c>LEADER_SIDECAR_BIN</c> to test another build, such as the published native AOT binary.
/// </summary>
internal sealed partial class DaemonProcess : IAsyncDisposable
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(5) };
    private readonly Process _process;
    private int _disposed;
    private readonly ConcurrentQueue<string> _output = new();
    private readonly TaskCompletionSource<Uri> _listening = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<string> _grpcListening = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<Uri> _probeListening = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private DaemonProcess(Process process)
    {
        _process = process;
    }

    public Uri BaseAddress { get; private set; } = new("http://127.0.0.1/");

    /// <summary>Where the gRPC surface listens, as logged: <c>http://HOST:PORT</c> or <c>unix:/path</c>.</summary>
    public string GrpcAddress { get; private set; } = "";

    public int ProcessId => _process.Id;

    /// <summary>Where the probe listener listens, once logged (only with <c>--probe-address</c>).</summary>
    public Task<Uri> ProbeAddress => _probeListening.Task;

    public string Output => string.Join('\n', _output);

    /// <summary>Every line the daemon wrote so far, stdout and stderr interleaved as they arrived.</summary>
    public IReadOnlyList<string> OutputLines => [.. _output];

    public bool HasExited => _process.HasExited;

    /// <summary>When the process exited (local wall clock), once <see cref="HasExited"/>.</summary>
    public DateTime ExitTime => _process.ExitTime;

    /// <summary>The exit code, once <see cref="HasExited"/>.</summary>
    public int ExitCode => _process.ExitCode;

    public static string BinaryPath
    {
        get
        {
            var root = AppContext.BaseDirectory;
            while (!File.Exists(Path.Combine(root, "Sidecar.sln")))
            {
                root = Path.GetDirectoryName(root) ?? throw new InvalidOperationException("Sidecar.sln not found above the test binaries");
            }

            if (Environment.GetEnvironmentVariable("LEADER_SIDECAR_BIN") is { Length: > 0 } bin)
            {
                // Relative to the repository root, as scripts/test passes it.
                return Path.GetFullPath(bin, root);
            }
#if DEBUG
            const string configuration = "Debug";
#else
            const string configuration = "Release";
#endif
            return Path.Combine(root, "src", "Sidecar", "bin", configuration, "net10.0", "leader-sidecar");
        }
    }

    /// <summary>Runs the binary to completion, for flag handling: exit code, stdout, stderr.</summary>
    public static Task<(int ExitCode, string StdOut, string StdErr)> RunToExitAsync(params string[] args) =>
        RunToExitAsync(new Dictionary<string, string>(), args);

    /// <summary>Runs the binary to completion with extra environment variables.</summary>
    public static async Task<(int ExitCode, string StdOut, string StdErr)> RunToExitAsync(IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        var info = StartInfo(args);
        foreach (var (name, value) in environment)
        {
            info.Environment[name] = value;
        }

        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await process.WaitForExitAsync(deadline.Token);
        return (process.ExitCode, await stdout, await stderr);
    }

    /// <summary>Starts a daemon on ephemeral HTTP and gRPC ports (unless <paramref name="args"/> say otherwise) and waits until it listens.</summary>
    public static Task<DaemonProcess> StartAsync(params string[] args) =>
        StartAsync(new Dictionary<string, string>(), args);

    /// <summary>As <see cref="StartAsync(string[])"/>, with extra environment variables.</summary>
    public static async Task<DaemonProcess> StartAsync(IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        var info = StartInfo(["--http-address", "127.0.0.1:0", "--grpc-address", "127.0.0.1:0", "--log-format", "json", .. args]);
        foreach (var (name, value) in environment)
        {
            info.Environment[name] = value;
        }

        var daemon = new DaemonProcess(Process.Start(info)!);
        daemon._process.OutputDataReceived += (_, e) => daemon.OnLine(e.Data);
        daemon._process.ErrorDataReceived += (_, e) => daemon.OnLine(e.Data);
        daemon._process.BeginOutputReadLine();
        daemon._process.BeginErrorReadLine();

        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        try
        {
            daemon.BaseAddress = await daemon._listening.Task.WaitAsync(deadline.Token);
            daemon.GrpcAddress = await daemon._grpcListening.Task.WaitAsync(deadline.Token);
        }
        catch (OperationCanceledException)
        {
            await daemon.DisposeAsync();
            throw new TimeoutException($"daemon did not start listening: {daemon.Output}");
        }

        return daemon;
    }

    /// <summary>GET a path; returns the status code and the JSON body.</summary>
    public async Task<(HttpStatusCode Code, JsonElement Body)> GetAsync(string path)
    {
        using var response = await Http.GetAsync(new Uri(BaseAddress, path));
        var body = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, JsonDocument.Parse(body).RootElement.Clone());
    }

    /// <summary>The role this daemon reports on <c>/status</c>, or null when it does not answer.</summary>
    public async Task<string?> RoleAsync()
    {
        try
        {
            var (_, body) = await GetAsync("/status");
            return body.GetProperty("role").GetString();
        }
        catch (HttpRequestException)
        {
            return null;
        }
    }

    /// <summary>
    /// Waits until exactly one of <paramref name="daemons"/> reports LEADER and all others FOLLOWER,
    /// failing at once on a proven overlap.
    /// </summary>
    /// <remarks>
    /// Answers of different processes are taken at different instants, so two LEADER answers in one
    /// sweep may only be a hand-over seen mid-way. Each poll therefore asks every daemon twice, one
    /// after the other; when a daemon answers LEADER with one term both times and another daemon's
    /// LEADER answer was taken in between, both claimed at that instant: a real overlap.
    /// </remarks>
    public static async Task<DaemonProcess> SingleLeaderAsync(IReadOnlyList<DaemonProcess> daemons)
    {
        DaemonProcess? leader = null;
        await Poll.UntilAsync(
            async () =>
            {
                var sweeps = new List<(int Daemon, string? Role, long? Term)>();
                for (var pass = 0; pass < 2; pass++)
                {
                    for (var i = 0; i < daemons.Count; i++)
                    {
                        var (role, term) = await daemons[i].RoleAndTermAsync();
                        sweeps.Add((i, role, term));
                    }
                }

                for (var first = 0; first < sweeps.Count; first++)
                {
                    var a = sweeps[first];
                    var again = sweeps.FindIndex(first + 1, s => s.Daemon == a.Daemon);
                    if (a.Role != "LEADER" || again < 0 || sweeps[again].Role != "LEADER" || sweeps[again].Term != a.Term)
                    {
                        continue;
                    }

                    var between = sweeps.Skip(first + 1).Take(again - first - 1).FirstOrDefault(s => s.Role == "LEADER");
                    Assert.True(between.Role is null, $"daemons {a.Daemon} and {between.Daemon} both claimed leadership at once");
                }

                var last = sweeps.TakeLast(daemons.Count).ToList();
                var leaders = last.Where(s => s.Role == "LEADER").ToList();
                leader = leaders.Count == 1 ? daemons[leaders[0].Daemon] : null;
                return leader is not null && last.Count(s => s.Role == "FOLLOWER") == daemons.Count - 1;
            },
            TimeSpan.FromSeconds(30),
            "exactly one leader");
        return leader!;
    }

    /// <summary>
    /// When this daemon logged the first line carrying <paramref name="eventId"/> (such as
    /// <c>"EventId":1,</c>) after its first <paramref name="skip"/> lines, by the line's own
    /// timestamp. Lines reach the test a little after the daemon acts, so this waits for it.
    /// </summary>
    public async Task<DateTimeOffset> LoggedAtAsync(string eventId, int skip = 0)
    {
        string? line = null;
        await Poll.UntilAsync(
            () => Task.FromResult((line = OutputLines.Skip(skip).FirstOrDefault(l => l.Contains(eventId, StringComparison.Ordinal))) is not null),
            TimeSpan.FromSeconds(10),
            $"a log line with {eventId}");
        using var json = JsonDocument.Parse(line!);
        return json.RootElement.GetProperty("Timestamp").GetDateTimeOffset();
    }

    /// <summary>The role and term this daemon reports on <c>/status</c>; a null role when it does not answer.</summary>
    public async Task<(string? Role, long? Term)> RoleAndTermAsync()
    {
        try
        {
            var (_, body) = await GetAsync("/status");
            var term = body.GetProperty("term");
            return (body.GetProperty("role").GetString(), term.ValueKind == JsonValueKind.Number ? term.GetInt64() : null);
        }
        catch (HttpRequestException)
        {
            return (null, null);
        }
    }

    /// <summary>Sends SIGTERM, as the kubelet does at pod termination.</summary>
    public void Terminate() => _ = Kill(_process.Id, 15);

    /// <summary>SIGSTOP: the process freezes mid-step, as in a long GC pause or a VM migration.</summary>
    public void Pause() => _ = Kill(_process.Id, 19);

    /// <summary>SIGCONT after <see cref="Pause"/>.</summary>
    public void Resume() => _ = Kill(_process.Id, 18);

    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var deadline = new CancellationTokenSource(timeout);
        await _process.WaitForExitAsync(deadline.Token);
        return _process.ExitCode;
    }

    /// <summary>
    /// SIGKILL: the process dies without releasing anything, as in a crash or OOM kill. Only this
    /// process: an exec-mode COMMAND must die of the sidecar's death, not of this call.
    /// </summary>
    public async Task KillAsync()
    {
        if (!_process.HasExited)
        {
            _ = Kill(_process.Id, 9);
            // The wait includes the end of the daemon's output, which a process it started and
            // that outlived it would hold open.
            using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            try
            {
                await _process.WaitForExitAsync(deadline.Token);
            }
            catch (OperationCanceledException)
            {
                Assert.Fail($"the output of the killed daemon (pid {_process.Id}) is still open: a process it started outlives it");
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }

        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
    }

    private static ProcessStartInfo StartInfo(IEnumerable<string> args)
    {
        var info = new ProcessStartInfo(BinaryPath)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        // Tests choose every setting explicitly; nothing leaks in from the machine.
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

    private void OnLine(string? line)
    {
        if (line is null)
        {
            return;
        }

        _output.Enqueue(line);
        if (ListeningLine().Match(line) is { Success: true } match)
        {
            _listening.TrySetResult(new Uri(match.Groups["url"].Value));
        }

        if (GrpcListeningLine().Match(line) is { Success: true } grpc)
        {
            _grpcListening.TrySetResult(grpc.Groups["address"].Value);
        }

        if (ProbeListeningLine().Match(line) is { Success: true } probe)
        {
            _probeListening.TrySetResult(new Uri(probe.Groups["url"].Value));
        }
    }

    [GeneratedRegex(@"http surface listening on (?<url>http://[0-9.]+:\d+)")]
    private static partial Regex ListeningLine();

    [GeneratedRegex(@"grpc surface listening on (?<address>http://[0-9.]+:\d+|unix:[^""\s]+)")]
    private static partial Regex GrpcListeningLine();

    [GeneratedRegex(@"probe surface listening on (?<url>http://[0-9.]+:\d+)")]
    private static partial Regex ProbeListeningLine();

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);
}
