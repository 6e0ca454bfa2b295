namespace LeaderSidecar.Testing.LeaseApi;

/// <summary>How a <see cref="LeaseApiServer"/> starts. The defaults suit fast tests.</summary>
public sealed record LeaseApiServerOptions
{
    /// <summary>Serve HTTPS with a certificate from a CA generated at start-up (see
    /// <see cref="LeaseApiServer.CaCertificatePem"/>). HTTPS also offers HTTP/2, as the real server does.</summary>
    public bool UseTls { get; init; }

    /// <summary>When true (the default, as on any real cluster) requests need a bearer token registered in
    /// <see cref="LeaseApiServer.Tokens"/>; when false everything is allowed without a token.</summary>
    public bool RequireAuthentication { get; init; } = true;

    /// <summary>How often watches that asked for bookmarks get one (kube-apiserver: about a minute).</summary>
    public TimeSpan BookmarkInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>How many changes the watch history keeps; a watch from a resourceVersion older than the
    /// oldest kept change gets 410 Expired. (kube-apiserver's watch cache keeps about a hundred or more.)</summary>
    public int HistoryLimit { get; init; } = 1000;

    /// <summary>The revision the shared counter starts at; the first write gets the next one.</summary>
    public long InitialResourceVersion { get; init; } = 100;

    /// <summary>How long a watch without <c>timeoutSeconds</c> lasts (kube-apiserver: 30 to 60 minutes).</summary>
    public TimeSpan DefaultWatchTimeout { get; init; } = TimeSpan.FromMinutes(30);

    /// <summary>The clock for creationTimestamp and managedFields times. Latency, hangs, bookmarks and watch
    /// timeouts always run on real time, because the client on the other end of the socket does.</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;
}
