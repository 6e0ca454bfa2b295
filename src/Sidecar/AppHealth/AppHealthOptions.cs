namespace LeaderSidecar.AppHealth;

/// <summary>
/// The app's own health check (<c>--app-health-url</c>): while it fails, this replica is not fit to
/// lead (see <see cref="Election.CampaignGate"/>).
/// </summary>
/// <param name="Url">An <c>http://</c> URL on a loopback host: this replica's own app, never another machine.</param>
/// <param name="Threshold">Consecutive failed checks that make the replica unfit (<c>--app-health-threshold</c>).</param>
/// <param name="Interval">Time between checks (<c>--app-health-interval</c>; the retry period by default).</param>
internal sealed record AppHealthOptions(Uri Url, int Threshold, TimeSpan Interval)
{
    public const int DefaultThreshold = 3;

    public const int MaxThreshold = 1000;

    /// <summary>The kubelet's default probe timeout; shorter when checks are more frequent.</summary>
    public static readonly TimeSpan MaxTimeout = TimeSpan.FromSeconds(1);

    /// <summary>How long one check may take: at most 1 s, and never longer than the interval.</summary>
    public TimeSpan Timeout => Interval < MaxTimeout ? Interval : MaxTimeout;

    /// <summary>
    /// The URL if it is a plain <c>http://</c> URL on a loopback host (<c>localhost</c>,
    /// <c>127.0.0.0/8</c>, <c>[::1]</c>), else null and one line saying why. Loopback only: the check
    /// asks whether <em>this</em> replica's app is healthy, and inside a pod the app container shares
    /// the sidecar's loopback. No TLS and no credentials: nothing crosses the network.
    /// </summary>
    public static Uri? ParseUrl(string value, out string problem)
    {
        problem = "";
        if (!Uri.TryCreate(value, UriKind.Absolute, out var url) || url.Scheme is not ("http" or "https"))
        {
            problem = $"app health URL {Configuration.CommandLine.Quote(value)} is not an http:// URL";
            return null;
        }

        // Before any message quotes the value: a password must not reach stderr.
        if (url.UserInfo.Length > 0)
        {
            problem = $"app health URL must not carry credentials ({url.Scheme}://{url.Authority}{url.AbsolutePath})";
            return null;
        }

        if (url.Scheme != "http")
        {
            problem = $"app health URL {Configuration.CommandLine.Quote(value)}: only http:// is supported (the check stays on this host's loopback, where TLS adds nothing)";
            return null;
        }

        if (!url.IsLoopback)
        {
            problem = $"app health URL {Configuration.CommandLine.Quote(value)} must name a loopback host (localhost, 127.0.0.1 or [::1]): it checks this replica's own app";
            return null;
        }

        return url;
    }
}
