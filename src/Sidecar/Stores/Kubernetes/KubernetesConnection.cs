using System.Net.Http.Headers;
using System.Security.Cryptography.X509Certificates;
using k8s;
using k8s.Authentication;

namespace LeaderSidecar.Stores.Kubernetes;

/// <summary>
/// How to reach the API server: a kubeconfig file, or the pod's service account (in-cluster).
/// Problems here are configuration problems, reported as one line before the daemon starts.
/// </summary>
internal static class KubernetesConnection
{
    public const string ServiceAccountDirectory = "/var/run/secrets/kubernetes.io/serviceaccount";

    /// <summary>
    /// True when running in a pod: the kubelet sets <c>KUBERNETES_SERVICE_HOST</c>. Not whether the
    /// token is mounted: a pod without one must fail loudly, not fall back to a file lease that every
    /// replica would hold alone.
    /// </summary>
    public static bool IsInCluster(Func<string, string?> environment) =>
        !string.IsNullOrEmpty(environment("KUBERNETES_SERVICE_HOST"));

    /// <summary>Reads a kubeconfig file (its current context).</summary>
    /// <exception cref="ArgumentException">The file is missing or invalid; the message names the problem.</exception>
    public static ApiClient FromKubeconfig(string path)
    {
        // KUBECONFIG may list several files; like kubectl we take the first that exists.
        var file = path.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries).FirstOrDefault(File.Exists)
            ?? throw new ArgumentException($"kubeconfig {path} does not exist");
        try
        {
            var config = KubernetesClientConfiguration.BuildConfigFromConfigFile(file);
            return Connect(config);
        }
        catch (Exception e) when (e is not ArgumentException)
        {
            throw new ArgumentException($"kubeconfig {file} is not usable: {e.Message}", e);
        }
    }

    /// <summary>
    /// The pod's own connection: <c>KUBERNETES_SERVICE_HOST</c>/<c>_PORT</c>, the service-account CA,
    /// and its token, re-read whenever the kubelet rotates it.
    /// </summary>
    /// <exception cref="ArgumentException">Something is missing; the message names it.</exception>
    public static ApiClient InCluster(Func<string, string?> environment, string serviceAccountDirectory = ServiceAccountDirectory)
    {
        var host = environment("KUBERNETES_SERVICE_HOST");
        var port = environment("KUBERNETES_SERVICE_PORT");
        if (string.IsNullOrEmpty(host) || string.IsNullOrEmpty(port))
        {
            throw new ArgumentException("in-cluster configuration needs KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT");
        }

        var tokenFile = Path.Combine(serviceAccountDirectory, "token");
        var caFile = Path.Combine(serviceAccountDirectory, "ca.crt");
        if (!File.Exists(tokenFile))
        {
            throw new ArgumentException($"service-account token {tokenFile} does not exist: mount the service account's token (automountServiceAccountToken), or choose --backend file deliberately");
        }

        X509Certificate2Collection ca = [];
        try
        {
            ca.ImportFromPemFile(caFile);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException)
        {
            throw new ArgumentException($"service-account CA {caFile} is not usable: {e.Message}", e);
        }

        var hostPart = host.Contains(':', StringComparison.Ordinal) ? $"[{host}]" : host;
        return Connect(new KubernetesClientConfiguration
        {
            Host = $"https://{hostPart}:{port}",
            SslCaCerts = ca,
            TokenProvider = new RotatingTokenFile(tokenFile),
        });
    }

    private static ApiClient Connect(KubernetesClientConfiguration config)
    {
        // Every request carries its own deadline (below the renew deadline); watches run for minutes.
        config.HttpClientTimeout = Timeout.InfiniteTimeSpan;
        config.UserAgent = $"leader-sidecar/{Configuration.CommandLine.Version}";
        return ApiClient.Create(config);
    }
}

/// <summary>
/// A bearer token read from a file and read again as soon as the file changes, so a token rotated
/// by the kubelet is used by the very next request instead of after a cache period.
/// </summary>
internal sealed class RotatingTokenFile(string path) : ITokenProvider
{
    private readonly Lock _gate = new();
    private (DateTime Modified, long Length) _version;
    private string _token = "";

    public Task<AuthenticationHeaderValue> GetAuthenticationHeaderAsync(CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            var info = new FileInfo(path);
            var version = info.Exists ? (info.LastWriteTimeUtc, info.Length) : default;
            if (version != _version || _token.Length == 0)
            {
                try
                {
                    _token = File.ReadAllText(path).Trim();
                    _version = version;
                }
                catch (IOException) when (_token.Length > 0)
                {
                    // Mid-rotation: keep the previous token for this request.
                }
            }

            return Task.FromResult(new AuthenticationHeaderValue("Bearer", _token));
        }
    }
}
