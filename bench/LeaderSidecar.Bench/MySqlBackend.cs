using System.Globalization;

namespace LeaderSidecar.Bench;

/// <summary>
/// The MySQL backend (<c>bench/run --backend mysql</c>): Debian's MariaDB, one server on a free
/// loopback port with its data in the run's scratch directory, started with <c>--userstat=1</c>.
/// Root reaches it only over its unix socket (the harness's own statements); a counted replica
/// connects over TCP as its own user <c>bench_ID</c>, so the server counts its statements per
/// replica (<c>information_schema.USER_STATISTICS</c>); the others connect as <c>bench</c>.
/// </summary>
internal sealed class MySqlBackend : ServerBackend
{
    private const string Database = "leases";

    private static readonly RequestColumn[] Columns =
    [
        new("select", "SELECT", RequestKind.Read),
        new("update", "UPDATE", RequestKind.Write),
        new("other", "other commands (connection resets, INSERT, …)", RequestKind.NotARequest),
        new("connections", "connections opened", RequestKind.NotARequest),
    ];

    private readonly int _port = Harness.FreePort();

    private MySqlBackend(string directory)
        : base(directory)
    {
    }

    public override string Section => "mysql";

    public override string Title => "MySQL backend, on a real MariaDB";

    public override string Name => "MySQL";

    public override string Description => Report.F(
        $"a real MariaDB {Version} (Debian `mariadb-server`) on 127.0.0.1:{_port}, default durability, `--userstat=1`, data in a temporary directory; started and stopped by the harness; the daemons poll every 250 ms (the default `--mysql-poll-interval`)");

    public override IReadOnlyList<RequestColumn> RequestColumns => Columns;

    public override double PollsPerMinute => 60 / 0.25;

    public override string CountSource =>
        "the server's `information_schema.USER_STATISTICS` (`SELECT_COMMANDS`, `UPDATE_COMMANDS`, `OTHER_COMMANDS`, `TOTAL_CONNECTIONS`), each counted replica connecting as its own user";

    private string Socket => Path.Combine(Directory, "mysqld.sock");

    private string PasswordFile => Path.Combine(Directory, "password");

    public static async Task<MySqlBackend> StartAsync(string scratch)
    {
        return await StartedAsync(new MySqlBackend(System.IO.Directory.CreateDirectory(Path.Combine(scratch, "mariadb")).FullName), async mysql =>
        {
            var server = File.Exists("/usr/sbin/mariadbd") ? "/usr/sbin/mariadbd" : "mariadbd";
            await mysql.ReadVersionAsync(server);
            var data = Path.Combine(mysql.Directory, "data");
            var tmp = System.IO.Directory.CreateDirectory(Path.Combine(mysql.Directory, "tmp")).FullName;
            string[] common = ["--no-defaults", $"--datadir={data}", $"--user={Environment.UserName}", $"--tmpdir={tmp}"];
            await RunAsync("mariadb-install-db", [.. common, "--auth-root-authentication-method=socket", "--skip-test-db"]);
            var log = Path.Combine(mysql.Directory, "error.log");
            await mysql.LaunchAsync(
                server,
                [
                    .. common, $"--port={mysql._port}", "--bind-address=127.0.0.1", $"--socket={mysql.Socket}",
                    $"--pid-file={Path.Combine(mysql.Directory, "mysqld.pid")}", $"--log-error={log}", "--skip-name-resolve", "--userstat=1",
                ],
                log,
                async () => (await mysql.SqlAsync("SELECT 1")).Trim() == "1");
            await File.WriteAllTextAsync(mysql.PasswordFile, "bench\n");
            await mysql.SqlAsync($"CREATE DATABASE {Database}");
            await mysql.AddUserAsync("bench");
        });
    }

    public override Task PrepareCountedAsync(string identity) => AddUserAsync(User(identity));

    public override string[] DaemonArgs(string lease, string identity, bool counted) =>
    [
        "--backend", "mysql", "--mysql", Report.F($"mysql://{(counted ? User(identity) : "bench")}@127.0.0.1:{_port}/{Database}"), "--mysql-password-file", PasswordFile,
        "--namespace", "bench", "--lease-name", lease,
    ];

    public override async Task<Dictionary<string, long>?> ServerCountsAsync(string lease, string identity)
    {
        var row = (await SqlAsync($"SELECT SELECT_COMMANDS, UPDATE_COMMANDS, OTHER_COMMANDS, TOTAL_CONNECTIONS FROM information_schema.USER_STATISTICS WHERE USER = '{User(identity)}'")).Trim();
        var values = row.Length == 0 ? [0, 0, 0, 0] : row.Split('\t').Select(v => long.Parse(v, CultureInfo.InvariantCulture)).ToArray();
        return Columns.Select((c, i) => (c.Key, values[i])).ToDictionary();
    }

    private static string User(string identity) => $"bench_{identity}";

    /// <summary>A user with the password in <see cref="PasswordFile"/>, allowed everything in the database.</summary>
    private Task<string> AddUserAsync(string user) =>
        SqlAsync($"CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY 'bench'; GRANT ALL ON {Database}.* TO '{user}'@'%'");

    private Task<string> SqlAsync(string sql) =>
        RunAsync("mariadb", "--no-defaults", $"--socket={Socket}", "--user=root", "--batch", "--skip-column-names", "-e", sql);
}
