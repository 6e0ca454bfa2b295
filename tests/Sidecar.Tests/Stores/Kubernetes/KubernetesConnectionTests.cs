using LeaderSidecar.Election;
using LeaderSidecar.Stores.Kubernetes;
using LeaderSidecar.Testing.LeaseApi;
using LeaderSidecar.Testing.LeaseApi.Auth;
using Microsoft.Extensions.Logging.Abstractions;

namespace LeaderSidecar.Tests.Stores.Kubernetes;

/// <summary>The in-cluster connection: service-account token, CA and environment, over TLS.</summary>
public sealed class KubernetesConnectionTests : IAsyncLifetime
{
    private readonly TempDirectory _serviceAccount = new();
    private readonly CancellationToken _ct = new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token;
    private LeaseApiServer _server = null!;

    public async Task InitializeAsync()
    {
        _server = await LeaseApiServer.StartAsync(new LeaseApiServerOptions { UseTls = true });
        _server.Tokens.Set("first", new ApiUser("system:serviceaccount:demo:a", LeaseRule.ForElection("demo", "app")));
        await File.WriteAllTextAsync(_serviceAccount.File("token"), "first\n", _ct);
        await File.WriteAllTextAsync(_serviceAccount.File("ca.crt"), _server.CaCertificatePem, _ct);
        await File.WriteAllTextAsync(_serviceAccount.File("namespace"), "demo", _ct);
    }

    private string? Environment(string name) => name switch
    {
        "KUBERNETES_SERVICE_HOST" => _server.BaseAddress.Host,
        "KUBERNETES_SERVICE_PORT" => _server.BaseAddress.Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
        _ => null,
    };

    [Fact]
    public async Task The_pods_service_account_reaches_the_api_over_tls_and_follows_token_rotation()
    {
        Assert.True(KubernetesConnection.IsInCluster(Environment));
        using var store = new KubernetesLeaseStore(KubernetesConnection.InCluster(Environment, _serviceAccount.Path), "demo", "app", TimeProvider.System, NullLogger<KubernetesLeaseStore>.Instance);
        Assert.Null(await store.GetAsync(_ct));

        // The kubelet writes a new token; the API server stops accepting the old one.
        _server.Tokens.Rotate("first", "second");
        await File.WriteAllTextAsync(_serviceAccount.File("token"), "second\n", _ct);

        Assert.Null(await store.GetAsync(_ct));
        Assert.Equal(1, _server.Requests[ApiVerb.Get, "second"]);
    }

    [Fact]
    public async Task A_server_certificate_from_another_authority_is_refused()
    {
        using var other = new TempDirectory();
        await using var stranger = await LeaseApiServer.StartAsync(new LeaseApiServerOptions { UseTls = true });
        await File.WriteAllTextAsync(other.File("token"), "first", _ct);
        await File.WriteAllTextAsync(other.File("ca.crt"), stranger.CaCertificatePem, _ct);
        using var store = new KubernetesLeaseStore(KubernetesConnection.InCluster(Environment, other.Path), "demo", "app", TimeProvider.System, NullLogger<KubernetesLeaseStore>.Instance);

        var e = await Assert.ThrowsAsync<LeaseStoreException>(() => store.GetAsync(_ct));

        Assert.Equal(LeaseStoreFailure.Unavailable, e.Reason);
        Assert.Equal(0, _server.Requests.Total);
    }

    [Theory]
    [InlineData("token", "service-account token")]
    [InlineData("ca.crt", "service-account CA")]
    public void Missing_service_account_files_are_named(string missing, string expected)
    {
        File.Delete(_serviceAccount.File(missing));

        var e = Assert.Throws<ArgumentException>(() => KubernetesConnection.InCluster(Environment, _serviceAccount.Path));

        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Outside_a_pod_there_is_no_in_cluster_configuration()
    {
        Assert.False(KubernetesConnection.IsInCluster(_ => null));
        var e = Assert.Throws<ArgumentException>(() => KubernetesConnection.InCluster(_ => null, _serviceAccount.Path));
        Assert.Contains("KUBERNETES_SERVICE_HOST", e.Message, StringComparison.Ordinal);
    }

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        _serviceAccount.Dispose();
    }
}
