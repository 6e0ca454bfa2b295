using LeaderSidecar.Configuration;
using LeaderSidecar.Hosting;
using LeaderSidecar.Stores;
using LeaderSidecar.Stores.LocalFile;
using LeaderSidecar.Stores.Postgres;
using Npgsql;

namespace LeaderSidecar.Tests.Stores.Postgres;

/// <summary>The <c>--postgres*</c> flags, their environment twins, where the password may come from, and when the daemon picks PostgreSQL.</summary>
public sealed class PostgresFlagsTests
{
    private readonly Dictionary<string, string> _environment = [];

    [Fact]
    public void A_url_is_read_the_way_libpq_reads_it()
    {
        var postgres = Run(
            "--lease-name", "app",
            "--postgres", "postgresql://app%40corp@db-0:5433,db-1/leases?sslmode=verify-full&sslrootcert=/tls/ca.pem&target_session_attrs=primary&connect_timeout=5&application_name=billing",
            "--postgres-table", "coordination.leases", "--postgres-create-table=false", "--postgres-password-file", "/run/secrets/pg").Stores.Get<PostgresOptions>();

        var settings = postgres.Target!.Settings;
        Assert.Equal(("db-0:5433,db-1", "leases", "app@corp"), (settings.Host, settings.Database, settings.Username));
        Assert.Equal((SslMode.VerifyFull, "/tls/ca.pem", "primary", 5, "billing"), (settings.SslMode, settings.RootCertificate, settings.TargetSessionAttributes, settings.Timeout, settings.ApplicationName));
        Assert.Equal("db-0:5433,db-1/leases", postgres.Target.Address);
        Assert.Equal(new PostgresTableName("coordination", "leases"), postgres.Table);
        Assert.False(postgres.CreateTable);
        Assert.Equal("/run/secrets/pg", postgres.PasswordFile);
    }

    [Fact]
    public void An_npgsql_connection_string_is_read_too_and_the_defaults_apply()
    {
        var postgres = Run("--lease-name", "app", "--postgres", "Host=db;Username=app;Database=app;SSL Mode=Require").Stores.Get<PostgresOptions>();

        Assert.Equal(("db", "app", SslMode.Require), (postgres.Target!.Settings.Host, postgres.Target.Settings.Username, postgres.Target.Settings.SslMode));
        Assert.Equal("db:5432/app", postgres.Target.Address);
        Assert.Equal(PostgresTableName.Default, postgres.Table);
        Assert.True(postgres.CreateTable);
    }

    [Theory]
    [InlineData("db.example:5432")]
    [InlineData("postgresql://app:s3cret@db/app?sslmode=sometimes")]
    [InlineData("postgresql://app:s3cret@db:99999/app")]
    [InlineData("postgresql://app:s3cret@db/app?sslpasswd=s3cret")]
    [InlineData("postgresql:///app")]
    [InlineData("postgresql://[::1/app")]
    [InlineData("host=db user=app password=s3cret")]
    [InlineData("Host=db;Bogus=1;Password=s3cret")]
    [InlineData("Host=db;Port=abc;Password=s3cret")]
    public void A_malformed_value_is_one_line_that_never_shows_the_password(string value)
    {
        var invalid = Assert.IsType<ParseResult.Invalid>(CommandLine.Parse(["--lease-name", "a", "--postgres", value], Lookup));

        Assert.StartsWith("postgres: ", invalid.Message, StringComparison.Ordinal);
        Assert.EndsWith("(from --postgres)", invalid.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', invalid.Message);
        Assert.DoesNotContain("s3cret", invalid.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_password_in_the_flag_is_refused_but_the_same_url_in_its_environment_twin_is_used()
    {
        const string url = "postgresql://app:s3cret@db/app";

        var flagged = Assert.Throws<StartupException>(() => Create("--lease-name", "a", "--postgres", url));
        Assert.DoesNotContain("s3cret", flagged.Message, StringComparison.Ordinal);
        Assert.Contains("$LEADER_SIDECAR_POSTGRES", flagged.Message, StringComparison.Ordinal);

        var keyword = Assert.Throws<StartupException>(() => Create("--lease-name", "a", "--postgres", "Host=db;Username=app;SSL Password=s3cret"));
        Assert.DoesNotContain("s3cret", keyword.Message, StringComparison.Ordinal);

        _environment[PostgresStoreKind.TargetVariable] = url;
        Create("--lease-name", "a");

        // Given twice, the flag wins: and it is the flag that shows in ps.
        Assert.Throws<StartupException>(() => Create("--lease-name", "a", "--postgres", url));
    }

    [Fact]
    public void The_password_comes_from_the_file_else_our_variable_else_PGPASSWORD()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("pw"), "from-file\n");
        _environment[PostgresStoreKind.LibpqPasswordVariable] = "from-pgpassword";
        var url = new[] { "--lease-name", "a", "--postgres", "postgresql://app@db/app" };

        Assert.Equal("from-pgpassword", PostgresStoreKind.Password(Run(url).Stores.Get<PostgresOptions>(), Lookup));
        _environment[PostgresStoreKind.PasswordVariable] = "from-ours";
        Assert.Equal("from-ours", PostgresStoreKind.Password(Run(url).Stores.Get<PostgresOptions>(), Lookup));
        Assert.Equal("from-file", PostgresStoreKind.Password(Run([.. url, "--postgres-password-file", dir.File("pw")]).Stores.Get<PostgresOptions>(), Lookup));

        var missing = Assert.Throws<StartupException>(() => Create([.. url, "--postgres-password-file", dir.File("missing")]));
        Assert.Contains("--postgres-password-file", missing.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("leases", null, "leases")]
    [InlineData("coordination.leases", "coordination", "leases")]
    [InlineData("_x1._y2", "_x1", "_y2")]
    public void A_table_is_one_or_two_lowercase_identifiers(string value, string? schema, string table)
    {
        Assert.Equal(new PostgresTableName(schema, table), Run("--lease-name", "a", "--postgres-table", value).Stores.Get<PostgresOptions>().Table);
    }

    [Theory]
    [InlineData("Leases")]
    [InlineData("a.b.c")]
    [InlineData("1leases")]
    [InlineData("lea-ses")]
    [InlineData("leases;drop table x")]
    [InlineData("\"leases\"")]
    [InlineData(".leases")]
    [InlineData("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")]
    public void Anything_else_as_a_table_is_one_line(string value)
    {
        var invalid = Assert.IsType<ParseResult.Invalid>(CommandLine.Parse(["--lease-name", "a", "--postgres-table", value], Lookup));

        Assert.StartsWith("table \"", invalid.Message, StringComparison.Ordinal);
        Assert.EndsWith("(from --postgres-table)", invalid.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Create_table_takes_true_or_false()
    {
        Assert.True(Run("--lease-name", "a", "--postgres-create-table", "true").Stores.Get<PostgresOptions>().CreateTable);
        Assert.IsType<ParseResult.Invalid>(CommandLine.Parse(["--lease-name", "a", "--postgres-create-table=no"], Lookup));
    }

    [Fact]
    public void Auto_picks_postgres_when_it_is_given_and_refuses_two_stores()
    {
        Assert.IsType<FileStoreKind>(Select("--lease-name", "a", "--postgres-table", "x"));
        Assert.IsType<PostgresStoreKind>(Select("--lease-name", "a", "--postgres", "postgresql://app@db/app"));
        _environment[PostgresStoreKind.TargetVariable] = "postgresql://app@db/app";
        Assert.IsType<PostgresStoreKind>(Select("--lease-name", "a"));

        var both = Assert.Throws<StartupException>(() => Select("--lease-name", "a", "--etcd-endpoints", "http://127.0.0.1:2379"));
        Assert.Contains("--postgres", both.Message, StringComparison.Ordinal);
        _environment.Clear();

        var bare = Assert.Throws<StartupException>(() => Create("--lease-name", "a", "--backend", "postgres"));
        Assert.Contains("needs --postgres", bare.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Each_flag_has_an_environment_twin_and_help_lists_them_but_no_password_flag()
    {
        _environment["LEADER_SIDECAR_POSTGRES_TABLE"] = "x.y";
        _environment["LEADER_SIDECAR_POSTGRES_CREATE_TABLE"] = "false";

        var postgres = Run("--lease-name", "app").Stores.Get<PostgresOptions>();

        Assert.Equal((new PostgresTableName("x", "y"), false), (postgres.Table, postgres.CreateTable));
        var help = Assert.IsType<ParseResult.ShowHelp>(CommandLine.Parse(["--help"], Lookup)).Text;
        foreach (var flag in new[] { "postgres", "postgres-table", "postgres-create-table", "postgres-password-file" })
        {
            Assert.Contains($"--{flag} ", help, StringComparison.Ordinal);
            Assert.Contains("LEADER_SIDECAR_" + flag.Replace('-', '_').ToUpperInvariant(), help, StringComparison.Ordinal);
        }

        Assert.DoesNotContain("--postgres-password ", help, StringComparison.Ordinal);
    }

    private void Create(params string[] args) =>
        new PostgresStoreKind().Create(Run(args), Lookup, TimeProvider.System);

    private StoreKind Select(params string[] args) => StoreKinds.Select(Run(args), Lookup);

    private SidecarOptions Run(params string[] args) =>
        Assert.IsType<ParseResult.Run>(CommandLine.Parse(args, Lookup)).Options;

    private string? Lookup(string name) => _environment.GetValueOrDefault(name);
}
