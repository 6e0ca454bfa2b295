using LeaderSidecar.Configuration;
using LeaderSidecar.Election;
using LeaderSidecar.Hosting;

namespace LeaderSidecar.Stores.Postgres;

/// <summary><c>--backend postgres</c>: a row in a PostgreSQL table, its flags, and the store built from them.</summary>
internal sealed class PostgresStoreKind : StoreKind
{
    /// <summary>The environment twin of <c>--postgres</c>: the one place a URL may carry a password.</summary>
    public const string TargetVariable = "LEADER_SIDECAR_POSTGRES";

    /// <summary>The daemon's own password variable.</summary>
    public const string PasswordVariable = "LEADER_SIDECAR_POSTGRES_PASSWORD";

    /// <summary>libpq's password variable, as <c>psql</c> reads it.</summary>
    public const string LibpqPasswordVariable = "PGPASSWORD";

    public override string Name => "postgres";

    public override IReadOnlyList<StoreFlag> Flags { get; } =
    [
        new("postgres", "URL|CONNSTRING", "PostgreSQL server for the postgres backend: postgresql://USER@HOST:5432/DB?sslmode=verify-full (several HOST:PORT separated by commas fail over, with target_session_attrs=primary) or an Npgsql connection string; giving it makes --backend auto pick postgres. No password here (flags show in ps): use $LEADER_SIDECAR_POSTGRES_PASSWORD, $PGPASSWORD, --postgres-password-file, or the whole URL in $LEADER_SIDECAR_POSTGRES.", null,
            (s, v) => PostgresTarget.Parse(v, out var problem) is { } target
                ? s.Set<PostgresOptions>(p => p with { Target = target, TargetApplied = p.TargetApplied + 1 })
                : problem),
        new("postgres-table", "[SCHEMA.]TABLE", "Table of leases (one row each: namespace, name, the record's fields, version, uid); also the LISTEN channel's name.", PostgresOptions.DefaultTable,
            (s, v) => PostgresTableName.Parse(v, out var problem) is { } table ? s.Set<PostgresOptions>(p => p with { Table = table }) : problem),
        new("postgres-create-table", "true|false", "Create the table and its triggers if missing (needs CREATE on the schema). With false a role with only SELECT, INSERT, UPDATE on the table is enough.", "true",
            (s, v) => v switch
            {
                "true" => s.Set<PostgresOptions>(p => p with { CreateTable = true }),
                "false" => s.Set<PostgresOptions>(p => p with { CreateTable = false }),
                _ => $"expected true or false, not \"{PostgresTarget.Bounded(v)}\"",
            }),
        new("postgres-password-file", "PATH", "A file holding the PostgreSQL password (one line).", null,
            (s, v) => v.Length > 0 ? s.Set<PostgresOptions>(p => p with { PasswordFile = v }) : "postgres password file path must not be empty"),
    ];

    public override string? ChosenBy(SidecarOptions options) =>
        options.Stores.Get<PostgresOptions>().Target is null ? null : "--postgres";

    /// <summary>Builds the store: the password is read now, so a missing file or a password in a flag stops the start.</summary>
    public override Func<IServiceProvider, ILeaseStore> Create(SidecarOptions options, Func<string, string?> environment, TimeProvider time)
    {
        var postgres = options.Stores.Get<PostgresOptions>();
        var target = postgres.Target ?? throw new StartupException($"--backend postgres needs --postgres (or ${TargetVariable}): a postgresql://USER@HOST:5432/DB URL");
        if (target.HasSecret && !(postgres.TargetApplied == 1 && !string.IsNullOrWhiteSpace(environment(TargetVariable))))
        {
            throw new StartupException(
                $"--postgres carries a password, and flags show in ps: put the password in ${PasswordVariable}, ${LibpqPasswordVariable} or --postgres-password-file, or the whole URL in ${TargetVariable}");
        }

        var password = Password(postgres, environment);
        return services => new PostgresLeaseStore(
            target,
            password,
            postgres.Table,
            postgres.CreateTable,
            options.Namespace,
            options.LeaseName,
            options.Election.RequestTimeout,
            time,
            services.GetRequiredService<ILogger<PostgresLeaseStore>>());
    }

    /// <summary>
    /// The password beside the URL: --postgres-password-file, else $LEADER_SIDECAR_POSTGRES_PASSWORD,
    /// else $PGPASSWORD (as psql reads it); null when none is given. A password in the URL itself
    /// (from $LEADER_SIDECAR_POSTGRES) wins over all of them, as in libpq.
    /// </summary>
    internal static string? Password(PostgresOptions postgres, Func<string, string?> environment) =>
        postgres.PasswordFile is { } file ? ReadPassword(file)
        : NonEmpty(environment(PasswordVariable)) ?? NonEmpty(environment(LibpqPasswordVariable));

    private static string? NonEmpty(string? value) => string.IsNullOrEmpty(value) ? null : value;

    private static string ReadPassword(string path)
    {
        try
        {
            // One line; a trailing newline from `echo` is not part of the password.
            return File.ReadAllText(path).TrimEnd('\r', '\n');
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new StartupException($"cannot read the postgres password file (--postgres-password-file): {e.Message}");
        }
    }
}
