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
    /// and its token, read again every minute and after a 401, so a token the kubelet rotated is used.
    /// </summary>
    /// <exception cref="ArgumentException">Something is missing; the message names it.</exception>
    public static ApiClient InCluster(Func<string, string?> environment, TimeProvider time, string serviceAccountDirectory = ServiceAccountDirectory)
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
            TokenProvider = new RotatingTokenFile(tokenFile, time),
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
/// The service-account token, read from its file and read again every <see cref="RefreshPeriod"/>
/// and at once after the API server rejects it, as client-go's cached token file source does.
/// </summary>
/// <remarks>
/// The kubelet rotates the token by swapping a symlink (<c>token</c> → <c>..data/token</c>, with
/// <c>..data</c> pointing at a new timestamped directory), so the file's own metadata says nothing:
/// the link's write time and length never change. Reading on a period needs no metadata at all.
/// </remarks>
internal sealed class RotatingTokenFile(string path, TimeProvider time) : ITokenProvider
{
    /// <summary>
    /// How long a token read from the file is used before the file is read again: a minute, as in
    /// client-go. The kubelet writes a new token once the old one is 80 % through its lifetime (at
    /// least 10 minutes), so the new one is on disk at least 2 minutes before the old one expires.
    /// </summary>
    public static readonly TimeSpan RefreshPeriod = TimeSpan.FromMinutes(1);

    private readonly Lock _gate = new();
    private string _token = "";
    private long _readAt;
    private bool _stale = true;

    public Task<AuthenticationHeaderValue> GetAuthenticationHeaderAsync(CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            if (_stale || time.GetElapsedTime(_readAt) >= RefreshPeriod)
            {
                try
                {
                    _token = File.ReadAllText(path).Trim();
                    _readAt = time.GetTimestamp();
                    _stale = false;
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException && _token.Length > 0)
                {
                    // Mid-rotation: keep the previous token for this request and read again next time.
                }
            }

            return Task.FromResult(new AuthenticationHeaderValue("Bearer", _token));
        }
    }

    /// <summary>The API server refused the token (401): read the file again before the next request.</summary>
    public void Reject()
    {
        lock (_gate)
        {
            _stale = true;
        }
    }
}
