using System.Globalization;

namespace LeaderSidecar.Stores.Redis;

/// <summary>Where the Redis server is: <c>redis://[USER@]HOST[:PORT][/DB]</c>, or <c>rediss://</c> for TLS.</summary>
internal sealed record RedisEndpoint(bool Tls, string Host, int Port, int Database, string? User)
{
    public const int DefaultPort = 6379;

    /// <summary>The URL as given, for logs: it never carries a password.</summary>
    public override string ToString()
    {
        var host = Host.Contains(':', StringComparison.Ordinal) ? $"[{Host}]" : Host;
        var user = User is null ? "" : Uri.EscapeDataString(User) + "@";
        return string.Create(CultureInfo.InvariantCulture, $"{(Tls ? "rediss" : "redis")}://{user}{host}:{Port}/{Database}");
    }
}

/// <summary>The Redis store's settings, as the <c>--redis*</c> flags gave them.</summary>
internal sealed record RedisOptions
{
    public const string DefaultPrefix = "leader-sidecar:";

    /// <summary>The most replicas <c>--redis-min-replicas</c> may ask for; far above any real deployment.</summary>
    public const int MaxMinReplicas = 100;

    /// <summary>Where <c>--backend redis</c> connects when no URL is given, as <c>redis-cli</c> does.</summary>
    public static readonly RedisEndpoint DefaultEndpoint = new(false, "127.0.0.1", RedisEndpoint.DefaultPort, 0, null);

    /// <summary>The server; <see langword="null"/>: <see cref="DefaultEndpoint"/>.</summary>
    public RedisEndpoint? Endpoint { get; init; }

    public string Prefix { get; init; } = DefaultPrefix;

    /// <summary>A file holding the password; otherwise the environment variable is read at start-up.</summary>
    public string? PasswordFile { get; init; }

    public string? CaFile { get; init; }

    public string? CertFile { get; init; }

    public string? KeyFile { get; init; }

    /// <summary>How many replicas must acknowledge each write (<c>WAIT</c>) before it counts; 0: none.</summary>
    public int MinReplicas { get; init; }

    /// <summary>
    /// Parses a <c>redis://</c> or <c>rediss://</c> URL; <see langword="null"/> with
    /// <paramref name="problem"/> set when it is not one. A URL carrying a password is refused,
    /// and the problem never quotes it.
    /// </summary>
    public static RedisEndpoint? ParseUrl(string value, out string? problem)
    {
        problem = null;
        var scheme = value.IndexOf("://", StringComparison.Ordinal);
        var at = value.LastIndexOf('@');
        if (at > scheme && scheme >= 0 && value.AsSpan(scheme + 3, at - scheme - 3).Contains(':'))
        {
            problem = "the Redis URL must not carry a password: give it in $" + RedisStoreKind.PasswordVariable + " or --redis-password-file";
            return null;
        }

        if (!Uri.TryCreate(value, UriKind.Absolute, out var uri) ||
            uri.Scheme is not ("redis" or "rediss") ||
            uri.Host.Length == 0 ||
            uri.Query.Length > 0 ||
            uri.Fragment.Length > 0 ||
            Database(uri.AbsolutePath) is not { } database)
        {
            problem = $"Redis URL \"{Shown(value)}\" is not like redis://[USER@]HOST[:PORT][/DB] or rediss://… for TLS";
            return null;
        }

        var user = uri.UserInfo.Length > 0 ? Uri.UnescapeDataString(uri.UserInfo) : null;
        var port = uri.Port > 0 ? uri.Port : RedisEndpoint.DefaultPort;
        return new RedisEndpoint(uri.Scheme == "rediss", uri.IdnHost, port, database, user);
    }

    /// <summary><c>--redis-min-replicas</c>: a count from 0 to <see cref="MaxMinReplicas"/>.</summary>
    public static int? ParseMinReplicas(string value, out string? problem)
    {
        if (int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var count) && count <= MaxMinReplicas)
        {
            problem = null;
            return count;
        }

        problem = $"--redis-min-replicas must be a whole number from 0 to {MaxMinReplicas}, not \"{Shown(value)}\"";
        return null;
    }

    /// <summary>The database from the URL's path: none or <c>/</c> is 0, else <c>/N</c>.</summary>
    private static int? Database(string path) =>
        path is "" or "/" ? 0
        : path.Length is > 1 and <= 10 && int.TryParse(path.AsSpan(1), NumberStyles.None, CultureInfo.InvariantCulture, out var database) ? database
        : null;

    // A bad URL is quoted in its problem, bounded, on one line, and without anything before an '@'
    // (user info is never shown, in case it holds a secret the checks above did not recognize).
    private static string Shown(string value)
    {
        var at = value.LastIndexOf('@');
        var scheme = value.IndexOf("://", StringComparison.Ordinal);
        var shown = at >= 0 ? (scheme >= 0 && scheme < at ? value[..(scheme + 3)] : "") + "…" + value[at..] : value;
        return Kubernetes.KubernetesLeaseStore.Shorten(shown.Length > 100 ? shown[..100] + "…" : shown);
    }
}
