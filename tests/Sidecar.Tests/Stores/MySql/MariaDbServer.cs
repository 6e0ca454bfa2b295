using System.Diagnostics;
using System.Runtime.InteropServices;
using MySqlConnector;

namespace LeaderSidecar.Tests.Stores.MySql;

/// <summary>
/// A real MariaDB (Debian's <c>mariadb-server</c>) on a free loopback port with a temporary data
/// directory, for tests. Root is reachable only over the unix socket (the tests' own statements,
/// through the <c>mariadb</c> CLI); the store connects over TCP as a user with a password, so
/// authentication is real. It can be paused, killed and restarted with the same data, and is
/// stopped and deleted on dispose.
/// </summary>
internal sealed class MariaDbServer : ServerProcess, IAsyncDisposable
{
    public const string Database = "leases";
    public const string User = "app";
    public const string Password = "app-secret";

    private const string TemplatePrefix = "leader-sidecar-mariadb-template-";

    private readonly TempDirectory _dir;

    private MariaDbServer(string? directoryPrefix = null)
    {
        _dir = directoryPrefix is null ? new TempDirectory() : new TempDirectory(directoryPrefix);
        Port = FreePort();
    }

    public int Port { get; }

    public string Log => File.Exists(_dir.File("error.log")) ? File.ReadAllText(_dir.File("error.log")) : "";

    /// <summary><c>mysql://app@127.0.0.1:PORT/leases</c>: the form <c>--mysql</c> takes (the password goes elsewhere).</summary>
    public string Url => $"mysql://{User}@127.0.0.1:{Port}/{Database}";

    private string Socket => _dir.File("mysqld.sock");

    private string DataDirectory => _dir.File("data");

    /// <summary>
    /// A data directory with the database and the user, made once per test run: initialising one
    /// takes seconds, copying it a few milliseconds.
    /// </summary>
    private static readonly Lazy<Task<string>> Template = new(CreateTemplateAsync);

    /// <summary>A server with a database <see cref="Database"/> and a user <see cref="User"/> allowed everything in it.</summary>
    public static async Task<MariaDbServer> StartAsync()
    {
        var template = await Template.Value;
        var server = new MariaDbServer();
        try
        {
            Copy(template, server.DataDirectory);
            await server.LaunchAsync();
            return server;
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
    }

    /// <summary>A MySqlConnector connection string for <paramref name="user"/> over TCP.</summary>
    public string ConnectionString(string user = User, string password = Password) => ConnectionStringAt(Port, user, password);

    /// <summary>A connection string for a server on loopback <paramref name="port"/> (which may have none).</summary>
    public static string ConnectionStringAt(int port, string user = User, string password = Password) =>
        new MySqlConnectionStringBuilder { Server = "127.0.0.1", Port = (uint)port, UserID = user, Password = password, Database = Database }.ConnectionString;

    /// <summary>Runs SQL as root with the <c>mariadb</c> CLI (tab-separated, no headers); fails the test on an error.</summary>
    public async Task<string> SqlAsync(string sql, string? database = Database)
    {
        var (code, output, error) = await CliAsync(sql, database);
        Assert.True(code == 0, $"mariadb -e \"{sql}\" exited {code}: {error}");
        return output;
    }

    /// <summary>Runs SQL with the <c>mariadb</c> CLI as root: exit code, stdout, stderr.</summary>
    public async Task<(int Code, string Output, string Error)> CliAsync(string sql, string? database = Database)
    {
        var info = new ProcessStartInfo("mariadb") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
        foreach (var arg in new[] { "--no-defaults", $"--socket={Socket}", "--user=root", "--batch", "--skip-column-names", "-e", sql })
        {
            info.ArgumentList.Add(arg);
        }

        if (database is not null)
        {
            info.ArgumentList.Add(database);
        }

        using var process = Process.Start(info)!;
        process.StandardInput.Close();
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await process.WaitForExitAsync(deadline.Token);
        return (process.ExitCode, await output, await error);
    }

    /// <summary>A global status counter, such as <c>Com_select</c>.</summary>
    public async Task<long> StatusAsync(string name) =>
        long.Parse((await SqlAsync($"SHOW GLOBAL STATUS LIKE '{name}'", database: null)).Split('\t')[1].Trim(), System.Globalization.CultureInfo.InvariantCulture);

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        _dir.Dispose();
    }

    // Small redo log: the data directory stays about 20 MB instead of 110 MB.
    private static readonly string[] CommonArgs = ["--no-defaults", "--innodb-log-file-size=4M"];

    private static async Task<string> CreateTemplateAsync()
    {
        // Kept until the test run ends: every server of the run copies it. A run that was killed
        // leaves its template behind; the next run removes those whose process is gone.
        SweepTemplates();
        var server = new MariaDbServer(TemplatePrefix + Environment.ProcessId + "-");
        AppDomain.CurrentDomain.ProcessExit += (_, _) => server._dir.Dispose();
        await server.InstallAsync();
        await server.LaunchAsync();
        await server.SqlAsync(
            // Root only over the socket; the anonymous and host-named accounts are not wanted.
            "DELETE FROM mysql.global_priv WHERE User = '' OR (User = 'root' AND Host <> 'localhost'); FLUSH PRIVILEGES; " +
            $"CREATE DATABASE {Database}; CREATE USER '{User}'@'%' IDENTIFIED BY '{Password}'; GRANT ALL ON {Database}.* TO '{User}'@'%';",
            database: null);

        // A clean shutdown, so the copies start without crash recovery.
        var process = server.Server!;
        _ = Signal(process.Id, 15);
        await process.WaitForExitAsync();
        process.Dispose();
        server.Server = null;
        return server.DataDirectory;
    }

    private static void SweepTemplates()
    {
        foreach (var directory in Directory.EnumerateDirectories(Path.GetTempPath(), TemplatePrefix + "*"))
        {
            var pid = Path.GetFileName(directory)[TemplatePrefix.Length..].Split('-')[0];
            if (int.TryParse(pid, out var id) && !Directory.Exists($"/proc/{id}"))
            {
                try
                {
                    Directory.Delete(directory, recursive: true);
                }
                catch (IOException)
                {
                }
            }
        }
    }

    private static void Copy(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.EnumerateFiles(from))
        {
            File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
        }

        foreach (var directory in Directory.EnumerateDirectories(from))
        {
            Copy(directory, Path.Combine(to, Path.GetFileName(directory)));
        }
    }

    private async Task InstallAsync()
    {
        var info = new ProcessStartInfo("mariadb-install-db") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in CommonArgs.Concat([$"--datadir={DataDirectory}", $"--user={Environment.UserName}", "--auth-root-authentication-method=normal", "--skip-test-db", $"--tmpdir={TempDirectoryPath()}"]))
        {
            info.ArgumentList.Add(arg);
        }

        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(deadline.Token);
        Assert.True(process.ExitCode == 0, $"mariadb-install-db exited {process.ExitCode}: {await output}{await error}");
    }

    protected override async Task LaunchAsync()
    {
        // Debian puts the server in /usr/sbin, which is not on every user's PATH.
        var info = new ProcessStartInfo(File.Exists("/usr/sbin/mariadbd") ? "/usr/sbin/mariadbd" : "mariadbd") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in CommonArgs.Concat(
        [
            $"--datadir={DataDirectory}", $"--user={Environment.UserName}", $"--port={Port}", "--bind-address=127.0.0.1",
            $"--socket={Socket}", $"--pid-file={_dir.File("mysqld.pid")}", $"--log-error={_dir.File("error.log")}",
            "--skip-name-resolve", "--skip-log-bin", "--innodb-buffer-pool-size=16M", "--performance-schema=OFF",
            $"--tmpdir={TempDirectoryPath()}",
        ]))
        {
            info.ArgumentList.Add(arg);
        }

        var process = Process.Start(info)!;
        Server = process;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        await Poll.UntilAsync(
            async () =>
            {
                if (process.HasExited)
                {
                    Assert.Fail($"mariadbd exited ({process.ExitCode}): {Log}");
                }

                return (await CliAsync("SELECT 1", database: null)).Code == 0;
            },
            TimeSpan.FromSeconds(60),
            "mariadbd to answer");
    }

    // The server's own scratch files stay in the test's directory, not in the shared /tmp.
    private string TempDirectoryPath() => Directory.CreateDirectory(_dir.File("tmp")).FullName;

}
