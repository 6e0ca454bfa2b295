using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using LeaderSidecar.Tests.Stores.Etcd;
using Npgsql;

namespace LeaderSidecar.Tests.Stores.Postgres;

/// <summary>
/// A real PostgreSQL 15 (Debian's <c>postgresql-15</c>) on a free loopback port with a temporary
/// data directory, for tests. It runs as the <c>postgres</c> user (it refuses root), can be paused,
/// killed and restarted with the same data, and is stopped and deleted on dispose.
/// </summary>
/// <remarks>
/// Authentication: the <c>postgres</c> superuser is trusted over loopback (the tests' own
/// requests and <c>psql</c>); every other role needs its password (scram-sha-256), over TLS only
/// when the server was started with <c>tls: true</c>. <c>initdb</c> runs once per test run; each
/// server starts from a copy of that cluster.
/// </remarks>
internal sealed class PostgresServer : IAsyncDisposable
{
    public const string Bin = "/usr/lib/postgresql/15/bin";
    private static readonly SemaphoreSlim TemplateGate = new(1, 1);
    private static TempDirectory? _template;

    private readonly TempDirectory _dir = new();
    private readonly bool _tls;
    private Process? _process;
    private bool _paused;

    private PostgresServer(bool tls)
    {
        _tls = tls;
        Port = ServerProcess.FreePort();
    }

    public int Port { get; }

    /// <summary>A URL for the daemon or a store, as <paramref name="user"/> (no password in it).</summary>
    public string Url(string user = "postgres", string query = "") =>
        $"postgresql://{user}@127.0.0.1:{Port.ToString(CultureInfo.InvariantCulture)}/postgres{query}";

    /// <summary>PEM of the CA that signed the server's certificate (with <c>tls: true</c>).</summary>
    public string CaFile => _dir.File("ca.crt");

    public string Log => File.Exists(_dir.File("postgres.log")) ? File.ReadAllText(_dir.File("postgres.log")) : "";

    public static async Task<PostgresServer> StartAsync(bool tls = false)
    {
        var server = new PostgresServer(tls);
        try
        {
            await server.PrepareAsync();
            await server.LaunchAsync();
            return server;
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// A streaming standby of this server (<c>pg_basebackup -R</c>, asynchronous) on another
    /// loopback port, once it accepts read-only connections.
    /// </summary>
    public async Task<PostgresServer> StartStandbyAsync()
    {
        var standby = new PostgresServer(_tls);
        try
        {
            await RunAsync("chown", "postgres:postgres", standby._dir.Path);
            await RunAsync("setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--", Path.Combine(Bin, "pg_basebackup"),
                "-h", "127.0.0.1", "-p", Port.ToString(CultureInfo.InvariantCulture), "-U", "postgres", "-D", standby._dir.File("data"), "-R", "-X", "stream", "--no-sync");
            await standby.LaunchAsync();
            return standby;
        }
        catch
        {
            await standby.DisposeAsync();
            throw;
        }
    }

    /// <summary><c>pg_ctl promote</c>, as a failover manager would; returns once the server takes writes.</summary>
    public async Task PromoteAsync()
    {
        await RunAsync("setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--", Path.Combine(Bin, "pg_ctl"), "promote", "-w", "-D", _dir.File("data"));
        await Poll.UntilAsync(async () => await PsqlAsync("SELECT pg_is_in_recovery()") == "f", TimeSpan.FromSeconds(30), "the standby to be promoted");
    }

    /// <summary>SIGSTOP to the server and its backends: nothing answers; sockets stay open.</summary>
    public void Pause()
    {
        _paused = true;
        Signal(19);
    }

    /// <summary>SIGCONT after <see cref="Pause"/>.</summary>
    public void Resume()
    {
        if (_paused)
        {
            Signal(18);
        }

        _paused = false;
    }

    /// <summary>SIGKILL to the server and its backends, then a new server on the same port and data.</summary>
    public async Task RestartAsync()
    {
        await StopAsync();
        await LaunchAsync();
    }

    /// <summary>SIGKILL to the server and all its backends, as a crash would: connections are reset.</summary>
    public async Task StopAsync()
    {
        if (_process is not { } process)
        {
            return;
        }

        var all = Family();
        foreach (var pid in all)
        {
            _ = Kill(pid, 9);
        }

        foreach (var pid in all)
        {
            await Poll.UntilAsync(() => Task.FromResult(!Directory.Exists($"/proc/{pid}") || IsZombie(pid)), TimeSpan.FromSeconds(30), $"postgres process {pid} to end");
        }

        await process.WaitForExitAsync();
        process.Dispose();
        _process = null;
        _paused = false;
    }

    /// <summary>Ends every client connection (as an administrator's pg_terminate_backend would); data stays.</summary>
    public Task TerminateConnectionsAsync() =>
        PsqlAsync("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()");

    /// <summary>
    /// Runs SQL with <c>psql</c> as the superuser, as an operator would by hand; fails the test on
    /// an error. Returns the unaligned, tuples-only output.
    /// </summary>
    public async Task<string> PsqlAsync(string sql, params string[] extraArgs)
    {
        var (code, output, error) = await RunPsqlAsync(sql, extraArgs);
        Assert.True(code == 0, $"psql -c \"{sql}\" exited {code}: {error}");
        return output.Trim();
    }

    /// <summary>Runs SQL with <c>psql</c>; returns the exit code, output and errors (for statements expected to fail).</summary>
    public async Task<(int Code, string Output, string Error)> RunPsqlAsync(string sql, params string[] extraArgs)
    {
        var info = new ProcessStartInfo(Path.Combine(Bin, "psql")) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
        foreach (var arg in new[] { "-h", "127.0.0.1", "-p", Port.ToString(CultureInfo.InvariantCulture), "-U", "postgres", "-d", "postgres", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1" }.Concat(extraArgs).Concat(["-c", sql]))
        {
            info.ArgumentList.Add(arg);
        }

        info.Environment.Remove("PGPASSWORD");
        using var process = Process.Start(info)!;
        process.StandardInput.Close();
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await process.WaitForExitAsync(deadline.Token);
        return (process.ExitCode, await output, await error);
    }

    /// <summary>Runs a file of SQL with <c>psql -f</c> as the superuser, with <c>-v NAME=VALUE</c> variables.</summary>
    public Task<string> PsqlFileAsync(string path, params string[] variables) =>
        PsqlAsync("SELECT 1", [.. variables.SelectMany(v => new[] { "-v", v }), "-f", path]);

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        _dir.Dispose();
    }

    private async Task PrepareAsync()
    {
        var template = await TemplateAsync();
        await RunAsync("chown", "postgres:postgres", _dir.Path);
        await RunAsync("cp", "-a", Path.Combine(template.Path, "data"), _dir.File("data"));
        var hba = new List<string> { "local all all trust", "host all postgres 127.0.0.1/32 trust", "host replication postgres 127.0.0.1/32 trust" };
        hba.Add(_tls ? "hostssl all all 127.0.0.1/32 scram-sha-256" : "host all all 127.0.0.1/32 scram-sha-256");
        await File.WriteAllLinesAsync(_dir.File("data/pg_hba.conf"), hba);
        if (_tls)
        {
            WriteCertificates();
            await RunAsync("chmod", "600", _dir.File("server.key"));
        }

        await RunAsync("chown", "-R", "postgres:postgres", _dir.Path);
    }

    /// <summary>One initialized cluster per test run, copied by each server.</summary>
    private static async Task<TempDirectory> TemplateAsync()
    {
        await TemplateGate.WaitAsync();
        try
        {
            if (_template is null)
            {
                var template = new TempDirectory();
                await RunAsync("chown", "postgres:postgres", template.Path);
                await RunAsync("setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--", Path.Combine(Bin, "initdb"),
                    "-D", Path.Combine(template.Path, "data"), "-U", "postgres", "-A", "trust", "--no-sync", "--no-instructions", "-E", "UTF8", "--locale=C");
                AppDomain.CurrentDomain.ProcessExit += (_, _) => template.Dispose();
                _template = template;
            }

            return _template;
        }
        finally
        {
            TemplateGate.Release();
        }
    }

    private async Task LaunchAsync()
    {
        var info = new ProcessStartInfo("setpriv") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        var args = new List<string>
        {
            // setpriv execs the server itself (runuser would fork and wait): the process is the postmaster.
            "--reuid=postgres", "--regid=postgres", "--init-groups", "--",
            Path.Combine(Bin, "postgres"), "-D", _dir.File("data"), "-p", Port.ToString(CultureInfo.InvariantCulture), "-k", _dir.Path,
            "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "logging_collector=off",
        };
        if (_tls)
        {
            args.AddRange(["-c", "ssl=on", "-c", $"ssl_cert_file={_dir.File("server.crt")}", "-c", $"ssl_key_file={_dir.File("server.key")}"]);
        }

        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        var process = Process.Start(info)!;
        _process = process;
        var log = new StreamWriter(_dir.File("postgres.log"), append: true) { AutoFlush = true };
        process.OutputDataReceived += (_, e) => Write(e.Data);
        process.ErrorDataReceived += (_, e) => Write(e.Data);
        process.Exited += (_, _) => { lock (log) { log.Dispose(); } };
        process.EnableRaisingEvents = true;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        var superuser = $"Host=127.0.0.1;Port={Port};Username=postgres;Database=postgres;Pooling=false;Timeout=2";
        await Poll.UntilAsync(
            async () =>
            {
                if (process.HasExited)
                {
                    Assert.Fail($"postgres exited ({process.ExitCode}): {Log}");
                }

                try
                {
                    await using var connection = new NpgsqlConnection(superuser);
                    await connection.OpenAsync();
                    return true;
                }
                catch (NpgsqlException)
                {
                    return false;
                }
            },
            TimeSpan.FromSeconds(60),
            "postgres to accept connections");

        void Write(string? line)
        {
            if (line is not null)
            {
                lock (log)
                {
                    try
                    {
                        log.WriteLine(line);
                    }
                    catch (ObjectDisposedException)
                    {
                    }
                }
            }
        }
    }

    /// <summary>A CA and a server certificate for 127.0.0.1 signed by it, as PEM files.</summary>
    private void WriteCertificates()
    {
        using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var caRequest = new CertificateRequest("CN=leader-sidecar test CA", caKey, HashAlgorithmName.SHA256);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        using var ca = caRequest.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));

        using var serverKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var serverRequest = new CertificateRequest("CN=127.0.0.1", serverKey, HashAlgorithmName.SHA256);
        var names = new SubjectAlternativeNameBuilder();
        names.AddIpAddress(System.Net.IPAddress.Loopback);
        names.AddDnsName("localhost");
        serverRequest.CertificateExtensions.Add(names.Build());
        serverRequest.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        using var server = serverRequest.Create(ca, DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(29), [1, 2, 3, 4]);

        File.WriteAllText(CaFile, ca.ExportCertificatePem());
        File.WriteAllText(_dir.File("server.crt"), server.ExportCertificatePem());
        File.WriteAllText(_dir.File("server.key"), serverKey.ExportPkcs8PrivateKeyPem());
    }

    /// <summary>The postmaster and every process it started.</summary>
    private List<int> Family()
    {
        if (_process is not { } process)
        {
            return [];
        }

        var family = new List<int> { process.Id };
        foreach (var dir in Directory.GetDirectories("/proc"))
        {
            if (int.TryParse(Path.GetFileName(dir), out var pid) && ParentOf(pid) == process.Id)
            {
                family.Add(pid);
            }
        }

        return family;
    }

    private void Signal(int signal)
    {
        foreach (var pid in Family())
        {
            _ = Kill(pid, signal);
        }
    }

    private static int? ParentOf(int pid)
    {
        try
        {
            // "pid (comm) state ppid ...": the command may contain spaces and parentheses.
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return int.Parse(fields[1], CultureInfo.InvariantCulture);
        }
        catch (IOException)
        {
            return null;
        }
    }

    private static bool IsZombie(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[stat.LastIndexOf(')') + 2] == 'Z';
        }
        catch (IOException)
        {
            return true;
        }
    }

    private static async Task RunAsync(string file, params string[] args)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        await process.WaitForExitAsync(deadline.Token);
        Assert.True(process.ExitCode == 0, $"{file} {string.Join(' ', args)} exited {process.ExitCode}: {await output}{await error}");
    }

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);
}
