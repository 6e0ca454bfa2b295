using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using LeaderSidecar.Tests.Stores.Etcd;

namespace LeaderSidecar.Tests.Stores.Postgres;

/// <summary>
/// Debian's <c>pgbouncer</c> in transaction mode in front of a <see cref="PostgresServer"/>, on a
/// free loopback port, for tests: requests pass, notifications to a <c>LISTEN</c> are lost. It
/// runs as the <c>postgres</c> user (it refuses root) and trusts the <c>postgres</c> user.
/// </summary>
internal sealed class PgBouncer : IAsyncDisposable
{
    public const string Binary = "/usr/sbin/pgbouncer";
    private readonly TempDirectory _dir = new();
    private Process? _process;

    private PgBouncer()
    {
        Port = ServerProcess.FreePort();
    }

    public int Port { get; }

    public string Log => File.Exists(_dir.File("pgbouncer.log")) ? File.ReadAllText(_dir.File("pgbouncer.log")) : "";

    public static async Task<PgBouncer> StartAsync(PostgresServer server)
    {
        var bouncer = new PgBouncer();
        try
        {
            await bouncer.LaunchAsync(server.Port);
            return bouncer;
        }
        catch
        {
            await bouncer.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_process is { } process)
        {
            if (!process.HasExited)
            {
                process.Kill();
                await process.WaitForExitAsync();
            }

            process.Dispose();
            _process = null;
        }

        _dir.Dispose();
    }

    private async Task LaunchAsync(int serverPort)
    {
        await File.WriteAllTextAsync(_dir.File("users.txt"), "\"postgres\" \"\"\n");
        await File.WriteAllLinesAsync(_dir.File("pgbouncer.ini"),
        [
            "[databases]",
            $"postgres = host=127.0.0.1 port={serverPort.ToString(CultureInfo.InvariantCulture)} dbname=postgres",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            $"listen_port = {Port.ToString(CultureInfo.InvariantCulture)}",
            "unix_socket_dir =",
            "auth_type = trust",
            $"auth_file = {_dir.File("users.txt")}",
            "pool_mode = transaction",
            "ignore_startup_parameters = extra_float_digits,options",
            $"logfile = {_dir.File("pgbouncer.log")}",
        ]);
        using (var chown = Process.Start("chown", ["-R", "postgres:postgres", _dir.Path]))
        {
            await chown.WaitForExitAsync();
        }

        var info = new ProcessStartInfo("setpriv") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in new[] { "--reuid=postgres", "--regid=postgres", "--init-groups", "--", Binary, _dir.File("pgbouncer.ini") })
        {
            info.ArgumentList.Add(arg);
        }

        var process = Process.Start(info)!;
        _process = process;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        await Poll.UntilAsync(
            async () =>
            {
                Assert.False(process.HasExited, $"pgbouncer exited ({(process.HasExited ? process.ExitCode : 0)}): {Log}");
                using var client = new TcpClient();
                try
                {
                    await client.ConnectAsync(System.Net.IPAddress.Loopback, Port);
                    return true;
                }
                catch (SocketException)
                {
                    return false;
                }
            },
            TimeSpan.FromSeconds(30),
            "pgbouncer to listen");
    }
}
