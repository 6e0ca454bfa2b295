using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace LeaderSidecar.Bench.Scenarios;

/// <summary><c>wrk -t2 -c32 --latency</c> against <c>/leader</c> of a leader (file backend), on loopback.</summary>
internal static partial class LocalHttp
{
    public static async Task RunAsync(Harness h)
    {
        var runs = h.Options.Quick ? 1 : 3;
        var seconds = h.Options.Quick ? 3 : 10;
        Harness.Log($"local HTTP: {runs} wrk runs of {seconds} s");
        var leaseDir = Directory.CreateDirectory(Path.Combine(h.Scratch, "http")).FullName;
        await using var daemon = await Daemon.StartAsync(h.Options.Binary, "w", ["--backend", "file", "--lease-dir", leaseDir, "--lease-name", "http"]);
        await h.SingleLeaderAsync([daemon.Roles]);
        var url = new Uri(daemon.HttpAddress, "/leader").ToString();
        var rates = new List<double>();
        var p50 = new List<double>();
        var p99 = new List<double>();
        var raw = new List<string>();
        for (var run = 0; run < runs; run++)
        {
            var output = await WrkAsync(["-t2", "-c32", $"-d{seconds}s", "--latency", url]);
            raw.Add(output.Trim());
            rates.Add(double.Parse(RequestsPerSecond().Match(output).Groups[1].Value, CultureInfo.InvariantCulture));
            p50.Add(Latency(output, "50%"));
            p99.Add(Latency(output, "99%"));
            if (NonOk().Match(output) is { Success: true } errors)
            {
                h.Report.Failures.Add($"local HTTP: wrk saw non-2xx answers: {errors.Value}");
            }
        }

        var rate = new Sample(rates);
        h.Report.Rows.Add(new Row(
            "local HTTP: `GET /leader` on a leader, wrk -t2 -c32",
            Report.F($"{rate.Median:N0} req/s (median of {rate.Count} runs of {seconds} s); latency p50 {new Sample(p50).Median:0.00} ms, p99 {new Sample(p99).Median:0.00} ms"),
            "—",
            "—",
            "report",
            Report.Verdict(null)));
        h.Report.Details.Add(("Local HTTP (wrk output)", $"wrk and the daemon share the two cores.\n\n```\n{string.Join("\n\n", raw)}\n```"));
    }

    private static async Task<string> WrkAsync(string[] args)
    {
        var info = new ProcessStartInfo("wrk") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var errors = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"wrk exited with {process.ExitCode}: {await errors}");
        }

        return await output;
    }

    /// <summary>A line of wrk's latency distribution, in milliseconds.</summary>
    private static double Latency(string output, string percentile)
    {
        var match = Regex.Match(output, $@"^\s*{Regex.Escape(percentile)}\s+([0-9.]+)(us|ms|s)\s*$", RegexOptions.Multiline);
        var value = double.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture);
        return match.Groups[2].Value switch
        {
            "us" => value / 1000,
            "s" => value * 1000,
            _ => value,
        };
    }

    [GeneratedRegex(@"Requests/sec:\s+([0-9.]+)")]
    private static partial Regex RequestsPerSecond();

    [GeneratedRegex(@"Non-2xx or 3xx responses: \d+")]
    private static partial Regex NonOk();
}
