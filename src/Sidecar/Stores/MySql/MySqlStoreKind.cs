using LeaderSidecar.Configuration;
using LeaderSidecar.Election;
using LeaderSidecar.Hosting;
using MySqlConnector;

namespace LeaderSidecar.Stores.MySql;

/// <summary><c>--backend mysql</c>: a row in a MySQL or MariaDB table, its flags, and the store built from them; problems are start-up errors.</summary>
internal sealed class MySqlStoreKind : StoreKind
{
    /// <summary>The environment variable holding the password (never a flag: flags show in <c>ps</c>).</summary>
    public const string PasswordVariable = "LEADER_SIDECAR_MYSQL_PASSWORD";

    /// <summary><c>--mysql</c>'s environment twin: the one place a connection string may carry a password.</summary>
    public const string SourceVariable = "LEADER_SIDECAR_MYSQL";

    /// <summary>The most connections one daemon opens: the elector's one request, the watch's own, and spares for requests being abandoned.</summary>
    private const int MaxPoolSize = 8;

    public override string Name => "mysql";

    public override IReadOnlyList<StoreFlag> Flags { get; } =
    [
        new("mysql", "URL|CONNECTION-STRING", "MySQL or MariaDB server for the mysql backend: mysql://USER@HOST:3306/DATABASE[?ssl-mode=verify-identity&ssl-ca=PATH], or a MySqlConnector connection string; the password comes from $LEADER_SIDECAR_MYSQL_PASSWORD or --mysql-password-file. Giving it makes --backend auto pick mysql.", null,
            (s, v) => MySqlOptions.Parse(v, out var problem) is not null ? s.Set<MySqlOptions>(m => m with { Source = v }) : problem),
        new("mysql-password-file", "PATH", "A file holding the MySQL user's password (one line).", null,
            (s, v) => s.Set<MySqlOptions>(m => m with { PasswordFile = v })),
        new("mysql-table", "NAME", "Table holding the leases (one row each), in the database of --mysql.", MySqlOptions.DefaultTable,
            (s, v) => MySqlOptions.IsTableName(v)
                ? s.Set<MySqlOptions>(m => m with { Table = v })
                : $"MySQL table name {CommandLine.Quote(v)} must be letters, digits and '_', not starting with a digit, at most 64"),
        new("mysql-create-table", "true|false", "Create the table when it is missing. false: never issue DDL; the user then needs only SELECT, INSERT and UPDATE on the table.", "true",
            (s, v) => v.ToLowerInvariant() switch
            {
                "true" => s.Set<MySqlOptions>(m => m with { CreateTable = true }),
                "false" => s.Set<MySqlOptions>(m => m with { CreateTable = false }),
                _ => $"expected true or false, not {CommandLine.Quote(v)}",
            }),
        new("mysql-poll-interval", "DURATION", "How often each replica reads the lease row (MySQL has no change feed): a released lease is taken over within about this long.", GoDuration.Format(MySqlOptions.DefaultPollInterval),
            (s, v) => !GoDuration.TryParse(v, out var interval, out var error) ? error
                : interval < MySqlOptions.MinPollInterval ? $"MySQL poll interval {CommandLine.Quote(v)} is shorter than {GoDuration.Format(MySqlOptions.MinPollInterval)}"
                : interval > SidecarOptions.MaxDuration ? $"duration {CommandLine.Quote(v)} is longer than {GoDuration.Format(SidecarOptions.MaxDuration)}"
                : s.Set<MySqlOptions>(m => m with { PollInterval = interval })),
    ];

    public override string? ChosenBy(SidecarOptions options) =>
        options.Stores.Get<MySqlOptions>().Source is not null ? "--mysql" : null;

    /// <summary>Builds the store: reads the password now, so a missing or misplaced one stops the start.</summary>
    public override Func<IServiceProvider, ILeaseStore> Create(SidecarOptions options, Func<string, string?> environment, TimeProvider time)
    {
        var mysql = options.Stores.Get<MySqlOptions>();
        if (mysql.Source is null)
        {
            throw new StartupException("--backend mysql needs --mysql (mysql://USER@HOST:3306/DATABASE, or a connection string in $LEADER_SIDECAR_MYSQL)");
        }

        var connection = MySqlOptions.Parse(mysql.Source, out var problem) ?? throw new StartupException(problem!);
        var inSource = connection.Password.Length > 0;
        if (inSource && environment(SourceVariable) != mysql.Source)
        {
            // Flags show in ps to every user of the host; the environment does not.
            throw new StartupException($"--mysql contains a password, which every local user can read in ps: put it in ${PasswordVariable} or --mysql-password-file, or pass the whole connection string in ${SourceVariable}");
        }

        var given = new[]
        {
            (Name: $"${SourceVariable}", Given: inSource),
            (Name: "--mysql-password-file", Given: mysql.PasswordFile is not null),
            (Name: $"${PasswordVariable}", Given: !string.IsNullOrEmpty(environment(PasswordVariable))),
        }.Where(source => source.Given).Select(source => source.Name).ToList();
        if (given.Count > 1)
        {
            throw new StartupException($"the MySQL password is given twice ({given[0]} and {given[1]}): keep one");
        }

        if (mysql.PasswordFile is { } file)
        {
            connection.Password = StoreFiles.ReadSecret("--mysql-password-file", file);
        }
        else if (environment(PasswordVariable) is { Length: > 0 } password)
        {
            connection.Password = password;
        }

        if (mysql.PollInterval > options.RetryPeriod)
        {
            throw new StartupException($"--mysql-poll-interval ({GoDuration.Format(mysql.PollInterval)}) must not be longer than --retry-period ({GoDuration.Format(options.RetryPeriod)}): followers would see renews late");
        }

        var requestTimeout = options.Election.RequestTimeout;
        Settle(connection, requestTimeout);
        return services => new MySqlLeaseStore(
            connection,
            mysql.Table,
            mysql.CreateTable,
            options.Namespace,
            options.LeaseName,
            mysql.PollInterval,
            requestTimeout,
            time,
            services.GetRequiredService<ILogger<MySqlLeaseStore>>());
    }

    /// <summary>
    /// The settings the store relies on, whatever the connection string said: found rows (an
    /// UPDATE that matched is 1 even if nothing changed), UTC times, strings for uids, errors for
    /// zero dates, pooled connections reset (and so checked) when taken from the pool — one that
    /// died with a restarted server is replaced, not used — and timeouts within the elector's
    /// request timeout.
    /// </summary>
    internal static void Settle(MySqlConnectionStringBuilder connection, TimeSpan requestTimeout)
    {
        var seconds = (uint)Math.Max(1, Math.Ceiling(requestTimeout.TotalSeconds));
        connection.UseAffectedRows = false;
        connection.DateTimeKind = MySqlDateTimeKind.Utc;
        connection.GuidFormat = MySqlGuidFormat.None;
        connection.AllowZeroDateTime = false;
        connection.ConvertZeroDateTime = false;
        connection.AllowUserVariables = false;
        connection.AllowLoadLocalInfile = false;
        connection.AutoEnlist = false;
        connection.Pooling = true;
        connection.ConnectionReset = true;
        connection.MaximumPoolSize = MaxPoolSize;
        connection.MinimumPoolSize = 0;
        connection.ConnectionTimeout = seconds;
        connection.DefaultCommandTimeout = seconds;
        connection.CancellationTimeout = 1;
        if (string.IsNullOrEmpty(connection.ApplicationName))
        {
            connection.ApplicationName = "leader-sidecar";
        }
        connection.PersistSecurityInfo = false;
    }
}
