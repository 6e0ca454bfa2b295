using System.Net.Http.Headers;
using System.Net.Sockets;
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
/// <remarks>
/// A kubeconfig's server address may carry credentials (<c>https://user:password@host</c>, a token in
/// the query): <see cref="BaseUri"/> keeps only scheme, host, port and path, and
/// <see cref="Address"/> is the form for logs, which says credentials were there without showing them.
/// </remarks>
internal sealed class ApiClient : IDisposable
{
    private readonly KubernetesClientConfiguration _config;

    private ApiClient(KubernetesClientConfiguration config, HttpClient http)
    {
        _config = config;
        Http = http;
        var server = new Uri(config.Host.TrimEnd('/'));
        BaseUri = new Uri(server.GetComponents(UriComponents.SchemeAndServer | UriComponents.Path, UriFormat.UriEscaped));
        Address = Redact(server);
    }

    /// <summary>Where requests go: the server address without user info, query or fragment.</summary>
    public Uri BaseUri { get; }

    /// <summary>The server address for logs, with user info and query replaced by <c>redacted</c>.</summary>
    public string Address { get; }

    public HttpClient Http { get; }

    public static ApiClient Create(KubernetesClientConfiguration config)
    {
        var handler = new SocketsHttpHandler
        {
            // Pick up a moved API server endpoint (DNS) now and then; watches reconnect anyway.
            PooledConnectionLifetime = TimeSpan.FromMinutes(10),
            ConnectCallback = ConnectWithKeepAliveAsync,
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

    /// <summary>The server address with user info and query (where credentials hide) replaced.</summary>
    public static string Redact(Uri server)
    {
        var userInfo = server.UserInfo.Length > 0 ? "redacted@" : "";
        var query = server.Query.Length > 1 ? "?redacted" : "";
        return $"{server.Scheme}://{userInfo}{server.Authority}{server.AbsolutePath}{query}";
    }

    /// <summary>
    /// Connects with TCP keep-alive probes, as client-go's dialer does, so a watch on a connection
    /// whose other end vanished (a half-open socket never errors by itself) fails within about a
    /// minute: 30 s idle, then 3 probes 10 s apart. A quiet but live watch is not disturbed: the
    /// server's kernel answers the probes.
    /// </summary>
    private static async ValueTask<Stream> ConnectWithKeepAliveAsync(SocketsHttpConnectionContext context, CancellationToken cancellationToken)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive, true);
            socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveTime, 30);
            socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveInterval, 10);
            socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveRetryCount, 3);
            await socket.ConnectAsync(context.DnsEndPoint, cancellationToken);
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
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

    /// <summary>The API server refused our credentials (401): a token file is read again before the next request.</summary>
    public void CredentialsRejected() => (_config.TokenProvider as RotatingTokenFile)?.Reject();

    public void Dispose() => Http.Dispose();
}
