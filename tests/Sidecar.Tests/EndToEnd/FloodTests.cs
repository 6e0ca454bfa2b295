using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace LeaderSidecar.Tests.EndToEnd;

/// <summary>
/// A leader under a flood of idle connections from a hostile neighbour, with a file-descriptor
/// limit low enough that the flood reaches it in a second: it must keep renewing, stay small, and
/// answer again once the flood ends.
/// </summary>
public sealed partial class FloodTests : IAsyncLifetime
{
    /// <summary>Low enough to reach in a second; high enough for the JIT build, which keeps ~200 descriptors open for its assemblies.</summary>
    private const int DescriptorLimit = 384;

    /// <summary>Renews to see while the flood is on (at 500 ms each, several retry periods).</summary>
    private const int RenewsUnderFlood = 6;

    /// <summary>A loose bound: the JIT build idles near 80 MB; without the fix memory grew by 20 MB a second.</summary>
    private const long MaxResidentKiB = 200 * 1024;

    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(5) };
    private readonly TempDirectory _dir = new();
    private readonly ConcurrentQueue<string> _output = new();
    private readonly List<(Socket Socket, IPEndPoint Target)> _flood = [];
    private Process? _daemon;

    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public async Task A_connection_flood_beyond_the_descriptor_limit_neither_stops_the_renews_nor_grows_memory()
    {
        var (http, grpc) = await StartAsync();
        await Poll.UntilAsync(async () => await RoleAndTermAsync(http) is ("LEADER", _), Deadline, "the daemon leads");
        var (_, term) = await RoleAndTermAsync(http);

        // More connections than the process has descriptors, on both surfaces.
        var targets = Enumerable.Repeat(http, DescriptorLimit).Concat(Enumerable.Repeat(grpc, DescriptorLimit / 2)).ToList();
        await ConnectAsync(targets);

        var renews = new HashSet<string>();
        long maxResident = 0;
        for (var round = 0; round < RenewsUnderFlood; round++)
        {
            // Keep the pressure on: every connection the daemon refused is opened again.
            var refused = _flood.Where(c => IsClosed(c.Socket)).ToList();
            foreach (var connection in refused)
            {
                _flood.Remove(connection);
                connection.Socket.Dispose();
            }

            await ConnectAsync(refused.Select(c => c.Target).ToList());

            var seen = renews.Count;
            await Poll.UntilAsync(
                () =>
                {
                    Assert.False(_daemon!.HasExited, $"the daemon exited with {(_daemon.HasExited ? _daemon.ExitCode : 0)} under the flood:\n{Tail()}");
                    if (RenewTime() is { } renewTime)
                    {
                        renews.Add(renewTime);
                    }

                    return Task.FromResult(renews.Count > seen);
                },
                TimeSpan.FromSeconds(10),
                $"renew {round + 1} of {RenewsUnderFlood} under the flood");
            maxResident = Math.Max(maxResident, ResidentKiB());
        }

        Assert.True(maxResident < MaxResidentKiB, $"resident memory reached {maxResident} KiB under the flood");
        Assert.Contains(_output, line => line.Contains("Refusing new connections", StringComparison.Ordinal));

        CloseFlood();
        await Poll.UntilAsync(async () => await RoleAndTermAsync(http) is ("LEADER", _), Deadline, "/status answers after the flood");
        Assert.Equal(("LEADER", term), await RoleAndTermAsync(http));
        using var leader = await Http.GetAsync(new Uri($"http://{http}/leader"));
        Assert.Equal(HttpStatusCode.OK, leader.StatusCode);
        Assert.DoesNotContain(_output, line => line.Contains("Role changed from Leader", StringComparison.Ordinal));
    }

    /// <summary>Starts the daemon under <see cref="DescriptorLimit"/> (soft and hard) and returns where its surfaces listen.</summary>
    private async Task<(IPEndPoint Http, IPEndPoint Grpc)> StartAsync()
    {
        // sh's ulimit sets both limits, so the daemon cannot raise its soft limit past this one.
        var info = new ProcessStartInfo("/bin/sh")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        string[] args =
        [
            "-c", $"ulimit -n {DescriptorLimit} && exec \"$0\" \"$@\"", DaemonProcess.BinaryPath,
            "--lease-name", "flood", "--namespace", "default", "--backend", "file", "--lease-dir", _dir.Path, "--identity", "a",
            "--lease-duration", "3s", "--renew-deadline", "2s", "--retry-period", "500ms",
            "--http-address", "127.0.0.1:0", "--grpc-address", "127.0.0.1:0", "--log-format", "json",
        ];
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        foreach (var name in info.Environment.Keys.Where(k => k.StartsWith("LEADER_SIDECAR_", StringComparison.Ordinal) || k is "KUBECONFIG" or "KUBERNETES_SERVICE_HOST" or "POD_NAME" or "POD_NAMESPACE").ToList())
        {
            info.Environment.Remove(name);
        }

        var http = new TaskCompletionSource<IPEndPoint>(TaskCreationOptions.RunContinuationsAsynchronously);
        var grpc = new TaskCompletionSource<IPEndPoint>(TaskCreationOptions.RunContinuationsAsynchronously);
        void OnLine(string? line)
        {
            if (line is null)
            {
                return;
            }

            _output.Enqueue(line);
            if (Listening().Match(line) is { Success: true } match)
            {
                (match.Groups["surface"].Value == "http" ? http : grpc).TrySetResult(IPEndPoint.Parse(match.Groups["address"].Value));
            }
        }

        _daemon = Process.Start(info)!;
        _daemon.OutputDataReceived += (_, e) => OnLine(e.Data);
        _daemon.ErrorDataReceived += (_, e) => OnLine(e.Data);
        _daemon.BeginOutputReadLine();
        _daemon.BeginErrorReadLine();
        using var deadline = new CancellationTokenSource(Deadline);
        try
        {
            return (await http.Task.WaitAsync(deadline.Token), await grpc.Task.WaitAsync(deadline.Token));
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"the daemon did not start listening:\n{Tail()}");
        }
    }

    /// <summary>Opens an idle connection to each target; one the daemon does not take within a second is dropped.</summary>
    private async Task ConnectAsync(IReadOnlyList<IPEndPoint> targets)
    {
        var opened = new ConcurrentBag<(Socket, IPEndPoint)>();
        await Parallel.ForEachAsync(targets, new ParallelOptions { MaxDegreeOfParallelism = 64 }, async (target, _) =>
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(1));
            try
            {
                await socket.ConnectAsync(target, timeout.Token);
                opened.Add((socket, target));
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException)
            {
                socket.Dispose();
            }
        });
        _flood.AddRange(opened);
    }

    /// <summary>True when the daemon closed or reset the connection: readable with nothing to read.</summary>
    private static bool IsClosed(Socket socket)
    {
        try
        {
            return socket.Poll(0, SelectMode.SelectRead) && socket.Available == 0;
        }
        catch (SocketException)
        {
            return true;
        }
    }

    private void CloseFlood()
    {
        foreach (var (socket, _) in _flood)
        {
            socket.Dispose();
        }

        _flood.Clear();
    }

    private static async Task<(string? Role, long? Term)> RoleAndTermAsync(IPEndPoint http)
    {
        try
        {
            using var response = await Http.GetAsync(new Uri($"http://{http}/status"));
            using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            var term = body.RootElement.GetProperty("term");
            return (body.RootElement.GetProperty("role").GetString(), term.ValueKind == JsonValueKind.Number ? term.GetInt64() : null);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException)
        {
            return (null, null);
        }
    }

    /// <summary>The lease file's renewTime, or null while it is being replaced or unreadable.</summary>
    private string? RenewTime()
    {
        try
        {
            using var lease = JsonDocument.Parse(File.ReadAllText(_dir.File("default_flood.json")));
            return lease.RootElement.GetProperty("spec").GetProperty("renewTime").GetString();
        }
        catch (Exception e) when (e is IOException or JsonException or KeyNotFoundException)
        {
            return null;
        }
    }

    private long ResidentKiB()
    {
        foreach (var line in File.ReadLines($"/proc/{_daemon!.Id}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                return long.Parse(line["VmRSS:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
            }
        }

        return 0;
    }

    private string Tail() => string.Join('\n', _output.TakeLast(15));

    [GeneratedRegex(@"(?<surface>http|grpc) surface listening on http://(?<address>[0-9.]+:\d+)")]
    private static partial Regex Listening();

    public Task InitializeAsync() => Task.CompletedTask;

    // IAsyncLifetime: xunit 2 never calls IAsyncDisposable on a test class, and the daemon would outlive the run.
    public async Task DisposeAsync()
    {
        CloseFlood();
        if (_daemon is { HasExited: false })
        {
            _daemon.Kill(entireProcessTree: true);
            await _daemon.WaitForExitAsync();
        }

        _daemon?.Dispose();
        _dir.Dispose();
    }
}
