using System.Net;
using System.Security.Cryptography.X509Certificates;
using LeaderSidecar.Testing.LeaseApi.Auth;

namespace LeaderSidecar.Testing.LeaseApi.Tests.Tls;

public sealed class TlsTests
{
    private const string Leases = "apis/coordination.k8s.io/v1/namespaces/demo/leases";

    [Fact]
    public async Task A_client_trusting_the_generated_ca_talks_http2_over_tls()
    {
        await using var server = await LeaseApiServer.StartAsync(new LeaseApiServerOptions { UseTls = true });
        server.Tokens.Set("t", ApiUser.Admin());
        using var authority = X509Certificate2.CreateFromPem(server.CaCertificatePem);
        using var handler = new SocketsHttpHandler();
        handler.SslOptions.RemoteCertificateValidationCallback = (_, certificate, _, _) =>
        {
            // Verify against the CA PEM alone, the way a client with a ca.crt file does.
            using var chain = new X509Chain();
            chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            chain.ChainPolicy.CustomTrustStore.Add(authority);
            chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
            return certificate is X509Certificate2 presented && chain.Build(presented);
        };
        using var client = new HttpClient(handler) { BaseAddress = server.BaseAddress, DefaultRequestVersion = HttpVersion.Version20 };
        client.DefaultRequestHeaders.Authorization = new("Bearer", "t");

        using var response = await client.PostAsync(Leases, Api.JsonBody(Api.LeaseBody("golden", "pod-a")));

        Assert.Equal("https", server.BaseAddress.Scheme);
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        Assert.Equal(HttpVersion.Version20, response.Version);
    }

    [Fact]
    public async Task The_server_certificate_names_loopback_and_localhost()
    {
        await using var server = await LeaseApiServer.StartAsync(new LeaseApiServerOptions { UseTls = true, RequireAuthentication = false });
        X509Certificate2? presented = null;
        using var handler = new SocketsHttpHandler();
        handler.SslOptions.RemoteCertificateValidationCallback = (_, certificate, _, errors) =>
        {
            presented = new X509Certificate2(certificate!);
            return errors == System.Net.Security.SslPolicyErrors.RemoteCertificateChainErrors && server.IsTrusted(presented);
        };
        using var client = new HttpClient(handler) { BaseAddress = server.BaseAddress };

        using var response = await client.GetAsync($"{Leases}/golden");

        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        var names = presented!.Extensions.OfType<X509SubjectAlternativeNameExtension>().Single();
        Assert.Contains(IPAddress.Loopback, names.EnumerateIPAddresses());
        Assert.Contains("localhost", names.EnumerateDnsNames());
        presented.Dispose();
    }

    [Fact]
    public async Task A_client_with_default_trust_refuses_the_server()
    {
        await using var server = await LeaseApiServer.StartAsync(new LeaseApiServerOptions { UseTls = true, RequireAuthentication = false });
        using var client = new HttpClient { BaseAddress = server.BaseAddress };

        await Assert.ThrowsAsync<HttpRequestException>(() => client.GetAsync($"{Leases}/golden"));
    }

    [Fact]
    public async Task The_kubeconfig_carries_server_ca_and_token()
    {
        await using var server = await LeaseApiServer.StartAsync(new LeaseApiServerOptions { UseTls = true });
        var path = Path.Combine(Path.GetTempPath(), $"kubeconfig-{Guid.NewGuid():N}");
        try
        {
            server.WriteKubeconfig(path, "secret-token", "demo");
            var text = await File.ReadAllTextAsync(path);

            Assert.Contains($"server: https://127.0.0.1:{server.BaseAddress.Port}", text, StringComparison.Ordinal);
            Assert.Contains("certificate-authority-data: ", text, StringComparison.Ordinal);
            Assert.Contains("token: secret-token", text, StringComparison.Ordinal);
            Assert.Contains("namespace: demo", text, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
