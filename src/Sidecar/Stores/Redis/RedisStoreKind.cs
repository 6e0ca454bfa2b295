using LeaderSidecar.Configuration;
using LeaderSidecar.Election;
using LeaderSidecar.Hosting;

namespace LeaderSidecar.Stores.Redis;

/// <summary><c>--backend redis</c>: a hash in Redis, its flags, and the store built from them; problems are start-up errors.</summary>
internal sealed class RedisStoreKind : StoreKind
{
    /// <summary>The environment variable holding the Redis password (never a flag, never in the URL: both show in <c>ps</c>).</summary>
    public const string PasswordVariable = "LEADER_SIDECAR_REDIS_PASSWORD";

    public override string Name => "redis";

    public override IReadOnlyList<StoreFlag> Flags { get; } =
    [
        new("redis", "URL", "Redis server for the redis backend: redis://[USER@]HOST[:PORT][/DB], rediss:// for TLS (no password in it); giving it makes --backend auto pick redis.", "redis://127.0.0.1:6379/0",
            (s, v) => RedisOptions.ParseUrl(v, out var problem) is { } endpoint
                ? s.Set<RedisOptions>(r => r with { Endpoint = endpoint })
                : problem),
        new("redis-prefix", "PREFIX", "Key prefix in Redis; the lease is the hash PREFIX + NAMESPACE:NAME, announced on the channel of the same name.", RedisOptions.DefaultPrefix,
            (s, v) => v.Length > 0 ? s.Set<RedisOptions>(r => r with { Prefix = v }) : "redis prefix must not be empty"),
        new("redis-password-file", "PATH", $"A file holding the Redis password (one line); else ${PasswordVariable}. Sent with the URL's user, or alone for requirepass.", null,
            (s, v) => s.Set<RedisOptions>(r => r with { PasswordFile = v })),
        new("redis-ca", "PATH", "PEM file of the CA that signed the Redis server's certificate (rediss:// only).", null,
            (s, v) => s.Set<RedisOptions>(r => r with { CaFile = v })),
        new("redis-cert", "PATH", "PEM client certificate for Redis TLS (with --redis-key).", null,
            (s, v) => s.Set<RedisOptions>(r => r with { CertFile = v })),
        new("redis-key", "PATH", "PEM private key of --redis-cert.", null,
            (s, v) => s.Set<RedisOptions>(r => r with { KeyFile = v })),
        new("redis-min-replicas", "N", "Replicas that must acknowledge each write (WAIT, within the request timeout); a write fewer acknowledged is not relied on.", "0",
            (s, v) => RedisOptions.ParseMinReplicas(v, out var problem) is { } count
                ? s.Set<RedisOptions>(r => r with { MinReplicas = count })
                : problem),
    ];

    public override string? ChosenBy(SidecarOptions options) =>
        options.Stores.Get<RedisOptions>().Endpoint is not null ? "--redis" : null;

    /// <summary>Builds the store: reads the password and TLS files now, so a bad one stops the start.</summary>
    public override Func<IServiceProvider, ILeaseStore> Create(SidecarOptions options, Func<string, string?> environment, TimeProvider time)
    {
        var redis = options.Stores.Get<RedisOptions>();
        var endpoint = redis.Endpoint ?? RedisOptions.DefaultEndpoint;
        var password = redis.PasswordFile is { } file ? StoreFiles.ReadSecret("--redis-password-file", file) : environment(PasswordVariable);
        password = string.IsNullOrEmpty(password) ? null : password;
        if (endpoint.User is not null && password is null)
        {
            throw new StartupException($"the Redis user {endpoint.User} needs a password: set ${PasswordVariable} or --redis-password-file");
        }

        if (!endpoint.Tls && (redis.CaFile ?? redis.CertFile ?? redis.KeyFile) is not null)
        {
            throw new StartupException("--redis-ca, --redis-cert and --redis-key need a rediss:// URL (TLS)");
        }

        if ((redis.CertFile is null) != (redis.KeyFile is null))
        {
            throw new StartupException("--redis-cert and --redis-key go together: give both or neither");
        }

        var roots = redis.CaFile is { } ca ? StoreFiles.LoadRoots("--redis-ca", ca) : null;
        var certificate = redis.CertFile is { } cert && redis.KeyFile is { } key
            ? StoreFiles.LoadClientCertificate("--redis-cert/--redis-key", cert, key)
            : null;
        var settings = new RedisServerSettings(endpoint, password, roots, certificate);
        return services => new RedisLeaseStore(
            settings,
            redis.Prefix,
            options.Namespace,
            options.LeaseName,
            redis.MinReplicas,
            options.Election.RequestTimeout,
            time,
            services.GetRequiredService<ILogger<RedisLeaseStore>>(),
            RedisLeaseStore.SyncIntervalFor(options.Election.RetryPeriod));
    }
}
