using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using LeaderSidecar.Stores.Redis;

namespace LeaderSidecar.Tests.Stores.Redis;

/// <summary>
/// A real Redis (Debian's <c>redis-server</c> 7) on a free loopback port with a temporary data
/// directory, for tests. It keeps its data in an append-only file, so it can be killed and
/// restarted with the lease intact; it can be paused, made to sleep (<c>DEBUG SLEEP</c>), made to
/// forget its scripts (<c>SCRIPT FLUSH</c>), and made to drop its subscribers. Stopped and deleted
/// on dispose. The tests' own commands go through <c>redis-cli</c>, as an operator's would.
/// </summary>
internal sealed class RedisServer : ServerProcess, IAsyncDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly string[] _extraArgs;
    private readonly List<Task> _background = [];

    private RedisServer(string[] extraArgs)
    {
        _extraArgs = extraArgs;
        Port = FreePort();
    }

    public int Port { get; }

    /// <summary>This server as the store reaches it: <c>redis://127.0.0.1:PORT/0</c>.</summary>
    public RedisEndpoint Endpoint => new(false, "127.0.0.1", Port, 0, null);

    public string Url => Endpoint.ToString();

    /// <summary>The default user's password once <see cref="RequirePasswordAsync"/> set one; the test's own commands use it.</summary>
    public string? AdminPassword { get; private set; }

    public string Log => File.Exists(_dir.File("redis.log")) ? File.ReadAllText(_dir.File("redis.log")) : "";

    public string Directory => _dir.Path;

    /// <param name="extraArgs">More server options, such as <c>--replicaof 127.0.0.1 PORT</c>.</param>
    public static async Task<RedisServer> StartAsync(params string[] extraArgs)
    {
        var server = new RedisServer(extraArgs);
        try
        {
            await server.LaunchAsync();
            return server;
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
    }

    /// <summary>A second server replicating this one, once its link to this one is up.</summary>
    public async Task<RedisServer> StartReplicaAsync()
    {
        var replica = await StartAsync("--replicaof", "127.0.0.1", Port.ToString(CultureInfo.InvariantCulture));
        await Poll.UntilAsync(
            async () => (await replica.CliAsync("INFO", "replication")).Contains("master_link_status:up", StringComparison.Ordinal),
            TimeSpan.FromSeconds(30),
            "the replica to connect to its primary");
        return replica;
    }

    /// <summary>Runs <c>redis-cli</c> against this server (with the admin password once set); returns its output.</summary>
    public async Task<string> CliAsync(params string[] args)
    {
        var info = CliStartInfo(args);
        info.RedirectStandardInput = true;
        using var process = Process.Start(info)!;
        process.StandardInput.Close();
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await process.WaitForExitAsync(deadline.Token);
        Assert.True(process.ExitCode == 0, $"redis-cli {string.Join(' ', args)} exited {process.ExitCode}: {await error}{await output}");
        return await output;
    }

    /// <summary>Runs <c>redis-cli</c> and fails the test unless the answer is exactly <paramref name="expected"/>.</summary>
    public async Task ExpectAsync(string expected, params string[] args) =>
        Assert.Equal(expected, (await CliAsync(args)).Trim());

    /// <summary>The lease hash as <c>HGETALL</c> shows it to an operator.</summary>
    public async Task<Dictionary<string, string>> HashAsync(string key)
    {
        var lines = (await CliAsync("HGETALL", key)).Split('\n').Select(l => l.TrimEnd('\r')).ToList();
        if (lines.Count > 0 && lines[^1].Length == 0)
        {
            lines.RemoveAt(lines.Count - 1);
        }

        var hash = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i + 1 < lines.Count; i += 2)
        {
            hash[lines[i]] = lines[i + 1];
        }

        return hash;
    }

    /// <summary>Blocks the server for <paramref name="seconds"/> (<c>DEBUG SLEEP</c>); returns once it stopped answering.</summary>
    public async Task SleepAsync(double seconds)
    {
        _background.Add(CliAsync("DEBUG", "SLEEP", seconds.ToString(CultureInfo.InvariantCulture)));
        await Poll.UntilAsync(async () => !await AnswersAsync(TimeSpan.FromMilliseconds(200)), TimeSpan.FromSeconds(10), "DEBUG SLEEP to begin");
    }

    /// <summary><c>SCRIPT FLUSH</c>: the server forgets every loaded script, as after a restart.</summary>
    public Task ScriptFlushAsync() => ExpectAsync("OK", "SCRIPT", "FLUSH");

    /// <summary><c>CLIENT KILL TYPE pubsub</c>: every subscriber's connection is closed.</summary>
    public Task<string> KillSubscribersAsync() => CliAsync("CLIENT", "KILL", "TYPE", "pubsub");

    /// <summary>Gives the default user a password: connections without it are refused (NOAUTH).</summary>
    public async Task RequirePasswordAsync(string password)
    {
        await ExpectAsync("OK", "CONFIG", "SET", "requirepass", password);
        AdminPassword = password;
    }

    /// <summary>Creates (or replaces) an ACL user with <paramref name="rules"/> (after <c>reset</c>) and <paramref name="password"/>.</summary>
    public Task AddUserAsync(string name, string password, params string[] rules) =>
        ExpectAsync("OK", ["ACL", "SETUSER", name, "reset", "on", ">" + password, .. rules]);

    /// <summary>One field of <c>INFO SECTION</c>.</summary>
    public async Task<long> InfoFieldAsync(string section, string field) =>
        long.Parse(Field(await CliAsync("INFO", section), field), CultureInfo.InvariantCulture);

    /// <summary>How many times the server ran COMMAND since it started (<c>INFO commandstats</c>); 0 when never.</summary>
    public async Task<long> CallsAsync(string command)
    {
        var line = (await CliAsync("INFO", "commandstats")).Split('\n').Select(l => l.Trim())
            .FirstOrDefault(l => l.StartsWith($"cmdstat_{command.ToLowerInvariant()}:calls=", StringComparison.Ordinal));
        return line is null ? 0 : long.Parse(line[(line.IndexOf('=', StringComparison.Ordinal) + 1)..line.IndexOf(',', StringComparison.Ordinal)], CultureInfo.InvariantCulture);
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        foreach (var task in _background)
        {
            try
            {
                await task;
            }
            catch (Exception)
            {
                // A background redis-cli fails once the server is gone; that is expected.
            }
        }

        _dir.Dispose();
    }

    private static string Field(string info, string field) =>
        info.Split('\n').Select(l => l.Trim()).First(l => l.StartsWith(field + ":", StringComparison.Ordinal))[(field.Length + 1)..];

    /// <summary>Whether the server answers a PING within <paramref name="timeout"/>, over a plain socket (quick even on a busy machine).</summary>
    /// <param name="timeout">How long to wait for the answer.</param>
    /// <param name="ready">Only an answer of a server ready for commands counts: PONG, or NOAUTH once a password is required (not LOADING).</param>
    private async Task<bool> AnswersAsync(TimeSpan timeout, bool ready = false)
    {
        using var probe = new CancellationTokenSource(timeout);
        using var client = new TcpClient();
        try
        {
            await client.ConnectAsync(IPAddress.Loopback, Port, probe.Token);
            var stream = client.GetStream();
            await stream.WriteAsync("PING\r\n"u8.ToArray(), probe.Token);
            var answer = new byte[64];
            var read = await stream.ReadAsync(answer, probe.Token);
            var text = System.Text.Encoding.ASCII.GetString(answer, 0, read);
            return read > 0 && (!ready || text.StartsWith("+PONG", StringComparison.Ordinal) || text.StartsWith("-NOAUTH", StringComparison.Ordinal));
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or IOException)
        {
            return false;
        }
    }

    private ProcessStartInfo CliStartInfo(IEnumerable<string> args)
    {
        var info = new ProcessStartInfo("redis-cli") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in new[] { "-h", "127.0.0.1", "-p", Port.ToString(CultureInfo.InvariantCulture) }.Concat(args))
        {
            info.ArgumentList.Add(arg);
        }

        if (AdminPassword is not null)
        {
            info.Environment["REDISCLI_AUTH"] = AdminPassword;
        }

        return info;
    }

    protected override async Task LaunchAsync()
    {
        var info = new ProcessStartInfo("redis-server") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in new[]
        {
            "--port", Port.ToString(CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--dir", _dir.Path,
            "--appendonly", "yes", "--save", "", "--enable-debug-command", "yes",
            "--logfile", _dir.File("redis.log"), "--daemonize", "no",
        }.Concat(_extraArgs))
        {
            info.ArgumentList.Add(arg);
        }

        if (AdminPassword is not null)
        {
            // CONFIG SET is not persisted: a restarted server asks for the same password again.
            info.ArgumentList.Add("--requirepass");
            info.ArgumentList.Add(AdminPassword);
        }

        var process = Process.Start(info)!;
        Server = process;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        // Up means it answers PING (not LOADING: it is still replaying its append-only file).
        await Poll.UntilAsync(
            async () => process.HasExited ? throw new InvalidOperationException($"redis-server exited ({process.ExitCode}): {Log}") : await AnswersAsync(TimeSpan.FromSeconds(2), ready: true),
            TimeSpan.FromSeconds(30),
            "redis-server to answer");
    }

}
