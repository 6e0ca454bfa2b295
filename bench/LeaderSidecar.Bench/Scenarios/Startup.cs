using System.Diagnostics;
using System.Globalization;
using System.Net;

namespace LeaderSidecar.Bench.Scenarios;

/// <summary>Process start → the first <c>/readyz</c> 200, polled every millisecond on ports chosen beforehand.</summary>
internal static partial class Startup
{
    public static async Task RunAsync(Harness h)
    {
        var runs = h.Options.Quick ? 5 : 20;
        Harness.Log($"start-up: {runs} runs per backend");
        var leaseDir = Directory.CreateDirectory(Path.Combine(h.Scratch, "startup")).FullName;
        var filePhases = new List<(double Starting, double Listening)>();
        var backendPhases = new List<(double Starting, double Listening)>();
        var file = new Sample(await MeasureAsync(h, runs, ["--backend", "file", "--lease-dir", leaseDir, "--lease-name", "startup"], filePhases));
        var lease = h.Backend.NewLease("startup");
        var backend = new Sample(await MeasureAsync(h, runs, h.Backend.DaemonArgs(lease, "s", counted: false), backendPhases));
        h.Report.Rows.Add(new Row("start-up: process start → /readyz 200, file backend", Report.Ms(file), "—", "—", "report, aim < 100 ms", Report.Verdict(file.Median < 100)));
        string Phases(List<(double Starting, double Listening)> phases, Sample ready) => Report.F(
            $"process start → \"starting\" logged {new Sample(phases.Select(p => p.Starting)).Median:0} ms → \"http surface listening\" logged {new Sample(phases.Select(p => p.Listening)).Median:0} ms → `/readyz` 200 {ready.Median:0} ms");
        h.Report.Details.Add(("Start-up phases (medians)", $"""
            From the daemon's own log time stamps (wall clock, millisecond precision; the `starting` line comes after the flags are read, the `listening` lines after the surfaces are bound, and on the {h.Backend.Name} backend after its connection settings are read and the start-up read of the lease answered):

            - file backend: {Phases(filePhases, file)}
            - {h.Backend.Name} backend: {Phases(backendPhases, backend)}
            """));
        h.Report.Rows.Add(new Row($"start-up: process start → /readyz 200, {h.Backend.Name} backend", Report.Ms(backend), "—", "—", "report, aim < 100 ms", Report.Verdict(backend.Median < 100)));
    }

    private static async Task<List<double>> MeasureAsync(Harness h, int runs, string[] args, List<(double Starting, double Listening)> phases)
    {
        var results = new List<double>();
        using var http = new HttpClient(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.Zero, ConnectTimeout = TimeSpan.FromSeconds(1) })
        {
            Timeout = TimeSpan.FromSeconds(2),
        };
        for (var run = 0; run < runs; run++)
        {
            var httpPort = Harness.FreePort();
            var grpcPort = Harness.FreePort();
            var info = Daemon.StartInfo(h.Options.Binary, [
                "--identity", "s", "--http-address", $"127.0.0.1:{httpPort}", "--grpc-address", $"127.0.0.1:{grpcPort}", .. args]);
            var readyz = new Uri(string.Create(CultureInfo.InvariantCulture, $"http://127.0.0.1:{httpPort}/readyz"));
            var lines = new System.Collections.Concurrent.ConcurrentQueue<string>();
            var wall = DateTimeOffset.UtcNow;
            var t0 = Stopwatch.GetTimestamp();
            using var process = Daemon.Track(Process.Start(info)!);
            process.OutputDataReceived += (_, e) => lines.Enqueue(e.Data ?? "");
            process.ErrorDataReceived += (_, e) => lines.Enqueue(e.Data ?? "");
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            try
            {
                while (true)
                {
                    if (process.HasExited)
                    {
                        throw new InvalidOperationException($"the daemon exited with {process.ExitCode} before it was ready");
                    }

                    try
                    {
                        using var response = await http.GetAsync(readyz);
                        if (response.StatusCode == HttpStatusCode.OK)
                        {
                            break;
                        }
                    }
                    catch (HttpRequestException)
                    {
                    }

                    if (Stopwatch.GetElapsedTime(t0) > TimeSpan.FromSeconds(30))
                    {
                        throw new TimeoutException("not ready after 30 s");
                    }

                    await Task.Delay(1);
                }

                results.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
                await Task.Delay(50);
                phases.Add((Logged(lines, "\"EventId\":300,", wall), Logged(lines, "http surface listening", wall)));
            }
            finally
            {
                // SIGTERM releases the lease for the next run; a kill after 10 s if it does not exit.
                _ = Kill(process.Id, Daemon.SigTerm);
                using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                try
                {
                    await process.WaitForExitAsync(deadline.Token);
                }
                catch (OperationCanceledException)
                {
                    process.Kill(entireProcessTree: true);
                }

                Daemon.Untrack(process);
            }
        }

        Harness.Log($"  {string.Join(" ", results.Select(r => r.ToString("0", CultureInfo.InvariantCulture)))} ms");
        return results;
    }

    /// <summary>Milliseconds from the start to the log line's own time stamp (wall clock, ms precision).</summary>
    private static double Logged(IEnumerable<string> lines, string marker, DateTimeOffset start)
    {
        var line = lines.FirstOrDefault(l => l.Contains(marker, StringComparison.Ordinal));
        var stamp = line is null ? null : TimestampField().Match(line);
        return stamp is { Success: true }
            ? (DateTimeOffset.Parse(stamp.Groups[1].Value, CultureInfo.InvariantCulture) - start).TotalMilliseconds
            : double.NaN;
    }

    [System.Text.RegularExpressions.GeneratedRegex("\"Timestamp\":\"([^\"]+)\"")]
    private static partial System.Text.RegularExpressions.Regex TimestampField();

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill")]
    private static extern int Kill(int pid, int signal);
}
