using LeaderSidecar.Configuration;
using LeaderSidecar.Hosting;
using LeaderSidecar.Stores;
using LeaderSidecar.Stores.Etcd;
using LeaderSidecar.Stores.LocalFile;
using LeaderSidecar.Stores.MySql;
using MySqlConnector;

namespace LeaderSidecar.Tests.Stores.MySql;

/// <summary>The <c>--mysql*</c> flags, their environment twins, where the password may come from, and when the daemon picks MySQL.</summary>
public sealed class MySqlFlagsTests
{
    private readonly Dictionary<string, string> _environment = [];

    [Fact]
    public void All_mysql_flags_are_read()
    {
        var options = Run(
            "--lease-name", "app", "--backend", "mysql", "--mysql", "mysql://app@db.example:3307/elections?ssl-mode=verify-identity&ssl-ca=/tls/ca.pem",
            "--mysql-password-file", "/run/secrets/mysql", "--mysql-table", "leases_v1", "--mysql-create-table=false", "--mysql-poll-interval", "100ms");

        Assert.Equal("mysql", options.Backend);
        var mysql = options.Stores.Get<MySqlOptions>();
        Assert.Equal("leases_v1", mysql.Table);
        Assert.False(mysql.CreateTable);
        Assert.Equal(TimeSpan.FromMilliseconds(100), mysql.PollInterval);
        Assert.Equal("/run/secrets/mysql", mysql.PasswordFile);
        var connection = MySqlOptions.Parse(mysql.Source!, out _)!;
        Assert.Equal("db.example", connection.Server);
        Assert.Equal(3307u, connection.Port);
        Assert.Equal("app", connection.UserID);
        Assert.Equal("elections", connection.Database);
        Assert.Equal(MySqlSslMode.VerifyFull, connection.SslMode);
        Assert.Equal("/tls/ca.pem", connection.SslCa);
        Assert.Equal("", connection.Password);
    }

    [Fact]
    public void The_defaults_are_the_documented_ones()
    {
        var mysql = Run("--lease-name", "app", "--mysql", "mysql://app@db/elections").Stores.Get<MySqlOptions>();

        Assert.Equal("leader_sidecar_leases", mysql.Table);
        Assert.True(mysql.CreateTable);
        Assert.Equal(TimeSpan.FromMilliseconds(250), mysql.PollInterval);
        var connection = MySqlOptions.Parse(mysql.Source!, out _)!;
        Assert.Equal(3306u, connection.Port);
        Assert.Equal(MySqlSslMode.Preferred, connection.SslMode);
    }

    [Theory]
    [InlineData("disabled", MySqlSslMode.None)]
    [InlineData("preferred", MySqlSslMode.Preferred)]
    [InlineData("required", MySqlSslMode.Required)]
    [InlineData("verify-ca", MySqlSslMode.VerifyCA)]
    [InlineData("VERIFY_IDENTITY", MySqlSslMode.VerifyFull)]
    public void The_url_takes_the_mysql_clients_ssl_modes(string mode, MySqlSslMode expected) =>
        Assert.Equal(expected, MySqlOptions.Parse($"mysql://app@db/x?ssl-mode={mode}", out _)!.SslMode);

    [Fact]
    public void A_connection_string_is_taken_as_it_is()
    {
        var connection = MySqlOptions.Parse("Server=db1,db2;Port=3306;User ID=app;Database=elections;SslMode=VerifyCA;SslCa=/tls/ca.pem;Load Balance=FailOver", out var problem);

        Assert.Null(problem);
        Assert.Equal("db1,db2", connection!.Server);
        Assert.Equal(MySqlLoadBalance.FailOver, connection.LoadBalance);
        Assert.Equal(MySqlSslMode.VerifyCA, connection.SslMode);
    }

    [Fact]
    public void Each_flag_has_an_environment_twin_and_help_lists_them()
    {
        _environment["LEADER_SIDECAR_MYSQL"] = "mysql://app@10.0.0.1/x";
        _environment["LEADER_SIDECAR_MYSQL_TABLE"] = "t";
        _environment["LEADER_SIDECAR_MYSQL_CREATE_TABLE"] = "false";

        var mysql = Run("--lease-name", "app").Stores.Get<MySqlOptions>();

        Assert.Equal("mysql://app@10.0.0.1/x", mysql.Source);
        Assert.Equal("t", mysql.Table);
        Assert.False(mysql.CreateTable);
        var help = Assert.IsType<ParseResult.ShowHelp>(CommandLine.Parse(["--help"], Lookup)).Text;
        foreach (var flag in new[] { "mysql", "mysql-password-file", "mysql-table", "mysql-create-table", "mysql-poll-interval" })
        {
            Assert.Contains($"--{flag} ", help, StringComparison.Ordinal);
            Assert.Contains("LEADER_SIDECAR_" + flag.Replace('-', '_').ToUpperInvariant(), help, StringComparison.Ordinal);
        }

        // The password is never a flag (flags show in ps): only a file or the environment.
        Assert.DoesNotContain("--mysql-password ", help, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("mysql://db/elections", "needs a user")]
    [InlineData("mysql://app@db", "needs a database")]
    [InlineData("mysql://app@db/", "needs a database")]
    [InlineData("mysql://app@db/a/b", "is not a URL like")]
    [InlineData("postgres://app@db/x", "is not a URL like")]
    [InlineData("mysql://app@db/x?sslmode=require", "unknown parameter \"sslmode\"")]
    [InlineData("mysql://app@db/x?ssl-mode=yes", "ssl-mode \"yes\" is not one of")]
    [InlineData("Server=db;Database=x", "needs a user")]
    [InlineData("Server=db;User ID=app;Database=x;Bogus=1", "neither a mysql:// URL nor a valid connection string")]
    [InlineData("db:3306", "neither a mysql:// URL nor a valid connection string")]
    public void A_malformed_server_is_one_line(string value, string expected)
    {
        var invalid = Assert.IsType<ParseResult.Invalid>(CommandLine.Parse(["--lease-name", "a", "--mysql", value], Lookup));

        Assert.Contains(expected, invalid.Message, StringComparison.Ordinal);
        Assert.EndsWith("(from --mysql)", invalid.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', invalid.Message);
    }

    [Theory]
    [InlineData("mysql://app:s3cret@db/x/y")]
    [InlineData("Server=db;User ID=app;Password=s3cret;Database=x;Bogus=1")]
    public void A_malformed_server_is_refused_without_showing_its_password(string value)
    {
        var invalid = Assert.IsType<ParseResult.Invalid>(CommandLine.Parse(["--lease-name", "a", "--mysql", value], Lookup));

        Assert.DoesNotContain("s3cret", invalid.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_password_in_the_flag_value_is_refused_and_in_the_environment_twin_accepted()
    {
        foreach (var value in new[] { "mysql://app:s3cret@db/x", "Server=db;User ID=app;Password=s3cret;Database=x" })
        {
            _environment.Clear();
            var flag = Assert.Throws<StartupException>(() => Build("--lease-name", "a", "--mysql", value));
            Assert.Contains("ps", flag.Message, StringComparison.Ordinal);
            Assert.DoesNotContain("s3cret", flag.Message, StringComparison.Ordinal);

            _environment["LEADER_SIDECAR_MYSQL"] = value;
            Build("--lease-name", "a");
        }
    }

    [Fact]
    public void The_password_comes_from_one_place_only()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("pw"), "from-file\n");
        _environment[MySqlStoreKind.PasswordVariable] = "from-env";

        var twice = Assert.Throws<StartupException>(() => Build("--lease-name", "a", "--mysql", "mysql://app@db/x", "--mysql-password-file", dir.File("pw")));
        Assert.Contains("--mysql-password-file", twice.Message, StringComparison.Ordinal);
        Assert.Contains(MySqlStoreKind.PasswordVariable, twice.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("from-", twice.Message, StringComparison.Ordinal);

        _environment["LEADER_SIDECAR_MYSQL"] = "mysql://app:in-url@db/x";
        Assert.Throws<StartupException>(() => Build("--lease-name", "a"));

        _environment.Remove(MySqlStoreKind.PasswordVariable);
        Build("--lease-name", "a");
        _environment.Remove("LEADER_SIDECAR_MYSQL");
        Build("--lease-name", "a", "--mysql", "mysql://app@db/x", "--mysql-password-file", dir.File("pw"));
    }

    [Fact]
    public void An_unreadable_password_file_stops_the_start()
    {
        using var dir = new TempDirectory();

        var missing = Assert.Throws<StartupException>(() => Build("--lease-name", "a", "--mysql", "mysql://app@db/x", "--mysql-password-file", dir.File("missing")));

        Assert.Contains("--mysql-password-file", missing.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--mysql-table", "1leases", "must be letters, digits and '_'")]
    [InlineData("--mysql-table", "leases; DROP TABLE x", "must be letters, digits and '_'")]
    [InlineData("--mysql-table", "db.leases", "must be letters, digits and '_'")]
    [InlineData("--mysql-create-table", "maybe", "expected true or false")]
    [InlineData("--mysql-poll-interval", "10ms", "shorter than 50ms")]
    [InlineData("--mysql-poll-interval", "soon", "invalid duration")]
    public void A_bad_setting_is_one_line(string flag, string value, string expected)
    {
        var invalid = Assert.IsType<ParseResult.Invalid>(CommandLine.Parse(["--lease-name", "a", "--mysql", "mysql://app@db/x", flag, value], Lookup));

        Assert.Contains(expected, invalid.Message, StringComparison.Ordinal);
        Assert.EndsWith($"(from {flag})", invalid.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_poll_interval_longer_than_the_retry_period_stops_the_start()
    {
        var slow = Assert.Throws<StartupException>(() => Build("--lease-name", "a", "--mysql", "mysql://app@db/x", "--mysql-poll-interval", "3s"));

        Assert.Contains("--retry-period", slow.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_backend_without_a_server_stops_the_start()
    {
        var none = Assert.Throws<StartupException>(() => Build("--lease-name", "a", "--backend", "mysql"));

        Assert.Contains("--mysql", none.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Auto_picks_mysql_when_a_server_is_given_and_refuses_two_stores()
    {
        Assert.IsType<FileStoreKind>(Select("--lease-name", "a", "--mysql-table", "t"));
        Assert.IsType<MySqlStoreKind>(Select("--lease-name", "a", "--mysql", "mysql://app@db/x"));
        Assert.IsType<MySqlStoreKind>(Select("--lease-name", "a", "--backend", "mysql"));
        Assert.IsType<EtcdStoreKind>(Select("--lease-name", "a", "--backend", "etcd", "--mysql", "mysql://app@db/x"));

        var both = Assert.Throws<StartupException>(() => Select("--lease-name", "a", "--mysql", "mysql://app@db/x", "--etcd-endpoints", "http://127.0.0.1:2379"));
        Assert.Contains("--backend", both.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_connection_is_settled_whatever_the_connection_string_said()
    {
        var connection = new MySqlConnectionStringBuilder("Server=db;User ID=app;Database=x;UseAffectedRows=true;DateTimeKind=Local;GuidFormat=Char36;AllowZeroDateTime=true;ConnectionReset=false;Maximum Pool Size=500");

        MySqlStoreKind.Settle(connection, TimeSpan.FromSeconds(5));

        Assert.False(connection.UseAffectedRows);
        Assert.Equal(MySqlDateTimeKind.Utc, connection.DateTimeKind);
        Assert.Equal(MySqlGuidFormat.None, connection.GuidFormat);
        Assert.False(connection.AllowZeroDateTime);
        Assert.True(connection.ConnectionReset);
        Assert.Equal(8u, connection.MaximumPoolSize);
        Assert.Equal(5u, connection.DefaultCommandTimeout);
        Assert.Equal(5u, connection.ConnectionTimeout);
    }

    private void Build(params string[] args) => new MySqlStoreKind().Create(Run(args), Lookup, TimeProvider.System);

    private StoreKind Select(params string[] args) => StoreKinds.Select(Run(args), Lookup);

    private SidecarOptions Run(params string[] args) =>
        Assert.IsType<ParseResult.Run>(CommandLine.Parse(args, Lookup)).Options;

    private string? Lookup(string name) => _environment.GetValueOrDefault(name);
}
