using LeaderSidecar.Configuration;
using LeaderSidecar.Hosting;
using LeaderSidecar.Stores;
using LeaderSidecar.Stores.Etcd;
using LeaderSidecar.Stores.LocalFile;
using LeaderSidecar.Stores.Redis;

namespace LeaderSidecar.Tests.Stores.Redis;

/// <summary>The <c>--redis*</c> flags, their environment twins, and when the daemon picks Redis.</summary>
public sealed class RedisFlagsTests
{
    private readonly Dictionary<string, string> _environment = [];

    [Fact]
    public void All_redis_flags_are_read()
    {
        var options = Run(
            "--lease-name", "app", "--backend", "redis", "--redis", "rediss://app@redis.example:6380/3", "--redis-prefix", "apps:",
            "--redis-password-file", "/run/secrets/redis", "--redis-ca", "/tls/ca.pem", "--redis-cert", "/tls/client.pem",
            "--redis-key", "/tls/client-key.pem", "--redis-min-replicas", "2");

        Assert.Equal("redis", options.Backend);
        var redis = options.Stores.Get<RedisOptions>();
        Assert.Equal(new RedisEndpoint(true, "redis.example", 6380, 3, "app"), redis.Endpoint);
        Assert.Equal("apps:", redis.Prefix);
        Assert.Equal("/run/secrets/redis", redis.PasswordFile);
        Assert.Equal("/tls/ca.pem", redis.CaFile);
        Assert.Equal("/tls/client.pem", redis.CertFile);
        Assert.Equal("/tls/client-key.pem", redis.KeyFile);
        Assert.Equal(2, redis.MinReplicas);
    }

    [Theory]
    [InlineData("redis://127.0.0.1", false, "127.0.0.1", 6379, 0, null)]
    [InlineData("redis://127.0.0.1:7000/", false, "127.0.0.1", 7000, 0, null)]
    [InlineData("redis://localhost/15", false, "localhost", 6379, 15, null)]
    [InlineData("rediss://sidecar@redis-0.redis:6379/0", true, "redis-0.redis", 6379, 0, "sidecar")]
    [InlineData("redis://[::1]:6379/1", false, "::1", 6379, 1, null)]
    public void Urls_give_scheme_host_port_database_and_user(string url, bool tls, string host, int port, int database, string? user)
    {
        var endpoint = RedisOptions.ParseUrl(url, out var problem);

        Assert.Null(problem);
        Assert.Equal(new RedisEndpoint(tls, host, port, database, user), endpoint);
    }

    [Fact]
    public void The_url_is_logged_without_secrets_in_a_form_that_parses_back()
    {
        var endpoint = new RedisEndpoint(true, "::1", 6380, 2, "app");

        Assert.Equal("rediss://app@[::1]:6380/2", endpoint.ToString());
        Assert.Equal(endpoint, RedisOptions.ParseUrl(endpoint.ToString(), out _));
    }

    [Theory]
    [InlineData("127.0.0.1:6379")]
    [InlineData("http://127.0.0.1:6379")]
    [InlineData("redis://127.0.0.1:6379/db0")]
    [InlineData("redis://127.0.0.1:6379/-1")]
    [InlineData("redis://127.0.0.1:6379/0?timeout=5")]
    [InlineData("redis://")]
    public void A_malformed_url_is_one_line(string url)
    {
        var invalid = Assert.IsType<ParseResult.Invalid>(CommandLine.Parse(["--lease-name", "a", "--redis", url], Lookup));

        Assert.StartsWith("Redis URL \"", invalid.Message, StringComparison.Ordinal);
        Assert.EndsWith("(from --redis)", invalid.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', invalid.Message);
    }

    [Theory]
    [InlineData("redis://app:s3cret@redis:6379/0")]
    [InlineData("redis://:s3cret@redis:6379")]
    [InlineData("rediss://app:s3cret@[::1]/0")]
    [InlineData("redis://app:s3cret@")]
    public void A_url_with_a_password_in_it_is_refused_without_showing_the_password(string url)
    {
        var invalid = Assert.IsType<ParseResult.Invalid>(CommandLine.Parse(["--lease-name", "a", "--redis", url], Lookup));
        _environment["LEADER_SIDECAR_REDIS"] = url;
        var fromEnvironment = Assert.IsType<ParseResult.Invalid>(CommandLine.Parse(["--lease-name", "a"], Lookup));

        Assert.DoesNotContain("s3cret", invalid.Message, StringComparison.Ordinal);
        Assert.Contains("must not carry a password", invalid.Message, StringComparison.Ordinal);
        Assert.Contains(RedisStoreKind.PasswordVariable, invalid.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("s3cret", fromEnvironment.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("-1")]
    [InlineData("101")]
    [InlineData("two")]
    [InlineData("")]
    public void Min_replicas_is_a_small_whole_number(string value)
    {
        var invalid = Assert.IsType<ParseResult.Invalid>(CommandLine.Parse(["--lease-name", "a", $"--redis-min-replicas={value}"], Lookup));

        Assert.Contains("--redis-min-replicas", invalid.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Each_flag_has_an_environment_twin_and_help_lists_them_but_no_password_flag()
    {
        _environment["LEADER_SIDECAR_REDIS"] = "redis://10.0.0.1:6379/2";
        _environment["LEADER_SIDECAR_REDIS_PREFIX"] = "x:";
        _environment["LEADER_SIDECAR_REDIS_MIN_REPLICAS"] = "1";

        var redis = Run("--lease-name", "app").Stores.Get<RedisOptions>();

        Assert.Equal(new RedisEndpoint(false, "10.0.0.1", 6379, 2, null), redis.Endpoint);
        Assert.Equal("x:", redis.Prefix);
        Assert.Equal(1, redis.MinReplicas);
        var help = Assert.IsType<ParseResult.ShowHelp>(CommandLine.Parse(["--help"], Lookup)).Text;
        foreach (var flag in new[] { "redis", "redis-prefix", "redis-password-file", "redis-ca", "redis-cert", "redis-key", "redis-min-replicas" })
        {
            Assert.Contains($"--{flag} ", help, StringComparison.Ordinal);
            Assert.Contains("LEADER_SIDECAR_" + flag.Replace('-', '_').ToUpperInvariant(), help, StringComparison.Ordinal);
        }

        Assert.DoesNotContain("--redis-password ", help, StringComparison.Ordinal);
    }

    [Fact]
    public void Auto_picks_redis_when_its_url_is_given_and_refuses_two_stores()
    {
        Assert.IsType<FileStoreKind>(Select("--lease-name", "a", "--redis-prefix", "x:"));
        Assert.IsType<RedisStoreKind>(Select("--lease-name", "a", "--redis", "redis://127.0.0.1"));
        Assert.IsType<RedisStoreKind>(Select("--lease-name", "a", "--backend", "redis"));
        Assert.IsType<EtcdStoreKind>(Select("--lease-name", "a", "--backend", "etcd", "--redis", "redis://127.0.0.1"));

        var both = Assert.Throws<StartupException>(() => Select("--lease-name", "a", "--redis", "redis://127.0.0.1", "--etcd-endpoints", "http://127.0.0.1:2379"));
        Assert.Contains("--redis", both.Message, StringComparison.Ordinal);
        Assert.Contains("--backend", both.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_user_needs_a_password_and_tls_files_need_rediss()
    {
        var user = Assert.Throws<StartupException>(() => Create("--lease-name", "a", "--redis", "redis://app@127.0.0.1"));
        Assert.Contains(RedisStoreKind.PasswordVariable, user.Message, StringComparison.Ordinal);

        _environment[RedisStoreKind.PasswordVariable] = "pw";
        Create("--lease-name", "a", "--redis", "redis://app@127.0.0.1");
        Create("--lease-name", "a", "--redis", "redis://127.0.0.1");

        var ca = Assert.Throws<StartupException>(() => Create("--lease-name", "a", "--redis", "redis://127.0.0.1", "--redis-ca", "/tls/ca.pem"));
        Assert.Contains("rediss://", ca.Message, StringComparison.Ordinal);
        var half = Assert.Throws<StartupException>(() => Create("--lease-name", "a", "--redis", "rediss://127.0.0.1", "--redis-cert", "/tls/c.pem"));
        Assert.Contains("--redis-key", half.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_unreadable_password_or_certificate_file_stops_the_start()
    {
        using var dir = new TempDirectory();
        var missing = dir.File("missing");

        var password = Assert.Throws<StartupException>(() => Create("--lease-name", "a", "--backend", "redis", "--redis-password-file", missing));
        Assert.Contains("--redis-password-file", password.Message, StringComparison.Ordinal);

        var ca = Assert.Throws<StartupException>(() => Create("--lease-name", "a", "--redis", "rediss://127.0.0.1", "--redis-ca", missing));
        Assert.Contains("--redis-ca", ca.Message, StringComparison.Ordinal);

        File.WriteAllText(dir.File("cert.pem"), "not a certificate");
        var cert = Assert.Throws<StartupException>(() => Create("--lease-name", "a", "--redis", "rediss://127.0.0.1", "--redis-cert", dir.File("cert.pem"), "--redis-key", dir.File("cert.pem")));
        Assert.Contains("--redis-cert", cert.Message, StringComparison.Ordinal);
    }

    private void Create(params string[] args) => new RedisStoreKind().Create(Run(args), Lookup, TimeProvider.System);

    private StoreKind Select(params string[] args) => StoreKinds.Select(Run(args), Lookup);

    private SidecarOptions Run(params string[] args) =>
        Assert.IsType<ParseResult.Run>(CommandLine.Parse(args, Lookup)).Options;

    private string? Lookup(string name) => _environment.GetValueOrDefault(name);
}
