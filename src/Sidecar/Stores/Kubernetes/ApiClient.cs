using System.Net.Http.Headers;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using k8s;

namespace LeaderSidecar.Stores.Kubernetes;

/// <summary>
/// The HTTP side of a connection to the API server, built from a client-library configuration:
/// TLS as the kubeconfig says (its CA, server name, client certificate, or no verification), and
/// its credentials (a token source, a token, or basic auth) on every request. The store uses no
/// more of the client library than this, which keeps the native binary small.
/// </summary>
internal sealed class ApiClient : IDisposable
{
    private readonly KubernetesClientConfiguration _config;

    private ApiClient(KubernetesClientConfiguration config, HttpClient http)
    {
        _config = config;
        Http = http;
        BaseUri = new Uri(config.Host.TrimEnd('/'));
    }

    public Uri BaseUri { get; }

    public HttpClient Http { get; }

    public static ApiClient Create(KubernetesClientConfiguration config)
    {
        var handler = new SocketsHttpHandler
        {
            // Pick up a moved API server endpoint (DNS) now and then; watches reconnect anyway.
            PooledConnectionLifetime = TimeSpan.FromMinutes(10),
        };

        if (config.SkipTlsVerify)
        {
            // The kubeconfig says insecure-skip-tls-verify: the user's explicit choice.
#pragma warning disable CA5359
            handler.SslOptions.RemoteCertificateValidationCallback = (_, _, _, _) => true;
#pragma warning restore CA5359
        }
        else if (config.SslCaCerts is { Count: > 0 } authorities)
        {
            // Trust exactly the kubeconfig's CA (or the service account's), not the system store.
            var policy = new X509ChainPolicy
            {
                TrustMode = X509ChainTrustMode.CustomRootTrust,
                RevocationMode = X509RevocationMode.NoCheck,
            };
            policy.CustomTrustStore.AddRange(authorities);
            handler.SslOptions.CertificateChainPolicy = policy;
        }

        if (!string.IsNullOrEmpty(config.TlsServerName))
        {
            handler.SslOptions.TargetHost = config.TlsServerName;
        }

        if (ClientCertificate(config) is { } certificate)
        {
            handler.SslOptions.ClientCertificates = [certificate];
        }

        var http = new HttpClient(handler) { Timeout = config.HttpClientTimeout };
        if (!string.IsNullOrEmpty(config.UserAgent))
        {
            http.DefaultRequestHeaders.UserAgent.ParseAdd(config.UserAgent);
        }

        return new ApiClient(config, http);
    }

    /// <summary>The kubeconfig's client certificate and key (inline base64 PEM or files), if any.</summary>
    private static X509Certificate2? ClientCertificate(KubernetesClientConfiguration config)
    {
        if (!string.IsNullOrEmpty(config.ClientCertificateData) && !string.IsNullOrEmpty(config.ClientCertificateKeyData))
        {
            return X509Certificate2.CreateFromPem(Decode(config.ClientCertificateData), Decode(config.ClientCertificateKeyData));
        }

        if (!string.IsNullOrEmpty(config.ClientCertificateFilePath) && !string.IsNullOrEmpty(config.ClientKeyFilePath))
        {
            return X509Certificate2.CreateFromPemFile(config.ClientCertificateFilePath, config.ClientKeyFilePath);
        }

        return null;

        static string Decode(string base64) => Encoding.UTF8.GetString(Convert.FromBase64String(base64));
    }

    /// <summary>Adds the credentials; a token source (rotating file, exec plugin) is asked every time.</summary>
    public async Task AuthorizeAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        if (_config.TokenProvider is { } tokens)
        {
            request.Headers.Authorization = await tokens.GetAuthenticationHeaderAsync(cancellationToken);
        }
        else if (!string.IsNullOrEmpty(_config.AccessToken))
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _config.AccessToken);
        }
        else if (!string.IsNullOrEmpty(_config.Username))
        {
            var pair = Convert.ToBase64String(Encoding.UTF8.GetBytes($"{_config.Username}:{_config.Password}"));
            request.Headers.Authorization = new AuthenticationHeaderValue("Basic", pair);
        }
    }

    public void Dispose() => Http.Dispose();
}
