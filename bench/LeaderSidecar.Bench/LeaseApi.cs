using System.Net.Http.Headers;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using k8s;
using LeaderSidecar.Testing.LeaseApi;
using LeaderSidecar.Testing.LeaseApi.Auth;

namespace LeaderSidecar.Bench;

/// <summary>One candidate's credentials: the kubeconfig its daemon reads, and the token the test server counts by.</summary>
internal sealed record Candidate(string Lease, string Identity, string Kubeconfig, string? Token);

/// <summary>
/// Where the Leases live: the in-process Lease API test server (the default), or a real cluster
/// given by a kubeconfig. Only the test server can count requests per candidate on the server
/// side; with a cluster the daemons' own <c>/metrics</c> and the reference elector's counters are used.
/// </summary>
internal abstract class LeaseApi : IAsyncDisposable
{
    private readonly List<string> _leases = [];

    public abstract string Namespace { get; }

    public abstract string Description { get; }

    /// <summary>True when <see cref="ServerCounts"/> works.</summary>
    public abstract bool CountsOnServer { get; }

    /// <summary>A lease name no earlier run used.</summary>
    public string NewLease(string scenario)
    {
        var name = $"bench-{scenario}-{Guid.NewGuid().ToString("N")[..6]}";
        _leases.Add(name);
        return name;
    }

    public abstract Candidate Candidate(string lease, string identity);

    /// <summary>Requests the server saw from this candidate, by verb (lower case).</summary>
    public abstract Dictionary<string, long> ServerCounts(Candidate candidate);

    /// <summary>An HTTP client with the candidate's credentials, for the polling reference elector.</summary>
    public abstract HttpClient CreateClient(Candidate candidate);

    public abstract Uri BaseAddress { get; }

    /// <summary>Lease names this run created.</summary>
    protected IReadOnlyList<string> Leases => _leases;

    public abstract ValueTask DisposeAsync();
}

internal sealed class TestServerApi : LeaseApi
{
    private readonly LeaseApiServer _server;
    private readonly string _directory;

    private TestServerApi(LeaseApiServer server, string directory)
    {
        _server = server;
        _directory = directory;
    }

    public override string Namespace => "bench";

    public override string Description => "the Lease API test server (tests/LeaseApiServer), in the harness process, HTTPS with token auth and RBAC";

    public override bool CountsOnServer => true;

    public override Uri BaseAddress => _server.BaseAddress;

    public static async Task<TestServerApi> StartAsync(string directory) =>
        new(await LeaseApiServer.StartAsync(new LeaseApiServerOptions { UseTls = true }), directory);

    public override Candidate Candidate(string lease, string identity)
    {
        var token = $"token-{lease}-{identity}";
        _server.Tokens.Set(token, new ApiUser($"system:serviceaccount:{Namespace}:{identity}", LeaseRule.ForElection(Namespace, lease)));
        var kubeconfig = Path.Combine(_directory, $"{lease}-{identity}.kubeconfig");
        _server.WriteKubeconfig(kubeconfig, token, Namespace);
        return new Candidate(lease, identity, kubeconfig, token);
    }

    public override Dictionary<string, long> ServerCounts(Candidate candidate) =>
        Enum.GetValues<ApiVerb>().ToDictionary(v => v.ToString().ToLowerInvariant(), v => _server.Requests[v, candidate.Token!]);

    public override HttpClient CreateClient(Candidate candidate) => _server.CreateClient(candidate.Token);

    public override ValueTask DisposeAsync() => _server.DisposeAsync();
}

internal sealed class ClusterApi : LeaseApi
{
    private readonly string _kubeconfig;
    private readonly KubernetesClientConfiguration _config;

    public ClusterApi(string kubeconfig, string? namespaceName)
    {
        _kubeconfig = Path.GetFullPath(kubeconfig);
        _config = KubernetesClientConfiguration.BuildConfigFromConfigFile(_kubeconfig);
        Namespace = namespaceName ?? _config.Namespace ?? "default";
        BaseAddress = new Uri(_config.Host.TrimEnd('/') + "/");
    }

    public override string Namespace { get; }

    public override string Description => $"a real cluster ({BaseAddress.Host}, namespace {Namespace}), kubeconfig {_kubeconfig}";

    public override bool CountsOnServer => false;

    public override Uri BaseAddress { get; }

    public override Candidate Candidate(string lease, string identity) => new(lease, identity, _kubeconfig, null);

    public override Dictionary<string, long> ServerCounts(Candidate candidate) =>
        throw new NotSupportedException("a real API server cannot be asked for per-client request counts");

    public override HttpClient CreateClient(Candidate candidate)
    {
        var handler = new SocketsHttpHandler();
        if (_config.SkipTlsVerify)
        {
#pragma warning disable CA5359 // The kubeconfig says insecure-skip-tls-verify: the user's choice.
            handler.SslOptions.RemoteCertificateValidationCallback = (_, _, _, _) => true;
#pragma warning restore CA5359
        }
        else if (_config.SslCaCerts is { Count: > 0 } authorities)
        {
            var policy = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust, RevocationMode = X509RevocationMode.NoCheck };
            policy.CustomTrustStore.AddRange(authorities);
            handler.SslOptions.CertificateChainPolicy = policy;
        }

        if (!string.IsNullOrEmpty(_config.ClientCertificateData) && !string.IsNullOrEmpty(_config.ClientCertificateKeyData))
        {
            handler.SslOptions.ClientCertificates =
            [
                X509Certificate2.CreateFromPem(Decode(_config.ClientCertificateData), Decode(_config.ClientCertificateKeyData)),
            ];
        }
        else if (!string.IsNullOrEmpty(_config.ClientCertificateFilePath) && !string.IsNullOrEmpty(_config.ClientKeyFilePath))
        {
            handler.SslOptions.ClientCertificates = [X509Certificate2.CreateFromPemFile(_config.ClientCertificateFilePath, _config.ClientKeyFilePath)];
        }

        return new HttpClient(new Credentials(_config) { InnerHandler = handler }) { BaseAddress = BaseAddress };

        static string Decode(string base64) => Encoding.UTF8.GetString(Convert.FromBase64String(base64));
    }

    public override async ValueTask DisposeAsync()
    {
        // Leave a real cluster as it was found.
        using var http = CreateClient(Candidate("cleanup", "cleanup"));
        foreach (var lease in Leases)
        {
            try
            {
                using var _ = await http.DeleteAsync(new Uri(BaseAddress, $"apis/coordination.k8s.io/v1/namespaces/{Namespace}/leases/{lease}"));
            }
            catch (HttpRequestException)
            {
            }
        }
    }

    /// <summary>Adds the kubeconfig's credentials (a token source, a token, or basic auth) to every request.</summary>
    private sealed class Credentials(KubernetesClientConfiguration config) : DelegatingHandler
    {
        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            if (config.TokenProvider is { } tokens)
            {
                request.Headers.Authorization = await tokens.GetAuthenticationHeaderAsync(cancellationToken);
            }
            else if (!string.IsNullOrEmpty(config.AccessToken))
            {
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", config.AccessToken);
            }
            else if (!string.IsNullOrEmpty(config.Username))
            {
                request.Headers.Authorization = new AuthenticationHeaderValue(
                    "Basic",
                    Convert.ToBase64String(Encoding.UTF8.GetBytes($"{config.Username}:{config.Password}")));
            }

            return await base.SendAsync(request, cancellationToken);
        }
    }
}
