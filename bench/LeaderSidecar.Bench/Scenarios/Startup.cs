using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace LeaderSidecar.Bench.Scenarios;

/// <summary>Process start → the first <c>/readyz</c> 200, polled every millisecond on ports chosen beforehand.</summary>
internal static class Startup
{
    public static async Task RunAsync(Harness h)
    {
        var runs = h.Options.Quick ? 5 : 20;
        Harness.Log($"start-up: {runs} runs per backend");
        var leaseDir = Directory.CreateDirectory(Path.Combine(h.Scratch, "startup")).FullName;
        var file = new Sample(await MeasureAsync(h, runs, ["--backend", "file", "--lease-dir", leaseDir, "--lease-name", "startup"]));
        var lease = h.Api.NewLease("startup");
        var candidate = h.Api.Candidate(lease, "s");
        var kubernetes = new Sample(await MeasureAsync(h, runs, ["--backend", "kubernetes", "--kubeconfig", candidate.Kubeconfig, "--namespace", h.Api.Namespace, "--lease-name", lease]));
        h.Report.Rows.Add(new Row("start-up: process start → /readyz 200, file backend", Report.Ms(file), "—", "—", "report, aim < 100 ms", Report.Verdict(file.Median < 100)));
        h.Report.Rows.Add(new Row("start-up: process start → /readyz 200, Kubernetes backend", Report.Ms(kubernetes), "—", "—", "report, aim < 100 ms", Report.Verdict(kubernetes.Median < 100)));
    }

    private static async Task<List<double>> MeasureAsync(Harness h, int runs, string[] args)
    {
        var results = new List<double>();
        using var http = new HttpClient(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.Zero, ConnectTimeout = TimeSpan.FromSeconds(1) })
        {
            Timeout = TimeSpan.FromSeconds(2),
        };
        for (var run = 0; run < runs; run++)
        {
            var httpPort = FreePort();
            var grpcPort = FreePort();
            var info = Daemon.StartInfo(h.Options.Binary, [
                "--identity", "s", "--http-address", $"127.0.0.1:{httpPort}", "--grpc-address", $"127.0.0.1:{grpcPort}", "--log-level", "warn", .. args]);
            var readyz = new Uri(string.Create(CultureInfo.InvariantCulture, $"http://127.0.0.1:{httpPort}/readyz"));
            var t0 = Stopwatch.GetTimestamp();
            using var process = Daemon.Track(Process.Start(info)!);
            process.OutputDataReceived += (_, _) => { };
            process.ErrorDataReceived += (_, _) => { };
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

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill")]
    private static extern int Kill(int pid, int signal);
}
