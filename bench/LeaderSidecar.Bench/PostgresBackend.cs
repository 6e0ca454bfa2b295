using System.Globalization;

namespace LeaderSidecar.Bench;

/// <summary>
/// The PostgreSQL backend (<c>bench/run --backend postgres</c>): Debian's PostgreSQL 15, run as the
/// <c>postgres</c> user (it refuses root) with <c>runuser</c>, on a free loopback port with its data
/// in a temporary directory, default durability (fsync on), <c>pg_stat_statements</c> loaded. A
/// counted replica connects as its own superuser role <c>bench_ID</c>, so the server counts its
/// statements per replica (<c>pg_stat_statements</c> keys by role); the others connect as
/// <c>postgres</c>. Local connections are trusted: no passwords.
/// </summary>
internal sealed class PostgresBackend : ServerBackend
{
    private const string Bin = "/usr/lib/postgresql/15/bin";

    private static readonly RequestColumn[] Columns =
    [
        new("select", "SELECT", RequestKind.Read),
        new("insert", "INSERT", RequestKind.Write),
        new("update", "UPDATE", RequestKind.Write),
        new("listen", "LISTEN (opened)", RequestKind.Read),
        new("other", "other statements", RequestKind.Read),
    ];

    private readonly int _port = Harness.FreePort();
    private readonly SortedSet<string> _others = new(StringComparer.Ordinal);

    // Not in the run's scratch directory: that one is root's alone, and the server runs as postgres.
    private PostgresBackend()
        : base(System.IO.Directory.CreateTempSubdirectory("leader-sidecar-bench-postgres-").FullName)
    {
    }

    public override string Section => "postgres";

    public override string Title => "PostgreSQL backend, on a real PostgreSQL";

    public override string Name => "PostgreSQL";

    public override string Description => Report.F(
        $"a real PostgreSQL {Version} (Debian `postgresql-15`) on 127.0.0.1:{_port}, run as the postgres user, default settings (fsync on) plus `pg_stat_statements`, data in a temporary directory; started and stopped by the harness");

    public override IReadOnlyList<RequestColumn> RequestColumns => Columns;

    public override string CountSource => Report.F(
        $"the server's `pg_stat_statements` (calls of top-level statements, by their first word; other statements seen: {(_others.Count == 0 ? "none" : string.Join(", ", _others.Select(w => $"`{w.ToUpperInvariant()}`")))}), each counted replica connecting as its own role");

    public static async Task<PostgresBackend> StartAsync()
    {
        return await StartedAsync(new PostgresBackend(), async postgres =>
        {
            await postgres.ReadVersionAsync(Path.Combine(Bin, "postgres"));
            await RunAsync("chown", "postgres:postgres", postgres.Directory);
            var data = Path.Combine(postgres.Directory, "data");
            await RunAsync("runuser", "-u", "postgres", "--", Path.Combine(Bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "--no-instructions", "-E", "UTF8", "--locale=C");
            await postgres.LaunchAsync(
                "runuser",
                [
                    "-u", "postgres", "--", Path.Combine(Bin, "postgres"), "-D", data, "-p", postgres._port.ToString(CultureInfo.InvariantCulture), "-k", postgres.Directory,
                    "-c", "listen_addresses=127.0.0.1", "-c", "shared_preload_libraries=pg_stat_statements",
                    "-c", "logging_collector=on", "-c", $"log_directory={postgres.Directory}", "-c", "log_filename=postgres.log",
                ],
                Path.Combine(postgres.Directory, "postgres.log"),
                async () => (await postgres.SqlAsync("SELECT 1")).Trim() == "1");
            await postgres.SqlAsync("CREATE EXTENSION pg_stat_statements");
        });
    }

    public override Task PrepareCountedAsync(string identity) =>
        SqlAsync($"DO $$ BEGIN CREATE ROLE {Role(identity)} LOGIN SUPERUSER; EXCEPTION WHEN duplicate_object THEN NULL; END $$");

    public override string[] DaemonArgs(string lease, string identity, bool counted) =>
    [
        "--backend", "postgres", "--postgres", Report.F($"postgresql://{(counted ? Role(identity) : "postgres")}@127.0.0.1:{_port}/postgres"),
        "--namespace", "bench", "--lease-name", lease,
    ];

    public override async Task<Dictionary<string, long>?> ServerCountsAsync(string lease, string identity)
    {
        var rows = await SqlAsync($"""
            SELECT split_part(lower(btrim(regexp_replace(s.query, '\s+', ' ', 'g'))), ' ', 1), sum(s.calls)
              FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
             WHERE r.rolname = '{Role(identity)}' GROUP BY 1
            """);
        var counts = Columns.ToDictionary(c => c.Key, _ => 0L);
        foreach (var row in rows.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var (word, calls) = (row.Split('|')[0], long.Parse(row.Split('|')[1], CultureInfo.InvariantCulture));
            if (!counts.ContainsKey(word))
            {
                _others.Add(word);
                word = "other";
            }

            counts[word] += calls;
        }

        return counts;
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        System.IO.Directory.Delete(Directory, recursive: true);
    }

    private static string Role(string identity) => $"bench_{identity}";

    private Task<string> SqlAsync(string sql) =>
        RunAsync(Path.Combine(Bin, "psql"), "-h", "127.0.0.1", "-p", _port.ToString(CultureInfo.InvariantCulture), "-U", "postgres", "-d", "postgres", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql);
}
