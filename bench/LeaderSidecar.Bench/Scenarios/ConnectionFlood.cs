using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;

namespace LeaderSidecar.Bench.Scenarios;

/// <summary>
/// A hostile neighbour floods a leader (file backend, under <c>ulimit -n 1024</c>) with idle
/// connections, three times as many as it has descriptors, both surfaces, opening every refused
/// one again four times a second. Measured: the renews it wrote meanwhile (from the lease file),
/// its role, resident memory and open descriptors, the connections refused, and how soon
/// <c>/leader</c> answers once the flood ends.
/// </summary>
internal static class ConnectionFlood
{
    private const int DescriptorLimit = 1024;
    private const int HttpConnections = 2 * DescriptorLimit;
    private const int GrpcConnections = DescriptorLimit;
    private static readonly TimeSpan Round = TimeSpan.FromMilliseconds(250);

    public static async Task RunAsync(Harness h)
    {
        var duration = TimeSpan.FromSeconds(h.Options.Quick ? 10 : 30);
        Harness.Log($"connection flood: {HttpConnections + GrpcConnections} idle connections for {duration.TotalSeconds} s against a leader under ulimit -n {DescriptorLimit}");
        var leaseDir = Directory.CreateDirectory(Path.Combine(h.Scratch, "flood")).FullName;
        await using var daemon = await Daemon.StartAsync(
            h.Options.Binary, "v", ["--backend", "file", "--lease-dir", leaseDir, "--lease-name", "flood", .. h.Timing.Args], descriptorLimit: DescriptorLimit);
        await h.SingleLeaderAsync([daemon.Roles]);
        await Task.Delay(h.Settle);
        var idleKiB = daemon.ResidentKiB();
        var idleDescriptors = OpenDescriptors(daemon.ProcessId);
        var leaseFile = Path.Combine(leaseDir, "default_flood.json");

        var http = ToEndPoint(daemon.HttpAddress);
        var grpc = ToEndPoint(daemon.GrpcAddress);
        var flood = new List<(Socket Socket, IPEndPoint Target)>();
        var renews = new SortedSet<DateTimeOffset>();
        long maxKiB = idleKiB, maxDescriptors = idleDescriptors, refused = 0, attempts = 0, minHeld = long.MaxValue;
        var roles = new HashSet<string>();
        var clock = Stopwatch.StartNew();
        try
        {
            var pending = Enumerable.Repeat(http, HttpConnections).Concat(Enumerable.Repeat(grpc, GrpcConnections)).ToList();
            while (clock.Elapsed < duration)
            {
                attempts += pending.Count;
                var (opened, failed) = await ConnectAsync(pending);
                flood.AddRange(opened);
                refused += failed.Count;

                await Task.Delay(Round);
                if (daemon.Ended is { } ended)
                {
                    throw new InvalidOperationException($"the daemon died under the flood: {ended}");
                }

                if (RenewTime(leaseFile) is { } renewed)
                {
                    renews.Add(renewed);
                }

                roles.Add(daemon.Roles.Current ?? "none");
                maxKiB = Math.Max(maxKiB, daemon.ResidentKiB());
                maxDescriptors = Math.Max(maxDescriptors, OpenDescriptors(daemon.ProcessId));

                var closed = flood.Where(c => IsClosed(c.Socket)).ToList();
                foreach (var connection in closed)
                {
                    connection.Socket.Dispose();
                    flood.Remove(connection);
                }

                refused += closed.Count;
                minHeld = Math.Min(minHeld, flood.Count);
                pending = [.. closed.Select(c => c.Target), .. failed];
            }
        }
        finally
        {
            foreach (var (socket, _) in flood)
            {
                socket.Dispose();
            }
        }

        var floodEnded = Stopwatch.GetTimestamp();
        var answered = await FirstLeaderAnswerAsync(daemon);
        var recovery = Stopwatch.GetElapsedTime(floodEnded, answered);

        var gaps = renews.Zip(renews.Skip(1), (a, b) => (b - a).TotalMilliseconds).ToList();
        var longestGap = gaps.Count == 0 ? double.NaN : gaps.Max();
        var expected = (int)(duration / h.Timing.RetryPeriod);
        var steppedDown = roles.Any(r => r != "LEADER") || daemon.Output.Contains("Role changed from Leader", StringComparison.Ordinal);
        var pass = !steppedDown && gaps.Count > 0 && longestGap < h.Timing.RenewDeadline.TotalMilliseconds;
        h.Report.Rows.Add(new Row(
            Report.F($"connection flood: {HttpConnections + GrpcConnections:N0} idle connections for {duration.TotalSeconds:0} s, leader under `ulimit -n {DescriptorLimit}`"),
            Report.F($"{renews.Count} renews ({expected} retry periods), longest gap {longestGap:0} ms; {(steppedDown ? "**stepped down**" : "no step-down")}; RSS {Mib(idleKiB)} idle, {Mib(maxKiB)} max; /leader 200 {recovery.TotalMilliseconds:0} ms after the flood"),
            "—",
            "—",
            Report.F($"keeps renewing: no step-down, longest gap < renew deadline ({h.Timing.RenewDeadline.TotalMilliseconds:0} ms)"),
            Report.Verdict(pass)));
        h.Report.Details.Add(("Connection flood", Report.F($"""
            One leader (file backend, {h.Timing}) started through `sh -c 'ulimit -n {DescriptorLimit} && exec leader-sidecar …'`. The harness opened {HttpConnections:N0} idle TCP connections to its HTTP port and {GrpcConnections:N0} to its gRPC port, and every {Round.TotalMilliseconds:0} ms opened again each one the daemon had reset or that had not connected within 1 s, for {duration.TotalSeconds:0} s: {attempts:N0} connection attempts, {refused:N0} refused; the daemon held at least {(minHeld == long.MaxValue ? 0 : minHeld):N0} of them at every round.

            | figure | value |
            |---|---|
            | renews written during the flood (distinct `renewTime` in the lease file, read every {Round.TotalMilliseconds:0} ms) | {renews.Count} in {duration.TotalSeconds:0} s (retry period {h.Timing.RetryPeriod.TotalMilliseconds:0} ms) |
            | longest gap between two of them | {longestGap:0} ms (renew deadline {h.Timing.RenewDeadline.TotalMilliseconds:0} ms) |
            | roles its own `Watch` stream reported during the flood | {string.Join(", ", roles)} |
            | resident memory (VmRSS) | {Mib(idleKiB)} before, {Mib(maxKiB)} at most during |
            | open file descriptors | {idleDescriptors} before, {maxDescriptors} at most during, limit {DescriptorLimit} |
            | from the last flood connection closed to the first `/leader` 200 | {recovery.TotalMilliseconds:0} ms |
            """)));
    }

    private static IPEndPoint ToEndPoint(Uri address) => new(IPAddress.Parse(address.Host), address.Port);

    private static async Task<(List<(Socket, IPEndPoint)> Opened, List<IPEndPoint> Failed)> ConnectAsync(IReadOnlyList<IPEndPoint> targets)
    {
        var opened = new ConcurrentBag<(Socket, IPEndPoint)>();
        var failed = new ConcurrentBag<IPEndPoint>();
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
                failed.Add(target);
            }
        });
        return ([.. opened], [.. failed]);
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

    private static DateTimeOffset? RenewTime(string leaseFile)
    {
        try
        {
            using var lease = JsonDocument.Parse(File.ReadAllText(leaseFile));
            return DateTimeOffset.Parse(lease.RootElement.GetProperty("spec").GetProperty("renewTime").GetString()!, CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or JsonException or KeyNotFoundException or FormatException)
        {
            return null;
        }
    }

    private static int OpenDescriptors(int pid)
    {
        try
        {
            return Directory.EnumerateFileSystemEntries($"/proc/{pid}/fd").Count();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return 0;
        }
    }

    private static async Task<long> FirstLeaderAnswerAsync(Daemon daemon)
    {
        var url = new Uri(daemon.HttpAddress, "/leader");
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < TimeSpan.FromSeconds(30))
        {
            try
            {
                using var response = await Harness.Http.GetAsync(url);
                if (response.IsSuccessStatusCode)
                {
                    return Stopwatch.GetTimestamp();
                }
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
            }

            await Task.Delay(1);
        }

        throw new TimeoutException("/leader did not answer 200 within 30 s of the flood's end");
    }

    private static string Mib(long kib) => Report.F($"{kib / 1024.0:0.0} MiB");
}
