using System.Diagnostics;
using System.Text.RegularExpressions;

namespace LeaderSidecar.Bench;

/// <summary>
/// A backend whose store is a real server (etcd, PostgreSQL, MariaDB, Redis) that the harness starts
/// on a free loopback port with its data in a directory of its own, before the first scenario, and
/// kills after the last. Subclasses give the command line, how to tell it is ready, and how to
/// count each replica's requests on the server.
/// </summary>
internal abstract partial class ServerBackend(string directory) : Backend
{
    private Process? _server;

    /// <summary>The server's own directory (data and log).</summary>
    protected string Directory { get; } = directory;

    /// <summary>No polling reference on these servers: the report puts the Kubernetes section's figures beside theirs.</summary>
    public override (string Section, string Name)? CompareWith => ("kubernetes", "Kubernetes");

    /// <summary>The server's version line, for the report's header.</summary>
    protected string Version { get; private set; } = "unknown";

    public override string NewLease(string scenario) => $"bench-{scenario}-{Guid.NewGuid().ToString("N")[..6]}";

    /// <summary>
    /// Starts <paramref name="file"/> and waits up to 60 s until <paramref name="ready"/> says so;
    /// on failure the exception carries the last lines of <paramref name="log"/>.
    /// </summary>
    protected async Task LaunchAsync(string file, IEnumerable<string> args, string log, Func<Task<bool>> ready)
    {
        var process = Daemon.Track(Process.Start(Daemon.StartInfo(file, args))!);
        _server = process;

        // Drained, not closed: a program writing to a closed pipe dies of SIGPIPE.
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            if (process.HasExited)
            {
                throw new InvalidOperationException($"{Path.GetFileName(file)} exited with {process.ExitCode}: {Tail(log)}");
            }

            try
            {
                if (await ready())
                {
                    return;
                }
            }
            catch (Exception e) when (e is HttpRequestException or IOException or InvalidOperationException)
            {
            }

            if (deadline.Elapsed > TimeSpan.FromSeconds(60))
            {
                throw new TimeoutException($"{Path.GetFileName(file)} was not ready within 60 s: {Tail(log)}");
            }

            await Task.Delay(100);
        }
    }

    /// <summary>Runs <paramref name="start"/> on <paramref name="backend"/>; if it fails, disposes the backend (killing what it started) and rethrows.</summary>
    protected static async Task<T> StartedAsync<T>(T backend, Func<T, Task> start)
        where T : ServerBackend
    {
        try
        {
            await start(backend);
            return backend;
        }
        catch
        {
            await backend.DisposeAsync();
            throw;
        }
    }

    /// <summary>Reads the server's version: the first number with dots <c><paramref name="file"/> --version</c> prints.</summary>
    protected async Task ReadVersionAsync(string file) =>
        Version = VersionNumber().Match(await RunAsync(file, "--version")).Value;

    /// <summary>Runs a client tool (psql, mariadb, redis-cli) to its end; its output, or an exception with its errors.</summary>
    public static async Task<string> RunAsync(string file, params string[] args)
    {
        var info = Daemon.StartInfo(file, args);
        info.RedirectStandardInput = true;
        using var process = Process.Start(info)!;
        process.StandardInput.Close();
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(deadline.Token);
        return process.ExitCode == 0
            ? await output
            : throw new InvalidOperationException($"{Path.GetFileName(file)} {string.Join(' ', args)} exited with {process.ExitCode}: {(await error).Trim()}");
    }

    public override async ValueTask DisposeAsync()
    {
        if (_server is { } server)
        {
            if (!server.HasExited)
            {
                // The whole tree: PostgreSQL's backends are the postmaster's children.
                server.Kill(entireProcessTree: true);
                await server.WaitForExitAsync();
            }

            Daemon.Untrack(server);
            server.Dispose();
        }
    }

    protected static string Tail(string log) =>
        File.Exists(log) ? string.Join('\n', File.ReadLines(log).TakeLast(5)) : "(no log)";

    [GeneratedRegex(@"[0-9]+\.[0-9]+(\.[0-9]+)?")]
    private static partial Regex VersionNumber();
}
