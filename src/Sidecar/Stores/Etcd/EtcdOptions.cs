namespace LeaderSidecar.Stores.Etcd;

/// <summary>The etcd store's settings, as the <c>--etcd-*</c> flags gave them (EtcdFlags.cs).</summary>
internal sealed record EtcdOptions
{
    public const string DefaultPrefix = "/leader-sidecar/";

    /// <summary>Where <c>--backend etcd</c> connects when no endpoint is given, as <c>etcdctl</c> does.</summary>
    public static readonly Uri DefaultEndpoint = new("http://127.0.0.1:2379");

    /// <summary>The members to talk to, in order of preference; empty: <see cref="DefaultEndpoint"/>.</summary>
    public IReadOnlyList<Uri> Endpoints { get; init; } = [];

    public string Prefix { get; init; } = DefaultPrefix;

    public string? User { get; init; }

    /// <summary>A file holding the password; the environment variable is read at start-up instead of a flag.</summary>
    public string? PasswordFile { get; init; }

    public string? CaFile { get; init; }

    public string? CertFile { get; init; }

    public string? KeyFile { get; init; }

    /// <summary>
    /// Parses <c>http(s)://HOST:PORT[,…]</c>; <see langword="null"/> with <paramref name="problem"/>
    /// set when an entry is not such a URL. The problem quotes only the entry, never user info.
    /// </summary>
    public static IReadOnlyList<Uri>? ParseEndpoints(string value, out string? problem)
    {
        var endpoints = new List<Uri>();
        foreach (var part in value.Split(',', StringSplitOptions.TrimEntries))
        {
            if (!Uri.TryCreate(part, UriKind.Absolute, out var uri) ||
                uri.Scheme is not ("http" or "https") ||
                uri.Host.Length == 0 ||
                uri.UserInfo.Length > 0 ||
                uri.AbsolutePath != "/" ||
                uri.Query.Length > 0 ||
                uri.Fragment.Length > 0)
            {
                problem = $"etcd endpoint \"{Shown(part)}\" is not a URL like http://127.0.0.1:2379 or https://etcd-0:2379 (no path, no user info)";
                return null;
            }

            endpoints.Add(uri);
        }

        problem = null;
        return endpoints;
    }

    // A malformed endpoint may carry a password (http://user:secret@host): show it without.
    private static string Shown(string part)
    {
        var at = part.IndexOf('@', StringComparison.Ordinal);
        var scheme = part.IndexOf("://", StringComparison.Ordinal);
        var shown = at > 0 ? (scheme >= 0 && scheme < at ? part[..(scheme + 3)] : "") + "…" + part[at..] : part;
        shown = shown.Length > 100 ? shown[..100] + "…" : shown;
        return string.Concat(shown.Select(c => char.IsControl(c) ? ' ' : c));
    }
}
